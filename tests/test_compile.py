"""flowzoo's XLA compiler options (flowzoo/_compile.py, public as ``flowzoo.train``'s
``compiler_options`` and ``jit``).

On CPU the options move convolutions from YNNPACK to XLA's Eigen convolution and leave
every other program as XLA's defaults compile it. Read from the optimised HLO, which names
a YNNPACK fusion ``ynn_fusion`` and keeps its body as a called computation.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowzoo import train

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")


def _ynn_kinds(hlo: str) -> list[str]:
    """``conv`` / ``dot`` / ``other`` for each YNNPACK fusion of an optimised HLO text."""
    kinds = []
    for m in re.finditer(r"%ynn_fusion[\w.]* = .*?calls=%([\w.\-]+)", hlo):
        body = re.search(r"^%" + re.escape(m.group(1)) + r" .*?^}", hlo, re.M | re.S).group(0)
        kinds.append("conv" if "convolution(" in body else "dot" if " dot(" in body else "other")
    return sorted(kinds)


def _hlo(fn, *args, options=None) -> str:
    return jax.jit(fn, compiler_options=options).lower(*args).compile().as_text()


def _conv_loss(w, x, m):
    y = jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.sum(jnp.tanh(y.reshape(-1, y.shape[-1]) @ m) ** 2)


def _conv_args():
    k = jax.random.split(jax.random.key(0), 3)
    return (
        0.1 * jax.random.normal(k[0], (3, 3, 32, 32)),
        jax.random.normal(k[1], (2, 8, 8, 32)),
        0.1 * jax.random.normal(k[2], (32, 32)),
    )


def test_options_move_convolutions_only():
    """With the options no convolution is a YNNPACK fusion and the dots still are; XLA's
    defaults put the convolutions in YNNPACK (else the options would be moot; it does so
    from 32 channels up)."""
    opts = train.compiler_options()
    assert opts is not None
    grad = jax.grad(_conv_loss, argnums=(0, 2))
    default = _ynn_kinds(_hlo(grad, *_conv_args()))
    ours = _ynn_kinds(_hlo(grad, *_conv_args(), options=opts))
    assert "conv" in default
    assert "conv" not in ours
    assert ours.count("dot") == default.count("dot") > 0
    # the same gradients to float32 rounding: the two backends sum over the 2 x 8 x 8
    # positions (and 288 taps) in different orders, so entries that cancel differ by up
    # to ~1e-6 of the largest entry; the bound is 1e-5 of it
    g0 = jax.jit(grad)(*_conv_args())
    g1 = jax.jit(grad, compiler_options=opts)(*_conv_args())
    for a, b in zip(g0, g1, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.max(np.abs(a)))


def test_options_leave_programs_without_convolution_unchanged():
    """An MLP train update compiles to the same optimised HLO with and without them."""
    params = {"w1": jnp.ones((8, 32)) * 0.1, "w2": jnp.ones((32, 1)) * 0.1}
    opt = optax.adam(1e-3)
    state = opt.init(params)
    x = jnp.linspace(-1.0, 1.0, 64 * 8).reshape(64, 8)

    def update(params, state, x):
        loss = lambda p: jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"]) ** 2)  # noqa: E731
        grads = jax.grad(loss)(params)
        upd, state = opt.update(grads, state, params)
        return optax.apply_updates(params, upd), state

    strip = lambda t: re.sub(r"^HloModule .*$", "", t, count=1, flags=re.M)  # noqa: E731
    default = strip(_hlo(update, params, state, x))
    ours = strip(_hlo(update, params, state, x, options=train.compiler_options()))
    assert ours == default


def test_train_step_compiles_with_the_options():
    """``make_train_step``'s step holds no YNNPACK convolution on CPU."""
    w, x, m = _conv_args()
    loss = lambda p, key, batch: (_conv_loss(p["w"], batch, p["m"]), {})  # noqa: E731
    opt = optax.sgd(1e-3)
    state = train.init_train_state({"w": w, "m": m}, opt)
    step = train.make_train_step(loss, opt)
    hlo = step.lower(state, jax.random.key(0), x).compile().as_text()
    assert "conv" not in _ynn_kinds(hlo)
    assert "dot" in _ynn_kinds(hlo)


def test_conv_choice(monkeypatch):
    monkeypatch.setenv("FLOWZOO_CPU_CONV", "ynnpack")
    assert train.compiler_options() is None
    monkeypatch.setenv("FLOWZOO_CPU_CONV", "Eigen")
    assert train.compiler_options() is not None
    assert train.compiler_options("gpu") is None
    monkeypatch.setenv("FLOWZOO_CPU_CONV", "mkl")
    with pytest.raises(ValueError, match="FLOWZOO_CPU_CONV='mkl': expected one of eigen, ynnpack"):
        train.compiler_options()


def test_step_composes_with_transformations():
    """JAX refuses compiler options inside a transformation: the step then runs as a plain
    jit, under ``make_jaxpr``, an outer ``jit`` (arguments or closed-over values) and
    ``vmap``, with the same result as at top level."""
    opts = optax.sgd(0.1)
    loss = lambda p, key, batch: (jnp.mean((p["w"][None] - batch) ** 2), {})  # noqa: E731
    state = train.init_train_state({"w": jnp.zeros(3)}, opts)
    step = train.make_train_step(loss, opts)
    key, batch = jax.random.key(0), jnp.ones((4, 3))
    top, _ = step(state, key, batch)
    assert jax.make_jaxpr(step)(state, key, batch) is not None
    nested, _ = jax.jit(step)(state, key, batch)
    closed, _ = jax.jit(lambda: step(state, key, batch))()
    mapped, _ = jax.vmap(step, in_axes=(None, None, 0))(state, key, batch[None])
    for other in (nested.params, closed.params, jax.tree.map(lambda a: a[0], mapped.params)):
        np.testing.assert_allclose(other["w"], top.params["w"], rtol=1e-6)


def _conv_forward(w, x):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def test_jit_compiles_a_forward_convolution_with_eigen():
    """``train.jit`` is what sampling, likelihoods and FID compile with: a forward
    convolution (an image network's sampling step) leaves YNNPACK, which ``jax.jit`` puts it
    in, and the outputs agree to float32 rounding."""
    w, x, _ = _conv_args()
    default = _ynn_kinds(jax.jit(_conv_forward).lower(w, x).compile().as_text())
    ours = _ynn_kinds(train.jit(_conv_forward).lower(w, x).compile().as_text())
    assert "conv" in default
    assert "conv" not in ours
    a, b = np.asarray(jax.jit(_conv_forward)(w, x)), np.asarray(train.jit(_conv_forward)(w, x))
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.max(np.abs(a)))


def test_jit_takes_jax_jit_arguments_and_composes():
    """Static arguments pass through; inside ``vmap`` and another ``jit`` it runs as a plain
    jit with the same values."""
    w, x, _ = _conv_args()
    f = train.jit(lambda w, x, k: _conv_forward(w, x)[..., :k], static_argnums=2)
    top = f(w, x, 4)
    assert top.shape == (*x.shape[:-1], 4)
    nested = jax.jit(lambda w, x: f(w, x, 4))(w, x)
    mapped = jax.vmap(lambda xi: f(w, xi[None], 4)[0])(x)
    tol = 1e-5 * float(np.max(np.abs(top)))  # YNNPACK and Eigen sum in different orders
    np.testing.assert_allclose(nested, top, rtol=0, atol=tol)
    np.testing.assert_allclose(mapped, top, rtol=0, atol=tol)
