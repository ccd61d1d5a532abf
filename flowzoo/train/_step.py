"""TrainState and the compiled train step shared by every model family.

One update rule (:func:`apply_update`) serves every way of running it:

* :func:`make_train_step` / :func:`make_multi_step`: one device, ``jax.jit``;
* :func:`make_train_step` with ``mesh=``: the same code under ``jax.jit`` with
  ``NamedSharding`` in/out shardings, the batch split along the mesh's ``data`` axis and
  the state replicated; XLA inserts the gradient all-reduce;
* :func:`make_pmap_train_step`: ``jax.pmap`` over local devices, gradients averaged with
  ``lax.pmean`` (for code built around ``pmap``).

Mixed precision (``compute_dtype=jnp.bfloat16``): the float32 parameters are cast to
bfloat16 for the forward/backward pass only; the batch stays float32, gradients, the
optimizer state, the EMA and the master parameters stay float32, and the loss is returned
as float32. :func:`flowzoo.nets.mlp` networks compute in their parameters' dtype and the
coupling layers cast their outputs back to the data's dtype, so log-determinants and
base log-densities are accumulated in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._types import Array, Key, Params

LossFn = Callable[[Params, Key, Any], tuple[Array, dict[str, Array]]]
"""``loss(params, key, batch) -> (scalar loss, metrics dict of scalars)``."""

DATA_AXIS = "data"
"""Name of the mesh / pmap axis the batch is split along."""

EmaDecay = float | Callable[[Array], Array] | None
"""A fixed EMA decay, or a schedule ``decay(step)`` of the number of updates made so far."""


def ema_warmup(decay: float) -> Callable[[Array], Array]:
    """The EMA decay schedule ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.

    A fixed decay ``d`` keeps a weight ``d**n`` on the initial parameters: 4% after 3,200
    updates at 0.999, 33% after 1,100. With this warm-up (the ``num_updates`` rule of
    TensorFlow's ``ExponentialMovingAverage``) the first update takes 90% of the new
    parameters and the decay reaches ``decay`` after ``(10 d - 1) / (1 - d)`` updates
    (8,990 for 0.999), by which time the initial parameters weigh about 1e-4.
    """
    decay = float(decay)
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")

    def schedule(n: Array) -> Array:
        n = jnp.asarray(n, jnp.float32)
        return jnp.minimum(decay, (1.0 + n) / (10.0 + n))

    return schedule


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
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _global_norm(tree) -> Array:
    norm = getattr(getattr(optax, "tree", None), "norm", None)  # optax >= 0.2.5
    return norm(tree) if norm is not None else optax.global_norm(tree)


def check_compute_dtype(compute_dtype: Any) -> Any:
    """Validate a mixed-precision compute dtype: ``None``, float32 or bfloat16.

    float16 is refused: its 5-bit exponent needs loss scaling, which flowzoo does not do.
    """
    if compute_dtype is None:
        return None
    dt = jnp.dtype(compute_dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(
            f"compute_dtype must be None, 'float32' or 'bfloat16', got {dt}"
            + (" (float16 needs loss scaling; use bfloat16)" if dt == jnp.float16 else "")
        )
    return dt


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with its floating-point leaves cast to ``dtype`` (others unchanged)."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x,
        tree,
    )


def apply_update(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    key: Key,
    batch: Any,
    ema_decay: EmaDecay = None,
    *,
    axis_name: str | None = None,
    compute_dtype: Any = None,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer update (not jitted; the building block of the compiled steps).

    The loss key is ``fold_in(key, state.step)``, so a run's randomness depends only on
    ``key`` and the step number. If the batch holds a NaN/inf, or the loss, a gradient or
    a new parameter is not finite (tested through the global norms of the gradients and of
    the new parameters, so float32 parameters beyond ~1e19 count as overflowed too), the
    update is skipped (the returned state equals ``state``, step counter included) and
    ``metrics["finite"]`` is 0 (``metrics["data_finite"]`` is 0 when the batch was the
    culprit), so the caller can stop with the last good state intact.

    Args:
      loss_fn: ``loss(params, key, batch) -> (scalar, metrics)``.
      optimizer: optax transformation.
      state: the current state.
      key: the run's training key (the same every step).
      batch: a pytree of arrays with a leading batch axis (per device under ``pmap``).
      ema_decay: decay of the parameter EMA (required when ``state.ema_params`` is set): a
        number, or a schedule ``decay(state.step)`` such as :func:`ema_warmup`.
      axis_name: inside ``pmap``/``shard_map``, the axis to average loss, metrics and
        gradients over with ``lax.pmean``; the loss key is further folded with the
        device's axis index so devices draw independent noise.
      compute_dtype: ``jnp.bfloat16`` runs the loss on bfloat16 copies of the parameters
        (mixed precision); the loss, metrics and gradients come back as float32.
    """
    compute_dtype = check_compute_dtype(compute_dtype)
    step_key = jax.random.fold_in(key, state.step)
    if axis_name is not None:
        step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))

    def compute_loss(params):
        if compute_dtype is not None:
            params = cast_floating(params, compute_dtype)
        loss, aux = loss_fn(params, step_key, batch)
        if compute_dtype is None:
            return loss, aux

        def wide(v):  # bf16 metrics -> float32 (float64 stays float64)
            v = jnp.asarray(v)
            return v.astype(jnp.promote_types(v.dtype, jnp.float32))

        return wide(loss), {k: wide(v) for k, v in aux.items()}

    (loss, aux), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
    data_finite = _all_finite(batch)
    if axis_name is not None:
        loss, aux, grads = jax.lax.pmean((loss, aux, grads), axis_name)
        data_finite = jax.lax.pmin(data_finite.astype(jnp.int32), axis_name).astype(bool)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
        if ema_decay is None:
            raise ValueError("the state carries EMA params but no ema_decay was given")
        d = ema_decay(state.step) if callable(ema_decay) else ema_decay
        ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
    grad_norm = _global_norm(grads)
    # One scalar per tree: a NaN or inf in any leaf makes the tree's global norm NaN or inf,
    # and so does a finite tree whose squares overflow (an update optax would scale to zero
    # or NaN; parameters beyond ~1e19 in float32). A per-leaf isfinite test of gradients and
    # new parameters makes XLA compile a UNet step several times longer on CPU, for no extra
    # safety.
    finite = (
        data_finite
        & jnp.isfinite(loss)
        & jnp.isfinite(grad_norm)
        & jnp.isfinite(_global_norm(params))
    )
    new = TrainState(state.step + 1, params, opt_state, ema)
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
    metrics = {"loss": loss, **aux, "grad_norm": grad_norm}
    metrics["finite"] = finite.astype(jnp.float32)
    metrics["data_finite"] = data_finite.astype(jnp.float32)
    return new, metrics


def data_mesh(devices: Any = None) -> Mesh:
    """A 1-D :class:`jax.sharding.Mesh` with axis ``"data"`` over ``devices``.

    ``None`` takes every device of every process (``jax.devices()``), process by process,
    so each process's devices hold a contiguous block of the batch.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def _check_mesh(mesh: Mesh) -> None:
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"the mesh needs an axis named {DATA_AXIS!r} to split the batch along; "
            f"it has {mesh.axis_names} (build one with flowzoo.train.data_mesh())"
        )


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless the global ``batch_size`` splits evenly over the mesh."""
    n = mesh.shape[DATA_AXIS]
    if batch_size % n:
        raise ValueError(
            f"global batch size {batch_size} does not divide evenly over the {n} devices of "
            f"the mesh's {DATA_AXIS!r} axis; use a multiple of {n} (e.g. "
            f"{max(n, batch_size // n * n)})"
        )


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Sharding that splits axis ``leading`` of a batch along the mesh's ``data`` axis."""
    _check_mesh(mesh)
    return NamedSharding(mesh, P(*([None] * leading), DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh`` (params, opt state)."""
    return NamedSharding(mesh, P())


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: EmaDecay = None,
    jit: bool = True,
    mesh: Mesh | None = None,
    compute_dtype: Any = None,
) -> Callable[[TrainState, Key, Any], tuple[TrainState, dict[str, Array]]]:
    """``step(state, key, batch) -> (state, metrics)``, jit-compiled once per input shape.

    ``key`` is the run's base key (the same every step); the step derives its own key
    with ``fold_in(key, state.step)``.

    With ``mesh`` (see :func:`data_mesh`) the same step is compiled with ``NamedSharding``
    in/out shardings: the batch (global leading size divisible by the mesh's ``data``
    size) is split along ``data``; state, key and metrics are replicated. The loss is the
    mean over the global batch, so results equal the one-device step up to float
    reassociation in the cross-device reductions.
    """
    check_compute_dtype(compute_dtype)

    def step(state: TrainState, key: Key, batch: Any):
        return apply_update(
            loss_fn, optimizer, state, key, batch, ema_decay, compute_dtype=compute_dtype
        )

    if mesh is None:
        return jax.jit(step) if jit else step
    rep, shard = replicated(mesh), batch_sharding(mesh)
    compiled = jax.jit(step, in_shardings=(rep, rep, shard), out_shardings=(rep, rep))

    def sharded_step(state: TrainState, key: Key, batch: Any):
        check_batch_divides(jax.tree.leaves(batch)[0].shape[0], mesh)
        return compiled(state, key, batch)

    return sharded_step


def make_pmap_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: EmaDecay = None,
    axis_name: str = DATA_AXIS,
    compute_dtype: Any = None,
    devices: Any = None,
) -> Callable[[TrainState, Key, Any], tuple[TrainState, dict[str, Array]]]:
    """The train step under ``jax.pmap``, gradients averaged with ``lax.pmean``.

    ``step(state, key, batch) -> (state, metrics)`` where ``state`` is replicated with a
    leading device axis (:func:`replicate`), ``key`` is the run's key (not replicated) and
    ``batch`` is ``(num_devices, per_device_batch, *event)`` (:func:`shard_batch`).
    Returned state and metrics carry the device axis (all devices hold equal values).
    Each device folds its axis index into the loss key, so a stochastic loss draws
    independent noise per device (deterministic losses match the one-device step).
    """
    check_compute_dtype(compute_dtype)

    def step(state: TrainState, key: Key, batch: Any):
        return apply_update(
            loss_fn,
            optimizer,
            state,
            key,
            batch,
            ema_decay,
            axis_name=axis_name,
            compute_dtype=compute_dtype,
        )

    return jax.pmap(step, axis_name=axis_name, in_axes=(0, None, 0), devices=devices)


def replicate(tree: Any, devices: Any = None) -> Any:
    """``tree`` with a leading axis of one copy per local device (the ``pmap`` layout)."""
    n = jax.local_device_count() if devices is None else len(list(devices))
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))), tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a :func:`replicate`-d tree."""
    return jax.tree.map(lambda x: x[0], tree)


def shard_batch(batch: Any, num_devices: int | None = None) -> Any:
    """Reshape a global batch ``(B, ...)`` to ``(num_devices, B // num_devices, ...)``."""
    n = jax.local_device_count() if num_devices is None else int(num_devices)

    def split(x):
        if x.shape[0] % n:
            raise ValueError(
                f"global batch size {x.shape[0]} does not divide evenly over {n} devices"
            )
        return x.reshape(n, x.shape[0] // n, *x.shape[1:])

    return jax.tree.map(split, batch)


def make_multi_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_fn: Callable[[Key, Array], Any],
    *,
    ema_decay: EmaDecay = None,
    compute_dtype: Any = None,
) -> Callable[[TrainState, Key, Key, int], tuple[TrainState, dict[str, Array]]]:
    """``run(state, data_key, train_key, num) -> (state, metrics)``: ``num`` steps in one call.

    Batches come from ``batch_fn(data_key, step)`` inside the compiled ``lax.scan``, so
    there is one dispatch (and no host-to-device copy) per ``num`` steps. Metrics are
    stacked along a leading axis of length ``num``. ``num`` is static: each distinct value
    compiles once. ``num == 1`` compiles the step without a loop around it: XLA:CPU runs
    ``lax.conv`` inside a loop body, even one of length 1, an order of magnitude slower
    than at top level (see :func:`flowzoo.nets.unet`'s ``conv``).
    """
    check_compute_dtype(compute_dtype)

    def run(state: TrainState, data_key: Key, train_key: Key, num: int):
        def body(state, _):
            batch = batch_fn(data_key, state.step)
            return apply_update(
                loss_fn,
                optimizer,
                state,
                train_key,
                batch,
                ema_decay,
                compute_dtype=compute_dtype,
            )

        if num == 1:
            state, metrics = body(state, None)
            return state, jax.tree.map(lambda v: v[None], metrics)
        return jax.lax.scan(body, state, None, length=num)

    return jax.jit(run, static_argnums=3)


def make_sharded_multi_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    train_key: Key,
    *,
    ema_decay: EmaDecay = None,
    compute_dtype: Any = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    """``run(state, batches) -> (state, metrics)``: a scan over pre-built sharded batches.

    ``batches`` is a pytree of global arrays ``(num, batch, *event)`` sharded along axis 1
    over the mesh's ``data`` axis (see :func:`batch_sharding` with ``leading=1``); the state
    is replicated. ``train_key`` is baked into the compiled function (it is the same for
    every call of a run), so only arrays that live on the mesh are passed in — which is
    what a multi-process run requires.
    """
    check_compute_dtype(compute_dtype)
    rep, shard = replicated(mesh), batch_sharding(mesh, leading=1)
    typed = jnp.issubdtype(train_key.dtype, jax.dtypes.prng_key)
    key_data = np.asarray(jax.random.key_data(train_key) if typed else train_key)
    impl = jax.random.key_impl(train_key) if typed else None

    def run(state: TrainState, batches: Any):
        key = jax.random.wrap_key_data(key_data, impl=impl) if impl is not None else key_data

        def body(state, batch):
            return apply_update(
                loss_fn, optimizer, state, key, batch, ema_decay, compute_dtype=compute_dtype
            )

        return jax.lax.scan(body, state, batches)

    return jax.jit(run, in_shardings=(rep, shard), out_shardings=(rep, rep))
