"""flowzoo.prng: the unrolled Threefry hash against JAX's own and Random123's known answers,
and the fused key implementation drawing JAX's numbers word for word."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from flowzoo import prng


def _words(key, counter):
    k = tuple(jnp.uint32(v) for v in key)
    c = tuple(jnp.asarray(v, jnp.uint32) for v in counter)
    return tuple(int(v) for v in jax.jit(prng.threefry2x32)(k, c))


@pytest.mark.parametrize(
    "key, counter, expected",
    [  # Random123's known-answer tests for threefry2x32_20 (kat_vectors in Random123)
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_threefry_known_answers(key, counter, expected):
    assert _words(key, counter) == expected


def test_threefry_equals_jax_threefry():
    rng = np.random.default_rng(0)
    for _ in range(3):
        key = rng.integers(0, 2**32, 2, dtype=np.uint32)
        counter = rng.integers(0, 2**32, (2, 500), dtype=np.uint32)
        ref = np.asarray(threefry_2x32(jnp.asarray(key), jnp.asarray(counter.ravel())))
        a, b = jax.jit(prng.threefry2x32)(tuple(jnp.uint32(k) for k in key), tuple(counter))
        # threefry_2x32 splits its count in halves: the first half feeds word 0, the second
        # word 1, and the outputs come back in the same two halves
        np.testing.assert_array_equal(ref, np.concatenate([np.asarray(a), np.asarray(b)]))


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 5, 7), (4, 16, 16, 8)])
def test_random_bits_are_jax_random_bits(shape):
    """The fused words equal jax.random.bits' for typed and raw Threefry keys, under jit
    and vmap; other key implementations go to jax.random.bits itself."""
    for key in (jax.random.key(11), jax.random.PRNGKey(11), jax.random.key(4, impl="rbg")):
        ref = np.asarray(jax.random.bits(key, shape, jnp.uint32))
        got = np.asarray(jax.jit(prng.random_bits, static_argnums=1)(key, shape))
        np.testing.assert_array_equal(got, ref)
    keys = jax.random.split(jax.random.key(2), 3)
    got = jax.vmap(lambda k: prng.random_bits(k, shape))(keys)
    ref = jax.vmap(lambda k: jax.random.bits(k, shape, jnp.uint32))(keys)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_fused_key_draws_what_the_key_draws():
    """split, fold_in, bits of every width, uniform, normal, randint, permutation and a
    split-and-draw scan: equal arrays from a key and from fused_key(key)."""
    for key in (jax.random.key(5), jax.random.PRNGKey(5)):
        fused = prng.fused_key(key)
        assert jax.random.key_impl(fused) == prng.FUSED_THREEFRY
        typed = (
            key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)
        )

        def draws(k):
            a, b = jax.random.split(k)
            c = jax.random.fold_in(k, 123456789)
            return [
                jax.random.key_data(jax.random.split(k, (3, 2))),
                jax.random.key_data(c),
                *(jax.random.bits(a, (5, 3), jnp.dtype(f"uint{w}")) for w in (8, 16, 32)),
                jax.random.uniform(b, (7, 4)),
                jax.random.normal(c, (2, 9)),
                jax.random.randint(a, (11,), -3, 17),
                jax.random.permutation(b, 10),
                jax.random.normal(a, ()),
            ]

        for got, ref in zip(jax.jit(draws)(fused), jax.jit(draws)(typed), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))

    def walk(k):
        def body(x, i):
            z = jax.random.normal(jax.random.fold_in(k, i), x.shape)
            return x + 0.1 * z, None

        return jax.lax.scan(body, jnp.zeros((64, 2)), jnp.arange(50))[0]

    key = jax.random.key(9)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(walk)(prng.fused_key(key))), np.asarray(jax.jit(walk)(key))
    )


def test_fused_key_leaves_other_implementations_alone():
    rbg = jax.random.key(1, impl="rbg")
    assert prng.fused_key(rbg) is rbg
    fused = prng.fused_key(jax.random.key(1))
    assert prng.fused_key(fused) is fused
    batch = jax.random.split(jax.random.key(2), 4)
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(prng.fused_key(batch))),
        np.asarray(jax.random.key_data(batch)),
    )
