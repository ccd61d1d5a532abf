"""The option records of :func:`~flowzoo.train.fit`: checkpointing, evaluation and data
parallelism, each a ``NamedTuple`` with its defaults in its fields.

``fit``'s earlier separate keywords (``workdir``, ``checkpoint_every``, ``keep_checkpoints``,
``metadata``, ``eval_fn``, ``eval_every``, ``mesh``, ``local_batches``) still work in flowzoo
0.1, with a ``DeprecationWarning``, and go in 0.2: :func:`fit_records` turns them into the
records.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

from jax.sharding import Mesh

from ._step import TrainState


class Checkpointing(NamedTuple):
    """Where and how often :func:`~flowzoo.train.fit` saves a run.

    * ``workdir``: where ``metrics.jsonl`` and ``checkpoints/`` go (``None``: nothing is
      written). If it holds checkpoints, training resumes from the newest readable one;
      corrupt newer ones are warned about and moved to ``checkpoints_corrupt/``.
    * ``every``: save every this many steps (``None``: only at the end); a run also saves at
      the end, on Ctrl-C and on SIGTERM. Saves are atomic: a killed save never damages an
      older checkpoint.
    * ``keep``: how many checkpoints to keep (``None``: all), as in
      :func:`flowzoo.checkpoint.save`.
    * ``metadata``: a JSON-serialisable dict stored with each checkpoint.
    """

    workdir: str | os.PathLike | None = None
    every: int | None = None
    keep: int | None = 3
    metadata: dict[str, Any] | None = None


class Evaluation(NamedTuple):
    """What :func:`~flowzoo.train.fit` evaluates between compiled calls.

    * ``fn``: called as ``fn(state)`` on the host every ``every`` steps and at the end;
      returns a dict of floats that is logged with an ``eval/`` prefix. In a multi-process
      run every process calls it, on a process-local copy of the state.
    * ``every``: steps between evaluations (``None``: only at the end).
    """

    fn: Callable[[TrainState], dict[str, float]]
    every: int | None = None


class DataParallel(NamedTuple):
    """How :func:`~flowzoo.train.fit` spreads the batch over devices.

    * ``mesh``: ``None`` trains on the default device. A :class:`jax.sharding.Mesh` with a
      ``"data"`` axis, and optionally an ``"fsdp"`` axis (:func:`flowzoo.train.make_mesh`),
      trains data-parallel: the global batch (its leading size must divide by the number
      of devices on those axes) is split over them. ``"auto"`` is every device of every
      process: :func:`flowzoo.train.data_mesh` for replicated parameters,
      ``make_mesh(param_sharding="fsdp")`` (all devices on ``fsdp``) for FSDP. Results
      equal the one-device run up to float reassociation of the cross-device reductions.
    * ``local_batches``: with a mesh, ``batch_fn`` returns only this process's rows (global
      batch / process count; process ``p`` holds the ``p``-th block). By default it returns
      the global batch and each process keeps its own rows.
    * ``param_sharding``: ``"replicated"``: params, optimizer state and EMA are copied to
      every device. ``"fsdp"`` (needs a mesh with an ``"fsdp"`` axis, or ``"auto"``):
      they are split over ``fsdp`` ZeRO-3 style (each leaf of at least 2^16 elements along
      its largest dimension divisible by the axis size, smaller leaves replicated;
      :func:`flowzoo.train.param_shardings`) and XLA's partitioner gathers the parameters
      for the forward/backward pass and reduce-scatters the gradients.
    """

    mesh: Mesh | str | None = None
    local_batches: bool = False
    param_sharding: str = "replicated"


# deprecated fit keyword -> (record argument, field)
_DEPRECATED = {
    "workdir": ("checkpointing", "workdir"),
    "checkpoint_every": ("checkpointing", "every"),
    "keep_checkpoints": ("checkpointing", "keep"),
    "metadata": ("checkpointing", "metadata"),
    "eval_fn": ("evaluation", "fn"),
    "eval_every": ("evaluation", "every"),
    "mesh": ("parallel", "mesh"),
    "local_batches": ("parallel", "local_batches"),
}
_RECORDS = {"checkpointing": Checkpointing, "evaluation": Evaluation, "parallel": DataParallel}


def fit_records(
    deprecated: dict[str, Any],
    checkpointing: Checkpointing,
    evaluation: Evaluation | None,
    parallel: DataParallel,
) -> tuple[Checkpointing, Evaluation | None, DataParallel]:
    """``fit``'s records, with its deprecated separate keywords (``deprecated``) moved in.

    Warns once (``DeprecationWarning``) naming each keyword and its place in a record;
    raises ``TypeError`` for an unknown keyword or for a keyword given beside the record it
    moved to.
    """
    unknown = sorted(set(deprecated) - set(_DEPRECATED))
    if unknown:
        raise TypeError(f"fit() got an unexpected keyword argument {unknown[0]!r}")
    if not deprecated:
        return checkpointing, evaluation, parallel
    moves = ", ".join(
        f"{k}= -> {_DEPRECATED[k][0]}={_RECORDS[_DEPRECATED[k][0]].__name__}"
        f"({_DEPRECATED[k][1]}=...)"
        for k in sorted(deprecated)
    )
    warnings.warn(
        f"fit: separate keywords are deprecated and will be removed in flowzoo 0.2; {moves}",
        DeprecationWarning,
        stacklevel=3,
    )
    given = {"checkpointing": checkpointing, "evaluation": evaluation, "parallel": parallel}
    defaults = {"checkpointing": Checkpointing(), "evaluation": None, "parallel": DataParallel()}
    fields: dict[str, dict[str, Any]] = {}
    for key, value in deprecated.items():
        record, field = _DEPRECATED[key]
        fields.setdefault(record, {})[field] = value
    for record, values in fields.items():
        if given[record] != defaults[record]:
            raise TypeError(f"fit: pass {record}= or the deprecated {sorted(values)}, not both")
        if record == "evaluation":
            given[record] = Evaluation(values.get("fn"), values.get("every"))
        else:
            given[record] = given[record]._replace(**values)
    return given["checkpointing"], given["evaluation"], given["parallel"]
