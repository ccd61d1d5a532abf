"""TrainState and the compiled train step shared by every model family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._types import Array, Key, Params

LossFn = Callable[[Params, Key, Any], tuple[Array, dict[str, Array]]]
"""``loss(params, key, batch) -> (scalar loss, metrics dict of scalars)``."""


class TrainState(NamedTuple):
    """Everything a training run carries from step to step (and checkpoints).

    Attributes:
      step: int32 scalar, number of optimizer updates applied so far.
      params: model parameters.
      opt_state: optax state.
      ema_params: exponential moving average of ``params`` (``None`` when EMA is off).
    """

    step: Array
    params: Params
    opt_state: optax.OptState
    ema_params: Params | None = None


def init_train_state(
    params: Params, optimizer: optax.GradientTransformation, ema: bool = False
) -> TrainState:
    """A fresh :class:`TrainState` at step 0 (EMA starts equal to ``params`` when enabled)."""
    ema_params = jax.tree.map(jnp.asarray, params) if ema else None
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), ema_params)


def _all_finite(tree) -> Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def apply_update(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    key: Key,
    batch: Any,
    ema_decay: float | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer update (not jitted; the building block of the compiled steps).

    The loss key is ``fold_in(key, state.step)``, so a run's randomness depends only on
    ``key`` and the step number. If the loss or a gradient is not finite the update is
    skipped (the returned state equals ``state``, step counter included) and
    ``metrics["finite"]`` is 0, so the caller can stop with the last good state intact.
    """
    step_key = jax.random.fold_in(key, state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, step_key, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
        if ema_decay is None:
            raise ValueError("the state carries EMA params but no ema_decay was given")
        ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    new = TrainState(state.step + 1, params, opt_state, ema)
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
    metrics = {"loss": loss, **aux, "grad_norm": optax.global_norm(grads)}
    metrics["finite"] = finite.astype(jnp.float32)
    return new, metrics


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: float | None = None,
    jit: bool = True,
) -> Callable[[TrainState, Key, Any], tuple[TrainState, dict[str, Array]]]:
    """``step(state, key, batch) -> (state, metrics)``, jit-compiled once per input shape.

    ``key`` is the run's base key (the same every step); the step derives its own key
    with ``fold_in(key, state.step)``.
    """

    def step(state: TrainState, key: Key, batch: Any):
        return apply_update(loss_fn, optimizer, state, key, batch, ema_decay)

    return jax.jit(step) if jit else step


def make_multi_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_fn: Callable[[Key, Array], Any],
    *,
    ema_decay: float | None = None,
) -> Callable[[TrainState, Key, Key, int], tuple[TrainState, dict[str, Array]]]:
    """``run(state, data_key, train_key, num) -> (state, metrics)``: ``num`` steps in one call.

    Batches come from ``batch_fn(data_key, step)`` inside the compiled ``lax.scan``, so
    there is one dispatch (and no host-to-device copy) per ``num`` steps. Metrics are
    stacked along a leading axis of length ``num``. ``num`` is static: each distinct value
    compiles once.
    """

    def run(state: TrainState, data_key: Key, train_key: Key, num: int):
        def body(state, _):
            batch = batch_fn(data_key, state.step)
            return apply_update(loss_fn, optimizer, state, train_key, batch, ema_decay)

        return jax.lax.scan(body, state, None, length=num)

    return jax.jit(run, static_argnums=3)
