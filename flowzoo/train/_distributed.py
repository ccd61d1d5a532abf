"""Multi-process (multi-host) set-up on JAX's own distributed runtime.

A multi-host run is N copies of the same program, one per host (or per process on one
host), that agree on a coordinator address. Each calls :func:`initialize_distributed`
*before any JAX computation*; afterwards ``jax.devices()`` lists the devices of every
process, a :func:`flowzoo.train.data_mesh` spans all of them, and
:func:`flowzoo.train.fit` splits each global batch across processes. Only the primary
process (index 0) writes logs, plots and run files; every process takes part in
checkpoint saves (orbax writes each process's shards and the primary the metadata).

On CPU the cross-process collectives use gloo
(``jax.config.update("jax_cpu_collectives_implementation", "gloo")``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class DistributedError(RuntimeError):
    """Joining a multi-process run failed (JAX already in use, processes did not meet)."""


class Distributed(NamedTuple):
    """Where a process sits in a multi-process run.

    Attributes:
      coordinator: ``"HOST:PORT"`` of process 0's coordination service (every process
        passes the same address).
      num_processes: total number of processes, ``>= 1``.
      process_id: this process's index in ``[0, num_processes)``.
    """

    coordinator: str
    num_processes: int
    process_id: int


def check_distributed(spec: Distributed) -> Distributed:
    """Validate a :class:`Distributed` spec (``HOST:PORT``, ``0 <= process_id < num_processes``)."""
    host, sep, port = str(spec.coordinator).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"coordinator must be HOST:PORT (e.g. localhost:12355), got {spec.coordinator!r}"
        )
    n, i = int(spec.num_processes), int(spec.process_id)
    if n < 1:
        raise ValueError(f"num_processes must be >= 1, got {n}")
    if not 0 <= i < n:
        raise ValueError(f"process_id must be in [0, {n}), got {i}")
    return Distributed(str(spec.coordinator), n, i)


def initialize_distributed(
    coordinator: str | Distributed,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
) -> Distributed:
    """Join a multi-process run: ``jax.distributed.initialize`` with gloo CPU collectives.

    Call it once per process, before anything else touches JAX (creating an array counts).
    Calling it again with the same arguments is a no-op.

    Args:
      coordinator: ``"HOST:PORT"`` (or a :class:`Distributed`, the other two omitted).
      num_processes: total number of processes.
      process_id: this process's index (0 is the coordinator and the primary).
      timeout_s: seconds to wait for all processes to join.

    Returns:
      The validated :class:`Distributed`.

    Raises:
      ValueError: a malformed address or ids.
      DistributedError: JAX was already used in this process, or the processes did not meet.
    """
    spec = (
        coordinator
        if isinstance(coordinator, Distributed)
        else Distributed(coordinator, num_processes, process_id)
    )
    if spec.num_processes is None or spec.process_id is None:
        raise ValueError("initialize_distributed needs num_processes and process_id")
    spec = check_distributed(spec)
    if jax.distributed.is_initialized():
        if (jax.process_count(), jax.process_index()) != (spec.num_processes, spec.process_id):
            raise DistributedError(
                f"jax.distributed is already initialised as process {jax.process_index()} "
                f"of {jax.process_count()}, not {spec.process_id} of {spec.num_processes}"
            )
        return spec
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
            initialization_timeout=int(timeout_s),
        )
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedError(
            f"joining the distributed run at {spec.coordinator} as process "
            f"{spec.process_id} of {spec.num_processes} failed: {first}"
        ) from err
    return spec


def is_primary() -> bool:
    """True on the process that writes logs and files (process index 0)."""
    return jax.process_index() == 0
