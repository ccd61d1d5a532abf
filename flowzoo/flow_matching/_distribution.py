"""A flow-matching model as a :class:`~flowzoo.distributions.Distribution` (a CNF).

Time convention: t=0 noise, t=1 data. The base density is the path's own t=0 marginal,
``N(0, sigma_0^2 I)`` with ``sigma_0 = base_scale(path)`` (1 for the OT, VP and cosine paths;
``sigma_max`` for the VE path), which is also the law that sampling starts from, so the
likelihood and the samples belong to the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cnf import cnf
from ..distributions import Distribution, isotropic_normal
from ..integrate import DivergenceConfig, SolverConfig
from ..paths import Path, base_scale


def distribution(
    velocity: Any,
    path: Path,
    event_shape: int | Sequence[int],
    *,
    t1: float = 1.0,
    sample_solver: SolverConfig = SolverConfig("midpoint", 20),
    log_prob_solver: SolverConfig = SolverConfig("rk4", 16),
    divergence: DivergenceConfig = DivergenceConfig(),
    velocity_init: Any = None,
) -> Distribution:
    """The CNF of a flow-matching velocity field, base = the path's t=0 marginal.

    Args:
      velocity: a :class:`flowzoo.nets.Network` (``init(key, t, x, context)``,
        ``apply(params, t, x, context=None) -> u``) such as ``nets.time_mlp(shape)``, or a
        bare apply function with ``velocity_init``.
      path: the :class:`~flowzoo.paths.Path` the field was trained on; fixes the base
        ``N(0, base_scale(path)^2 I)``.
      event_shape: shape of one example.
      t1: the data end (``< 1`` for paths whose velocity is singular at t=1, e.g. the VP
        path, ``1 - 1e-3``).
      sample_solver: as in :func:`flowzoo.cnf.cnf` (default: 20 midpoint steps).
      log_prob_solver: as in :func:`flowzoo.cnf.cnf` (default: 16 RK4 steps).
      divergence: a :class:`flowzoo.integrate.DivergenceConfig`, as in
        :func:`flowzoo.cnf.cnf` (default: the exact divergence).

    Returns:
      A :class:`~flowzoo.distributions.Distribution` (with ``log_prob_estimate``).
    """
    return cnf(
        velocity,
        event_shape,
        base=isotropic_normal(event_shape, base_scale(path)),
        t_base=0.0,
        t_data=float(t1),
        sample_solver=sample_solver,
        log_prob_solver=log_prob_solver,
        divergence=divergence,
        vector_field_init=velocity_init,
    )
