"""``dry_run(config)``: build and compile a run's train step without data or training.

``flowzoo train NAME --dry-run`` prints what this returns: the parameter count, the step's
FLOPs from XLA's cost analysis of the compiled program, and its memory from XLA's memory
analysis, so a recipe's size and cost are known before a GPU is booked for it.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import data as fzdata
from .._compile import jit
from ..train import init_train_state, make_train_step
from ._config import complete_config, validate_config
from ._registry import build_model
from ._run import (
    _compute_dtype,
    _ema_decay,
    _image_levels,
    _model_config,
    _run_mesh,
    build_optimizer,
    load_data,
)
from ._spec import ConfigError


def _event_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """The run's event shape: a published data set's fixed shape (no file is read), else the
    shape of the data the config loads."""
    d = config["data"]
    info = fzdata.DATASETS.get(str(d["name"]).lower())
    if info is not None and info.shape is not None:
        return tuple(info.shape)
    if info is not None and d.get("image_size"):
        size = int(d["image_size"])
        return (size, size, 3)
    train, _ = load_data(config)
    return tuple(train.shape[1:])


def _example_batch(model, config: dict[str, Any], event_shape: tuple[int, ...]):
    """One training batch's structure (zeros of the data's shape and dtype)."""
    batch = int(config["train"]["batch_size"])
    zeros = np.zeros((batch, *event_shape), np.float32)
    if model.batches is None:
        return jax.ShapeDtypeStruct(zeros.shape, jnp.float32)
    batch_fn, close = model.batches(np.zeros((2 * batch, *event_shape), np.float32), batch)
    try:  # the model's own batches (coupled pairs): their structure, not their values
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)),
            batch_fn(jax.random.key(0), 0),
        )
    finally:
        if close is not None:
            close()


def _dot_flops(eqn) -> float:
    (contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2.0 * float(np.prod(out)) * float(np.prod([lhs[d] for d in contract]))


def _conv_flops(eqn) -> float:
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2.0 * float(np.prod(out)) * float(np.prod(rhs)) / out_features


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(v, "jaxpr") and hasattr(v, "consts"):  # a ClosedJaxpr
                yield v.jaxpr
            elif hasattr(v, "eqns"):
                yield v


def jaxpr_flops(jaxpr) -> float:
    """Multiply-add FLOPs (2 per multiply-add) of the matrix products and convolutions of a
    jaxpr, the inner jaxprs of ``scan`` counted ``length`` times (XLA's cost analysis counts
    a loop body once), of ``cond`` its costliest branch. Elementwise operations are not
    counted (the model-FLOPs convention of MFU). A ``while`` body, whose trip count is
    unknown, is counted once."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "cond":
            total += max((jaxpr_flops(b.jaxpr) for b in eqn.params["branches"]), default=0.0)
        else:
            inner = sum(jaxpr_flops(j) for j in _sub_jaxprs(eqn))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


def _first(analysis: Any) -> dict[str, Any]:
    """XLA's cost analysis: a dict, or a list with one dict per program on older JAX."""
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return dict(analysis or {})


def dry_run(config: dict[str, Any]) -> dict[str, Any]:
    """Build the model a config describes and compile one train step for it, without data.

    The parameters are never materialised: ``init`` runs under ``jax.eval_shape`` and the
    step is lowered from abstract shapes (the batch is ``train.batch_size`` examples of the
    data's event shape, float32), on the mesh the run would train on. A published data set
    (:data:`flowzoo.data.DATASETS` with a fixed shape, e.g. ``cifar10``) needs no file.

    Returns a dict: ``parameters`` (count), ``param_bytes``, ``event_shape``, ``batch_size``,
    ``flops`` (per step: the matrix products and convolutions of the step's jaxpr, forward
    and backward, scanned layers counted once per layer, :func:`jaxpr_flops`; the count
    model-FLOPs utilisation divides), ``flops_per_example``, ``xla_flops`` (XLA's cost
    analysis of the compiled step on this backend, elementwise work included, a loop body
    counted once; ``None`` where the backend reports none), ``argument_bytes``,
    ``output_bytes``, ``temp_bytes`` and ``peak_bytes`` (arguments + outputs - aliased +
    temporaries: the step's memory on one device), ``compile_seconds`` (lowering and
    compiling) and ``backend``.
    """
    config = complete_config(config)
    validate_config(config)
    mesh = _run_mesh(config, None)
    event_shape = _event_shape(config)
    model = build_model(_model_config(config), event_shape)
    optimizer = build_optimizer(config)
    ema = config["train"]["ema_decay"] > 0
    n_init = min(int(config["train"]["batch_size"]), 1024)
    example = jnp.zeros((n_init, *event_shape), jnp.float32)
    if _image_levels(config) is not None:  # mid-grey images, as data-dependent init sees data
        example = example + (_image_levels(config) // 2)
    state = jax.eval_shape(
        lambda: init_train_state(
            model.init(jax.random.key(config["seed"]), example), optimizer, ema
        )
    )
    step = make_train_step(
        model.loss,
        optimizer,
        ema_decay=_ema_decay(config["train"]),
        mesh=None if mesh in (None, "auto") else mesh,
        compute_dtype=_compute_dtype(config),
    )
    batch = _example_batch(model, config, event_shape)
    key = jax.eval_shape(lambda: jax.random.key(0))
    t0 = time.perf_counter()
    try:
        compiled = jit(step).lower(state, key, batch).compile()  # as flowzoo train compiles it
    except Exception as err:
        raise ConfigError(f"the train step does not compile: {type(err).__name__}: {err}") from err
    compile_seconds = time.perf_counter() - t0
    flops = jaxpr_flops(jax.make_jaxpr(step)(state, key, batch).jaxpr)
    return _report(config, event_shape, state, compiled, compile_seconds, flops)


def _report(config, event_shape, state, compiled, compile_seconds, flops) -> dict[str, Any]:
    leaves = jax.tree.leaves(state.params)
    n_params = int(sum(int(np.prod(x.shape)) for x in leaves))
    param_bytes = int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in leaves))
    cost = _first(compiled.cost_analysis())
    xla_flops = float(cost["flops"]) if cost.get("flops", 0) > 0 else None
    mem = compiled.memory_analysis()
    sizes = {
        k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0) if mem is not None else None
        for k in ("argument", "output", "alias", "temp")
    }
    peak = None
    if mem is not None:
        peak = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
    batch = int(config["train"]["batch_size"])
    return {
        "name": config["name"],
        "parameters": n_params,
        "param_bytes": param_bytes,
        "event_shape": list(event_shape),
        "batch_size": batch,
        "flops": flops,
        "flops_per_example": flops / batch,
        "xla_flops": xla_flops,
        "argument_bytes": sizes["argument"],
        "output_bytes": sizes["output"],
        "temp_bytes": sizes["temp"],
        "peak_bytes": peak,
        "compile_seconds": compile_seconds,
        "backend": jax.default_backend(),
    }
