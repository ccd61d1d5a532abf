"""TrainState and the compiled train step shared by every model family.

One update rule (:func:`apply_update`) serves every way of running it:

* :func:`make_train_step` / :func:`make_multi_step`: one device, ``jax.jit``;
* :func:`make_train_step` with ``mesh=``: the same code under ``jax.jit`` with
  ``NamedSharding`` in/out shardings, the batch split along the mesh's ``data`` (and
  ``fsdp``) axes and the state kept where it was placed: replicated, or split over
  ``fsdp`` (:func:`put_state`); XLA inserts the gradient all-reduce (or, for split
  parameters, the all-gathers and reduce-scatters);
* :func:`make_pmap_train_step`: ``jax.pmap`` over local devices, gradients averaged with
  ``lax.pmean`` (for code built around ``pmap``).

The ``jax.jit`` steps compile with :func:`flowzoo.train.compiler_options` (on CPU: XLA's
Eigen convolutions in place of YNNPACK's, see ``flowzoo/_compile.py``); ``pmap`` takes no
compiler options and compiles with XLA's defaults.

Mixed precision (``compute_dtype=jnp.bfloat16``): the float32 parameters are cast to
bfloat16 for the forward/backward pass only; the batch stays float32, gradients, the
optimizer state, the EMA and the master parameters stay float32, and the loss is returned
as float32. :func:`flowzoo.nets.mlp` networks compute in their parameters' dtype and the
coupling layers cast their outputs back to the data's dtype, so log-determinants and
base log-densities are accumulated in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._compile import jit as _jit
from .._types import Array, Key, Params

LossFn = Callable[[Params, Key, Any], tuple[Array, dict[str, Array]]]
"""``loss(params, key, batch) -> (scalar loss, metrics dict of scalars)``."""

DATA_AXIS = "data"
"""Name of the mesh / pmap axis the batch is split along."""

FSDP_AXIS = "fsdp"
"""Name of the mesh axis parameters, optimizer state and EMA are split over (ZeRO-3); the
batch is split over it too."""

FSDP_MIN_SIZE = 2**16
"""Leaves with fewer elements stay replicated under ``param_sharding="fsdp"``."""

PARAM_SHARDINGS = ("replicated", "fsdp")
"""The parameter layouts: a full copy per device, or split over the ``fsdp`` axis."""

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


def make_mesh(
    shape: tuple[int, int] | None = None,
    *,
    param_sharding: str = "replicated",
    devices: Any = None,
) -> Mesh:
    """A 2-D :class:`jax.sharding.Mesh` with axes ``("data", "fsdp")`` of shape ``(D, F)``.

    The batch is split over both axes (``D * F`` blocks of rows); with
    ``param_sharding="fsdp"`` the parameters, optimizer state and EMA are split over the
    ``F`` devices of ``fsdp`` (:func:`param_shardings`). ``devices`` (default
    ``jax.devices()``, process by process) fill the mesh row by row, so device ``i`` holds
    the ``i``-th block of rows and each process's devices a contiguous block.

    Args:
      shape: ``(D, F)`` with ``D * F`` the number of devices; ``None``: every device on
        ``fsdp`` (``(1, N)``) when ``param_sharding="fsdp"``, every device on ``data``
        (``(N, 1)``) otherwise.
      param_sharding: ``"replicated"`` or ``"fsdp"`` (only picks the default shape).
      devices: the devices to use.
    """
    devices = jax.devices() if devices is None else list(devices)
    n = len(devices)
    check_param_sharding(param_sharding)
    if shape is None:
        shape = (1, n) if param_sharding == "fsdp" else (n, 1)
    shape = tuple(shape)
    if len(shape) != 2 or any(not isinstance(d, int | np.integer) or d < 1 for d in shape):
        raise ValueError(f"mesh shape must be two positive integers (D, F), got {shape}")
    if shape[0] * shape[1] != n:
        raise ValueError(
            f"mesh shape {shape} holds {shape[0] * shape[1]} devices but there are {n}; "
            f"use (D, F) with D * F = {n}"
        )
    return Mesh(np.asarray(devices).reshape(shape), (DATA_AXIS, FSDP_AXIS))


def check_param_sharding(param_sharding: str) -> str:
    """Raise ``ValueError`` unless ``param_sharding`` is ``"replicated"`` or ``"fsdp"``."""
    if param_sharding not in PARAM_SHARDINGS:
        raise ValueError(f"param_sharding must be one of {PARAM_SHARDINGS}, got {param_sharding!r}")
    return param_sharding


def _check_mesh(mesh: Mesh) -> None:
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"the mesh needs an axis named {DATA_AXIS!r} to split the batch along; "
            f"it has {mesh.axis_names} (build one with flowzoo.train.data_mesh() or "
            "flowzoo.train.make_mesh())"
        )


def _batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes the batch rows are split over: ``data``, and ``fsdp`` if present."""
    _check_mesh(mesh)
    return tuple(a for a in (DATA_AXIS, FSDP_AXIS) if a in mesh.axis_names)


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless the global ``batch_size`` splits evenly over the mesh's
    batch axes (``data``, and ``fsdp`` when the mesh has one)."""
    axes = _batch_axes(mesh)
    n = math.prod(mesh.shape[a] for a in axes)
    if batch_size % n:
        raise ValueError(
            f"global batch size {batch_size} does not divide evenly over the {n} devices of "
            f"the mesh's {' x '.join(repr(a) for a in axes)} "
            f"{'axes' if len(axes) > 1 else 'axis'}; use a multiple of {n} "
            f"(e.g. {max(n, batch_size // n * n)})"
        )


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Sharding that splits axis ``leading`` of a batch over the mesh's ``data`` axis (and
    its ``fsdp`` axis, when it has one: rows over ``data x fsdp``, device ``(d, f)`` of a
    ``(D, F)`` mesh holding block ``d * F + f``)."""
    axes = _batch_axes(mesh)
    return NamedSharding(mesh, P(*([None] * leading), axes if len(axes) > 1 else axes[0]))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh`` (params, opt state)."""
    return NamedSharding(mesh, P())


def _leaf_spec(shape: tuple[int, ...], f: int, min_size: int) -> P:
    """ZeRO-3 rule for one leaf: split its largest dimension divisible by ``f`` over
    ``fsdp`` when it has at least ``min_size`` elements; otherwise replicate it."""
    if f <= 1 or math.prod(shape) < min_size:
        return P()
    dims = [i for i, size in enumerate(shape) if size % f == 0]
    if not dims:
        return P()
    i = max(dims, key=lambda d: shape[d])  # the first of equal largest dimensions
    return P(*([None] * i), FSDP_AXIS)


def param_shardings(
    tree: Any,
    mesh: Mesh,
    param_sharding: str = "replicated",
    *,
    min_size: int = FSDP_MIN_SIZE,
) -> Any:
    """A ``NamedSharding`` for every leaf of ``tree`` (params, optimizer state, EMA, or a
    whole :class:`TrainState`; arrays or ``jax.ShapeDtypeStruct``).

    ``"fsdp"`` (ZeRO-3): a leaf of at least ``min_size`` elements is split along its
    largest dimension divisible by the size ``F`` of the mesh's ``fsdp`` axis (the first
    such dimension on a tie), so each device holds ``1/F`` of it; smaller leaves, and
    leaves with no dimension divisible by ``F``, are replicated. Adam's moments have their
    parameters' shapes and so their parameters' layout. ``"replicated"``: every leaf
    replicated.
    """
    check_param_sharding(param_sharding)
    if param_sharding == "fsdp" and FSDP_AXIS not in mesh.axis_names:
        raise ValueError(
            f"param_sharding='fsdp' needs a mesh with an axis named {FSDP_AXIS!r}; this one "
            f"has {mesh.axis_names} (build one with flowzoo.train.make_mesh())"
        )
    f = mesh.shape[FSDP_AXIS] if param_sharding == "fsdp" else 1

    def sharding(x):
        return NamedSharding(mesh, _leaf_spec(tuple(np.shape(x)), f, min_size))

    return jax.tree.map(sharding, tree)


def put_state(
    tree: Any,
    mesh: Mesh,
    param_sharding: str = "replicated",
    *,
    min_size: int = FSDP_MIN_SIZE,
) -> Any:
    """``tree`` as global arrays on ``mesh``, laid out by :func:`param_shardings`.

    ``tree`` holds host values (or arrays) equal on every process; each process places
    only the pieces its own devices hold.
    """
    shardings = param_shardings(tree, mesh, param_sharding, min_size=min_size)

    def put(x, sharding):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree, shardings)


def per_device_bytes(tree: Any, device: Any = None) -> int:
    """Bytes of ``tree``'s arrays held on one device: for every ``jax.Array`` leaf, the
    sum of ``nbytes`` of its addressable shards on ``device`` (default: this process's
    first device, ``jax.local_devices()[0]``). Leaves that are not ``jax.Array`` (NumPy
    arrays, Python scalars) live on the host and count 0."""
    device = jax.local_devices()[0] if device is None else device
    return sum(
        shard.data.nbytes
        for x in jax.tree.leaves(tree)
        if isinstance(x, jax.Array)
        for shard in x.addressable_shards
        if shard.device == device
    )


def _placement(state: Any, mesh: Mesh) -> Any:
    """The shardings ``state``'s leaves are placed with on ``mesh``; leaves placed anywhere
    else (one device, host values) get the replicated sharding."""
    rep = replicated(mesh)

    def of(x):
        s = getattr(x, "sharding", None)
        return s if isinstance(s, NamedSharding) and s.mesh == mesh else rep

    return jax.tree.map(of, state)


def _jit_keeping_placement(fn: Callable, mesh: Mesh, rest: tuple) -> Callable:
    """``fn(state, *args) -> (state, metrics)`` under ``jax.jit``: the state comes in and
    goes out with the shardings it was placed with (:func:`_placement`), the other
    arguments with the shardings ``rest``, metrics replicated. One compilation per layout."""
    compiled: dict[Any, Callable] = {}
    rep = replicated(mesh)

    def call(state, *args):
        shardings = _placement(state, mesh)
        leaves, treedef = jax.tree.flatten(shardings)
        key = (treedef, tuple(leaves))
        if key not in compiled:
            compiled[key] = _jit(
                fn, in_shardings=(shardings, *rest), out_shardings=(shardings, rep)
            )
        return compiled[key](state, *args)

    return call


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

    With ``mesh`` (see :func:`data_mesh`, :func:`make_mesh`) the same step is compiled
    with ``NamedSharding`` in/out shardings: the batch (global leading size divisible by
    the number of devices on the mesh's ``data`` and ``fsdp`` axes) is split over them;
    key and metrics are replicated; the state keeps the layout it comes with (replicated,
    or split over ``fsdp`` by :func:`put_state`; a state on one device is replicated), and
    each layout compiles once. The loss is the mean over the global batch, so results
    equal the one-device step up to float reassociation in the cross-device reductions.
    """
    check_compute_dtype(compute_dtype)

    def step(state: TrainState, key: Key, batch: Any):
        return apply_update(
            loss_fn, optimizer, state, key, batch, ema_decay, compute_dtype=compute_dtype
        )

    if mesh is None:
        return _jit(step) if jit else step
    compiled = _jit_keeping_placement(step, mesh, (replicated(mesh), batch_sharding(mesh)))

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
    the gradient convolutions of ``lax.conv`` inside a loop body, even one of length 1, as
    naive loop nests, an order of magnitude slower than at top level (it rewrites them into
    its Eigen kernels' form at top level only; see :func:`flowzoo.nets.unet`'s ``conv``).
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

    return _jit(run, static_argnums=3)


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
    over the mesh's batch axes (see :func:`batch_sharding` with ``leading=1``); the state
    keeps the layout it comes with (replicated, or split over ``fsdp`` by
    :func:`put_state`), and each layout compiles once. ``train_key`` is baked into the
    compiled function (it is the same for every call of a run), so only arrays that live
    on the mesh are passed in — which is what a multi-process run requires.
    """
    check_compute_dtype(compute_dtype)
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

    return _jit_keeping_placement(run, mesh, (batch_sharding(mesh, leading=1),))
