"""ot_paired_batches: exact-OT pairs prefetched on host threads, pure in (key, step)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowzoo import flow_matching as fm
from flowzoo import nets, paths
from flowzoo.data import DataError
from flowzoo.train import Checkpointing, fit

N, B = 120, 24  # 5 steps per epoch


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, 2)) * [2.0, 0.5] + 1.0).astype(np.float32)


def test_batches_equal_a_direct_computation(data, key):
    pipe = fm.ot_paired_batches(data, B, workers=2, prefetch=3)
    get = jax.jit(pipe.batch_fn)
    seen = []
    for step in (0, 1, 2, 3, 4, 7):
        batch = np.asarray(get(key, step))
        x0, x1 = pipe.draw(key, step)
        assert batch.shape == (B, 2, 2) and batch.dtype == np.float32
        np.testing.assert_array_equal(batch, pipe.host_batch(key, step))
        np.testing.assert_array_equal(batch[:, 1], x1)  # data rows keep their place
        # the noise column is a permutation of this step's noise draw
        order = np.lexsort(x0.T)
        np.testing.assert_array_equal(batch[np.lexsort(batch[:, 0].T), 0], x0[order])
        # ... and the pairing is optimal: the cost of an independent exact assignment
        perm = fm.exact_assignment(fm.squared_distances(x0, x1).T, "scipy")
        best = np.sum((x0[np.asarray(perm)] - x1).astype(np.float64) ** 2)
        got = np.sum((batch[:, 0] - batch[:, 1]).astype(np.float64) ** 2)
        np.testing.assert_allclose(got, best, rtol=1e-6)
        if step < N // B:
            seen.append(x1)
    # the first epoch uses every example exactly once
    rows = np.concatenate(seen)
    assert np.unique(rows, axis=0).shape[0] == N
    np.testing.assert_array_equal(np.sort(rows, axis=0), np.sort(data, axis=0))
    pipe.close()


def test_deterministic_in_any_order_and_per_key(data, key):
    a = fm.ot_paired_batches(data, B, workers=1, prefetch=2)
    b = fm.ot_paired_batches(data, B, prefetch=0)  # no thread pool
    first = [np.asarray(a.batch_fn(key, s)) for s in range(6)]
    # a "resumed" reader starting at step 4, then jumping back and forth
    for s in (4, 5, 0, 3, 3):
        np.testing.assert_array_equal(np.asarray(b.batch_fn(key, s)), first[s])
        np.testing.assert_array_equal(np.asarray(a.batch_fn(key, s)), first[s])
    other = np.asarray(a.batch_fn(jax.random.fold_in(key, 1), 0))
    assert not np.array_equal(other, first[0])
    assert not np.array_equal(first[0], first[1])
    # vmapped over steps (how fit builds the batches of a sharded run)
    stacked = jax.jit(jax.vmap(a.batch_fn, in_axes=(None, 0)))(key, jnp.arange(3))
    np.testing.assert_array_equal(np.asarray(stacked), np.stack(first[:3]))
    a.close()
    np.testing.assert_array_equal(np.asarray(a.batch_fn(key, 2)), first[2])  # after close
    b.close()


def _train(data, key, workdir, num_steps):
    net = nets.mlp(2, (16,), "silu")

    def apply(params, t, x, context=None):
        return net.apply(params, x, jnp.broadcast_to(t, x.shape[:1])[:, None])

    loss = fm.cfm_loss(apply, paths.cond_ot_path(0.0), source="paired")
    pipe = fm.ot_paired_batches(data, B, workers=2)
    params = net.init(jax.random.key(1), data[:2], data[:2, :1])
    try:
        res = fit(
            loss,
            optax.adam(1e-2),
            params,
            pipe.batch_fn,
            key=key,
            num_steps=num_steps,
            steps_per_call=2,
            checkpointing=Checkpointing(workdir),
            progress=False,
        )
    finally:
        pipe.close()
    return res


@pytest.mark.slow
def test_fit_trains_on_pipelined_pairs_and_resumes_exactly(data, key, tmp_path):
    whole = _train(data, key, tmp_path / "whole", 4)
    assert len(whole.history) == 2 and all(np.isfinite(r["loss"]) for r in whole.history)
    _train(data, key, tmp_path / "split", 2)
    resumed = _train(data, key, tmp_path / "split", 4)  # continues from the step-2 checkpoint
    assert int(resumed.state.step) == 4
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, whole.state.params)


def test_bad_input_raises_clearly(data, key):
    with pytest.raises(DataError, match=r"\(n, \*event\)"):
        fm.ot_paired_batches(data[:, 0], 8)
    bad = data.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        fm.ot_paired_batches(bad, 8)
    with pytest.raises(DataError, match="floating point"):
        fm.ot_paired_batches(data.astype(np.int32), 8)
    with pytest.raises(DataError, match="batch_size"):
        fm.ot_paired_batches(data, N + 1)
    with pytest.raises(ValueError, match="workers"):
        fm.ot_paired_batches(data, 8, workers=0)
    with pytest.raises(ValueError, match="solver"):
        fm.ot_paired_batches(data, 8, solver="hungarian")
    pipe = fm.ot_paired_batches(data, 8, prefetch=0)
    with pytest.raises(TypeError, match="PRNG key"):
        pipe.batch_fn(jnp.zeros(2, jnp.float32), 0)
    with pytest.raises(TypeError, match="integer scalar"):
        pipe.batch_fn(key, jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="step must be >= 0"):
        pipe.host_batch(key, -1)
