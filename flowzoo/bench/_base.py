"""The benchmark's :class:`Target` record, its :class:`Reference` moments, and the helpers
that build a target from a log-density or from a Gaussian mixture."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key
from ..paths import SDE, Path
from ..samplers import Problem
from . import _mixture as gm


class Reference(NamedTuple):
    """Reference moments of a target: ``mean`` ``(dim,)`` and marginal standard deviations
    ``std`` ``(dim,)`` (numpy float64), and optionally reference ``samples`` ``(m, dim)``.

    Exact where the target's moments are known in closed form or by quadrature; for targets
    without exact samples, estimates from long runs (the target's docstring says which).
    """

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray | None = None


class Target(NamedTuple):
    """A distribution with ground truth.

    * ``name``, ``dim``.
    * ``sample(key, n) -> (n, dim)``: exact samples; ``None`` for targets that carry
      ``reference.samples`` instead (posteriors without an exact sampler).
    * ``log_prob(x) -> (n,)`` (``None`` for data-defined targets) and ``score(x)``.
    * ``mixture``: the :class:`GaussianMixture` when the target is one (gives exact
      diffusion / flow fields), else ``None``.
    * ``step_size``: the Langevin step size MCMC rows use on this target.
    * ``init_scale``: chains start from ``N(0, init_scale^2 I)``.
    * ``fields``: for learned targets (:func:`flowzoo.bench.learned_target`), the
      :class:`~flowzoo.samplers.Problem` fields of the trained model (its own SDE and score,
      or path and velocity); ``problem`` then ignores its arguments.
    * ``log_z``: the exact log normalising constant of ``log_prob`` (nats),
      ``log Z = log  integral exp(log_prob(x)) dx``: 0 for a normalised density; ``None``
      where it is not known.
    * ``reference``: the target's :class:`Reference` moments (and samples), ``None`` where
      none are shipped.
    * ``reference_scale``: ``s`` of the normalised Gaussian ``N(0, s^2 I)`` that SMC anneals
      from (:attr:`flowzoo.samplers.Problem.reference_scale`): the prior's std for a
      posterior, otherwise the target's largest marginal std rounded up to an integer, so
      the reference covers the target; ``None`` for targets without a log-density.
    """

    name: str
    dim: int
    sample: Callable[[Key, int], Batch] | None
    log_prob: Callable[[Batch], Array] | None
    score: Callable[[Batch], Batch] | None
    mixture: gm.GaussianMixture | None
    step_size: float
    init_scale: float
    fields: dict | None = None
    log_z: float | None = None
    reference: Reference | None = None
    reference_scale: float | None = None

    def problem(self, sde: SDE, path: Path) -> Problem:
        """The :class:`flowzoo.samplers.Problem` of this target under ``sde`` and ``path``."""
        fields = {}
        if self.fields is not None:
            return Problem(event_shape=(self.dim,), **self.fields)
        if self.mixture is not None:
            fields = dict(
                sde=sde,
                score_t=gm.sde_score(self.mixture, sde),
                path=path,
                velocity=gm.path_velocity(self.mixture, path),
            )
        return Problem(
            event_shape=(self.dim,),
            log_prob=self.log_prob,
            score=self.score,
            init=lambda key, n: self.init_scale * jax.random.normal(key, (n, self.dim)),
            reference_scale=self.reference_scale,
            **fields,
        )


def grad_of(log_prob: Callable[[Batch], Array]) -> Callable[[Batch], Batch]:
    """The score ``x -> grad log_prob(x)`` ``(n, d)`` of a batched log-density, by autodiff."""
    return lambda x: jax.grad(lambda y: jnp.sum(log_prob(y)))(x)


def from_mixture(name: str, mix: gm.GaussianMixture, step: float, init: float) -> Target:
    """The :class:`Target` of a Gaussian mixture: exact samples, log-density, autodiff score,
    the exact diffused fields, ``log_z = 0`` (a mixture is normalised), its exact moments as
    ``reference``, and SMC's reference scale (the largest marginal std rounded up)."""
    lp = lambda x: gm.log_prob(mix, x)
    moments = mixture_moments(mix)
    return Target(
        name,
        mix.means.shape[1],
        lambda k, n: gm.sample(mix, k, n),
        lp,
        grad_of(lp),
        mix,
        step,
        init,
        log_z=0.0,
        reference=moments,
        reference_scale=float(math.ceil(np.max(moments.std))),
    )


def mixture_moments(mix: gm.GaussianMixture) -> Reference:
    """The exact mean and marginal standard deviations of a mixture (float64): the mean of
    the component means, and ``sqrt(E[v_k] + E[m_k^2] - mean^2)`` per coordinate."""
    w = np.asarray(mix.weights, np.float64)[:, None]
    m, v = np.asarray(mix.means, np.float64), np.asarray(mix.variances, np.float64)
    mean = np.sum(w * m, 0)
    return Reference(mean, np.sqrt(np.sum(w * (v + m**2), 0) - mean**2))
