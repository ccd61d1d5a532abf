"""Targets with ground truth: an exact sampler, a log-density, a score, and where the target
is a Gaussian mixture, the exact time-dependent fields of diffusion and flow samplers.

* ``eight_gaussians``: FFJORD's ring of 8 (2-D); ``grid25``: a 5x5 grid of Gaussians (2-D);
* ``two_moons``: data-defined, the empirical measure of 2,000 points (diffusion and flow
  samplers get the exact fields of that measure; no log-density, so no MCMC);
* ``funnel``: Neal's funnel (2003), d=10, ``v ~ N(0, 9)``, ``x_i | v ~ N(0, e^v)``;
* ``banana``: Haario et al.'s (1999) twisted Gaussian, d=2,
  ``x1 ~ N(0, 100)``, ``x2 - 0.1 (x1^2 - 100) ~ N(0, 1)``;
* ``ill_gaussian``: d=100, variances log-spaced over three decades (0.03 to 31.6);
* ``gmm32``: 8 equal-weight isotropic Gaussians in d=32 (std 0.5, means drawn once with
  seed 0 from N(0, 9 I)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key
from ..data import two_moons
from ..paths import SDE, Path
from ..samplers import Problem
from . import _mixture as gm


class Target(NamedTuple):
    """A distribution with ground truth.

    * ``name``, ``dim``.
    * ``sample(key, n) -> (n, dim)``: exact samples.
    * ``log_prob(x) -> (n,)`` (``None`` for data-defined targets) and ``score(x)``.
    * ``mixture``: the :class:`GaussianMixture` when the target is one (gives exact
      diffusion / flow fields), else ``None``.
    * ``step_size``: the Langevin step size MCMC rows use on this target.
    * ``init_scale``: chains start from ``N(0, init_scale^2 I)``.
    * ``fields``: for learned targets (:func:`flowzoo.bench.learned_target`), the
      :class:`~flowzoo.samplers.Problem` fields of the trained model (its own SDE and score,
      or path and velocity); ``problem`` then ignores its arguments.
    """

    name: str
    dim: int
    sample: Callable[[Key, int], Batch]
    log_prob: Callable[[Batch], Array] | None
    score: Callable[[Batch], Batch] | None
    mixture: gm.GaussianMixture | None
    step_size: float
    init_scale: float
    fields: dict | None = None

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
            **fields,
        )


def _grad(log_prob):
    return lambda x: jax.grad(lambda y: jnp.sum(log_prob(y)))(x)


def _from_mixture(name: str, mix: gm.GaussianMixture, step: float, init: float) -> Target:
    lp = lambda x: gm.log_prob(mix, x)
    return Target(
        name, mix.means.shape[1], lambda k, n: gm.sample(mix, k, n), lp, _grad(lp), mix, step, init
    )


def eight_gaussians() -> Target:
    angles = jnp.arange(8) * (math.pi / 4)
    means = (4.0 / 1.414) * jnp.stack([jnp.cos(angles), jnp.sin(angles)], 1)
    var = jnp.full((8, 2), (0.5 / 1.414) ** 2)
    return _from_mixture(
        "eight_gaussians", gm.GaussianMixture(jnp.full(8, 1 / 8), means, var), 0.05, 3.0
    )


def grid25() -> Target:
    g = jnp.linspace(-4.0, 4.0, 5)
    means = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(25, 2)
    mix = gm.GaussianMixture(jnp.full(25, 1 / 25), means, jnp.full((25, 2), 0.3**2))
    return _from_mixture("grid25", mix, 0.01, 3.0)


def moons(n_points: int = 2000) -> Target:
    data = two_moons(jax.random.key(20261129), n_points)
    mix = gm.GaussianMixture(jnp.full(n_points, 1 / n_points), data, jnp.zeros_like(data))

    def sample(key, n):
        return data[jax.random.randint(key, (n,), 0, n_points)]

    return Target("two_moons", 2, sample, None, None, mix, 0.0, 1.0)


def funnel(dim: int = 10) -> Target:
    def log_prob(x):
        v, rest = x[:, 0], x[:, 1:]
        lp_v = -0.5 * v**2 / 9.0 - 0.5 * math.log(2 * math.pi * 9.0)
        lp_x = -0.5 * jnp.sum(rest**2, 1) * jnp.exp(-v) - 0.5 * (dim - 1) * (
            v + math.log(2 * math.pi)
        )
        return lp_v + lp_x

    def sample(key, n):
        kv, kx = jax.random.split(key)
        v = 3.0 * jax.random.normal(kv, (n, 1))
        return jnp.concatenate([v, jnp.exp(0.5 * v) * jax.random.normal(kx, (n, dim - 1))], 1)

    return Target("funnel", dim, sample, log_prob, _grad(log_prob), None, 0.01, 1.0)


def banana(b: float = 0.1) -> Target:
    def log_prob(x):
        x1, x2 = x[:, 0], x[:, 1]
        y2 = x2 - b * (x1**2 - 100.0)
        return -0.5 * (x1**2 / 100.0 + y2**2) - math.log(2 * math.pi * 10.0)

    def sample(key, n):
        z = jax.random.normal(key, (n, 2))
        x1 = 10.0 * z[:, 0]
        return jnp.stack([x1, z[:, 1] + b * (x1**2 - 100.0)], 1)

    return Target("banana", 2, sample, log_prob, _grad(log_prob), None, 0.1, 3.0)


def ill_gaussian(dim: int = 100) -> Target:
    var = jnp.asarray(np.logspace(-1.5, 1.5, dim), jnp.float32)[None]
    mix = gm.GaussianMixture(jnp.ones(1), jnp.zeros((1, dim)), var)
    return _from_mixture("ill_gaussian", mix, 0.015, 1.0)


def gmm32(dim: int = 32, k: int = 8) -> Target:
    means = 3.0 * jax.random.normal(jax.random.key(0), (k, dim))
    mix = gm.GaussianMixture(jnp.full(k, 1 / k), means, jnp.full((k, dim), 0.25))
    return _from_mixture("gmm32", mix, 0.05, 3.0)


TARGETS: dict[str, Callable[[], Target]] = {
    "eight_gaussians": eight_gaussians,
    "grid25": grid25,
    "two_moons": moons,
    "funnel": funnel,
    "banana": banana,
    "ill_gaussian": ill_gaussian,
    "gmm32": gmm32,
}
"""Target factories by name."""
