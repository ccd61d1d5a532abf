"""flowzoo.train steps: one trace, loss goes down, fold_in step keys, NaN skip, EMA, multi-step.

Tolerances (float32): hand computations and "K single steps == one K-step scan" agree to
``atol=1e-6`` (plus ``rtol=1e-6`` where values are O(1) or larger).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowzoo
from flowzoo import data as fzdata
from flowzoo import train
from flowzoo.flows import nll_loss


def _tiny_flow_problem(key, n=512, shift=2.0):
    """A tiny RealNVP and data far from its identity init (so the NLL has room to drop)."""
    model = flowzoo.realnvp(2, 4, (16,))
    kx, ki = jax.random.split(key)
    x = 0.5 * jax.random.normal(kx, (n, 2)) + shift
    params = model.init(ki, x[:64])
    return model, params, x


def _quadratic(params, key, batch):
    """``0.5 * mean |w - batch|^2`` with a random draw of the loss key as a metric."""
    loss = 0.5 * jnp.mean(jnp.sum((params["w"][None, :] - batch) ** 2, axis=-1))
    return loss, {"draw": jax.random.uniform(key)}


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------- tracing


@pytest.fixture(scope="module")
def trained_steps():
    """50 jitted Adam steps on a tiny RealNVP, counting traces of the loss.

    Returns ``(number of traces, losses, final state)``; shared by the tracing and the
    learning test (one compile).
    """
    key = jax.random.key(0)
    model, params, x = _tiny_flow_problem(key)
    chex.clear_trace_counter()
    traces = []

    def loss_fn(p, k, batch):
        traces.append(1)  # Python side effect: runs only while tracing
        return nll_loss(model)(p, k, batch)

    loss_fn = chex.assert_max_traces(loss_fn, n=1)  # a retrace raises AssertionError
    opt = optax.adam(1e-2)
    step = train.make_train_step(loss_fn, opt)
    state = train.init_train_state(params, opt)
    batches = jax.jit(fzdata.array_batches(x, 128))
    losses = []
    for i in range(50):  # a new batch and a new step number every call
        state, metrics = step(state, key, batches(key, i))
        assert float(metrics["finite"]) == 1.0
        losses.append(float(metrics["loss"]))
    return len(traces), losses, state


def test_train_step_traces_once(trained_steps):
    num_traces, _, state = trained_steps
    assert num_traces == 1
    assert int(state.step) == 50
    assert state.step.dtype == jnp.int32


def test_train_step_with_ema_traces_once(key):
    """The EMA branch keeps the state's dtypes too (a weak-typed leaf would retrace)."""
    chex.clear_trace_counter()
    loss_fn = chex.assert_max_traces(_quadratic, n=1)
    opt = optax.sgd(0.1)
    step = train.make_train_step(loss_fn, opt, ema_decay=0.9)
    state = train.init_train_state({"w": jnp.zeros(2)}, opt, ema=True)
    for i in range(4):
        state, _ = step(state, key, jnp.full((3, 2), float(i)))
    assert int(state.step) == 4


def test_multi_step_compiles_once_per_length(key):
    chex.clear_trace_counter()
    traces = []

    def loss_fn(p, k, batch):
        traces.append(1)
        return _quadratic(p, k, batch)

    opt = optax.sgd(0.1)
    batch_fn = fzdata.array_batches(jax.random.normal(key, (64, 2)), 8)
    run = train.make_multi_step(loss_fn, opt, batch_fn)
    state = train.init_train_state({"w": jnp.zeros(2)}, opt)
    for _ in range(3):
        state, metrics = run(state, key, key, 4)
    assert len(traces) == 1  # one compile for num=4, reused
    assert metrics["loss"].shape == (4,)
    state, _ = run(state, key, key, 3)
    assert len(traces) == 2  # a new static length compiles once more
    assert int(state.step) == 15


# --------------------------------------------------------------------------- learning


def test_loss_decreases(trained_steps):
    """50 Adam steps on a tiny RealNVP: the NLL of data centred at (2, 2) drops by > 1 nat."""
    _, losses, _ = trained_steps
    assert np.all(np.isfinite(losses))
    # identity init: NLL = log(2 pi) + 0.5 E|x|^2 ~ 1.84 + 4.25
    assert losses[0] > 5.0
    assert np.mean(losses[-5:]) < losses[0] - 1.0


# --------------------------------------------------------------------------- keys


def test_loss_key_is_fold_in_of_step(key):
    """The loss sees ``fold_in(key, state.step)``: a draw from it is reproduced by hand."""
    opt = optax.sgd(0.1)
    step = train.make_train_step(_quadratic, opt)
    state = train.init_train_state({"w": jnp.zeros(2)}, opt)
    batch = jnp.ones((4, 2))
    draws = []
    for s in range(4):
        state, metrics = step(state, key, batch)
        expected = jax.random.uniform(jax.random.fold_in(key, s))
        assert float(metrics["draw"]) == float(expected)  # exact: same key, same op
        draws.append(float(metrics["draw"]))
    assert len(set(draws)) == 4  # a different key every step
    # the key depends on state.step, not on how many calls were made
    jumped = state._replace(step=jnp.asarray(17, jnp.int32))
    _, metrics = step(jumped, key, batch)
    assert float(metrics["draw"]) == float(jax.random.uniform(jax.random.fold_in(key, 17)))


def test_multi_step_keys_and_batches(key):
    """Inside the scan, step ``s`` uses ``fold_in(train_key, s)`` and ``batch_fn(data_key, s)``."""
    seen = []

    def loss_fn(p, k, batch):
        loss, aux = _quadratic(p, k, batch)
        return loss, {**aux, "batch0": batch[0, 0]}

    def batch_fn(k, s):
        return jnp.full((2, 2), s.astype(jnp.float32)) + jax.random.uniform(k)

    opt = optax.sgd(0.1)
    run = train.make_multi_step(loss_fn, opt, batch_fn)
    state = train.init_train_state({"w": jnp.zeros(2)}, opt)
    data_key, train_key = jax.random.split(key)
    state = state._replace(step=jnp.asarray(3, jnp.int32))
    _, metrics = run(state, data_key, train_key, 4)
    for i, s in enumerate(range(3, 7)):
        assert float(metrics["draw"][i]) == float(
            jax.random.uniform(jax.random.fold_in(train_key, s))
        )
        seen.append(float(metrics["batch0"][i]))
    np.testing.assert_allclose(
        seen, np.arange(3, 7) + float(jax.random.uniform(data_key)), rtol=0, atol=1e-6
    )


# --------------------------------------------------------------------------- NaN


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_apply_update_skips_non_finite(key, where):
    """A NaN loss (or a finite loss with a NaN gradient) leaves the state untouched."""

    def loss_fn(p, k, batch):
        if where == "loss":
            loss = jnp.sum(p["w"] ** 2) * batch
        else:  # value sqrt(0) = 0 is finite; its gradient 0.5/sqrt(0) * 0 is NaN
            loss = jnp.sum(p["w"] ** 2) + jnp.sum(jnp.sqrt(jnp.abs(p["w"] * batch)))
        return loss, {}

    opt = optax.adam(0.1)
    state = train.init_train_state({"w": jnp.ones(3)}, opt, ema=True)
    # one good update first, so opt_state and EMA are not at their initial values
    good, m = train.apply_update(loss_fn, opt, state, key, jnp.asarray(1.0), ema_decay=0.5)
    assert float(m["finite"]) == 1.0
    assert int(good.step) == 1
    bad_batch = jnp.asarray(jnp.nan if where == "loss" else 0.0)
    new, m = train.apply_update(loss_fn, opt, good, key, bad_batch, ema_decay=0.5)
    assert float(m["finite"]) == 0.0
    if where == "loss":
        assert np.isnan(float(m["loss"]))
    else:
        assert np.isfinite(float(m["loss"]))
        assert not np.isfinite(float(m["grad_norm"]))
    _assert_trees_equal(new, good)  # step, params, opt_state and EMA all unchanged
    # the jitted step does the same
    step = train.make_train_step(loss_fn, opt, ema_decay=0.5)
    new, m = step(good, key, bad_batch)
    assert float(m["finite"]) == 0.0
    _assert_trees_equal(new, good)


def test_apply_update_skips_an_update_that_overflows_the_params(key):
    """Finite loss and gradients, but SGD with a huge rate pushes one leaf to -inf: the step
    is refused like a NaN one (the check reads the new parameters' global norm)."""

    def loss_fn(p, k, batch):
        return jnp.sum(p["w"] * batch) + jnp.sum(p["b"] ** 2), {}

    opt = optax.sgd(1e38)
    state = train.init_train_state({"w": jnp.ones(3), "b": jnp.zeros(2)}, opt)
    new, m = train.apply_update(loss_fn, opt, state, key, jnp.asarray([10.0, 0.0, 0.0]))
    assert np.isfinite(float(m["loss"])) and np.isfinite(float(m["grad_norm"]))
    assert float(m["finite"]) == 0.0
    _assert_trees_equal(new, state)
    # the same step with a finite result is taken
    new, m = train.apply_update(loss_fn, opt, state, key, jnp.asarray([1e-38, 0.0, 0.0]))
    assert float(m["finite"]) == 1.0 and int(new.step) == 1


def test_ema_without_decay_is_an_error(key):
    opt = optax.sgd(0.1)
    state = train.init_train_state({"w": jnp.zeros(2)}, opt, ema=True)
    with pytest.raises(ValueError, match="ema_decay"):
        train.apply_update(_quadratic, opt, state, key, jnp.ones((2, 2)))


# --------------------------------------------------------------------------- EMA


def test_ema_matches_hand_computation(key):
    """SGD on ``0.5 |w - b|^2``: ``w' = w - lr (w - b)``, ``ema' = d ema + (1 - d) w'``."""
    lr, decay = 0.1, 0.9
    opt = optax.sgd(lr)
    w0 = np.array([1.0, -2.0], np.float32)
    state = train.init_train_state({"w": jnp.asarray(w0)}, opt, ema=True)
    np.testing.assert_array_equal(np.asarray(state.ema_params["w"]), w0)  # EMA starts at params
    step = train.make_train_step(_quadratic, opt, ema_decay=decay)
    w, ema = w0.astype(np.float64), w0.astype(np.float64)
    for s in range(3):
        b = np.array([[0.5 * s, 3.0]], np.float32)
        state, _ = step(state, key, jnp.asarray(b))
        w = w - lr * (w - b[0])
        ema = decay * ema + (1 - decay) * w
        np.testing.assert_allclose(np.asarray(state.params["w"]), w, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(state.ema_params["w"]), ema, rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(state.ema_params["w"]), np.asarray(state.params["w"]))


# --------------------------------------------------------------------------- multi-step


@pytest.mark.slow
def test_multi_step_equals_single_steps(key):
    """``make_multi_step`` with K steps == K calls of the single step on ``batch_fn`` batches.

    The loss uses its key (noise added to the batch) and EMA is on, so keys, batches and
    the EMA all have to line up. Tolerance: ``atol=1e-6, rtol=1e-6``.
    """
    model, params, x = _tiny_flow_problem(key)
    base = nll_loss(model)

    def loss_fn(p, k, batch):
        return base(p, k, batch + 0.01 * jax.random.normal(k, batch.shape))

    opt = optax.adam(1e-2)
    batch_fn = fzdata.array_batches(x, 64)  # 8 steps per epoch: K=12 crosses an epoch
    data_key, train_key = jax.random.split(key)
    K = 12
    state0 = train.init_train_state(params, opt, ema=True)

    step = train.make_train_step(loss_fn, opt, ema_decay=0.95)
    batches = jax.jit(batch_fn)
    single, single_losses = state0, []
    for _ in range(K):
        single, m = step(single, train_key, batches(data_key, single.step))
        single_losses.append(float(m["loss"]))

    run = train.make_multi_step(loss_fn, opt, batch_fn, ema_decay=0.95)
    multi, metrics = run(state0, data_key, train_key, K)

    assert int(multi.step) == int(single.step) == K
    chex.assert_trees_all_close(multi.params, single.params, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(multi.ema_params, single.ema_params, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(multi.opt_state, single.opt_state, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(metrics["loss"]), single_losses, atol=1e-6, rtol=1e-6)
    assert not np.allclose(single_losses[0], single_losses[-1])  # it actually trained

    # num=1 compiles the step without a loop around it; it is the same step
    one, m1 = run(state0, data_key, train_key, 1)
    first, m_first = step(state0, train_key, batches(data_key, state0.step))
    chex.assert_trees_all_close(one, first, atol=1e-6, rtol=1e-6)
    assert m1["loss"].shape == (1,)
    np.testing.assert_allclose(float(m1["loss"][0]), float(m_first["loss"]), atol=1e-6)


def test_ema_warmup_matches_hand_computation(key):
    """With :func:`flowzoo.train.ema_warmup` the decay at update ``n`` (0-based) is
    ``min(d, (1 + n) / (10 + n))``: 0.1, 0.1818, 0.25, ... then ``d``."""
    lr, decay = 0.1, 0.2
    opt = optax.sgd(lr)
    w0 = np.array([1.0, -2.0], np.float32)
    state = train.init_train_state({"w": jnp.asarray(w0)}, opt, ema=True)
    step = train.make_train_step(_quadratic, opt, ema_decay=train.ema_warmup(decay))
    w, ema = w0.astype(np.float64), w0.astype(np.float64)
    for n in range(4):
        b = np.array([[0.5 * n, 3.0]], np.float32)
        state, _ = step(state, key, jnp.asarray(b))
        w = w - lr * (w - b[0])
        d = min(decay, (1 + n) / (10 + n))  # 0.1, 0.1818, 0.2, 0.2
        ema = d * ema + (1 - d) * w
        np.testing.assert_allclose(np.asarray(state.ema_params["w"]), ema, rtol=1e-6, atol=1e-6)
    sched = train.ema_warmup(0.999)
    np.testing.assert_allclose(float(sched(0)), 0.1, rtol=1e-6)
    assert float(sched(8000)) < 0.999 and float(sched(9000)) == np.float32(0.999)
    with pytest.raises(ValueError, match="ema decay"):
        train.ema_warmup(1.0)
