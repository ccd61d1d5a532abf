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
  seed 0 from N(0, 9 I));
* the sampling literature's ``mog40``, ``many_well32`` and ``blr_diabetes``: see
  ``_literature.py``;
* the posteriors without exact samples, ``logreg_breast_cancer`` (d=31) and
  ``lgcp_synthetic`` (d=1024), with reference moments and samples from long runs: see
  ``_posteriors.py``.

``log_z`` (the exact log normalising constant of ``log_prob``) is 0 for every mixture, the
funnel and the banana (each ``log_prob`` is a normalised density); the funnel also carries
its exact moments (``v``: mean 0, std 3; ``x_i``: mean 0, std ``e^2.25``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..data import two_moons
from . import _mixture as gm
from ._base import Reference as Reference
from ._base import Target as Target
from ._base import from_mixture as _from_mixture
from ._base import grad_of as _grad
from ._literature import blr_diabetes, many_well, mog40
from ._posteriors import lgcp_synthetic, logreg_breast_cancer


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

    # SMC's reference: the largest marginal std e^2.25 = 9.49 -> 10
    # normalised (log N(v; 0, 9) + sum_i log N(x_i; 0, e^v)): log Z = 0; E[x_i^2] = E[e^v] = e^4.5
    std = np.array([3.0] + [math.exp(2.25)] * (dim - 1))
    ref = Reference(np.zeros(dim), std)
    return Target(
        "funnel", dim, sample, log_prob, _grad(log_prob), None, 0.01, 1.0, None, 0.0, ref, 10.0
    )


def banana(b: float = 0.1) -> Target:
    def log_prob(x):
        x1, x2 = x[:, 0], x[:, 1]
        y2 = x2 - b * (x1**2 - 100.0)
        return -0.5 * (x1**2 / 100.0 + y2**2) - math.log(2 * math.pi * 10.0)

    def sample(key, n):
        z = jax.random.normal(key, (n, 2))
        x1 = 10.0 * z[:, 0]
        return jnp.stack([x1, z[:, 1] + b * (x1**2 - 100.0)], 1)

    # normalised: a unit-Jacobian shear of N(0, diag(100, 1)), so log Z = 0; marginal stds
    # 10 and sqrt(1 + b^2 Var(x1^2)) = sqrt(1 + 0.01 * 2e4) = 14.2 (E x2 = 0): exact
    # reference moments, and SMC's reference 15
    ref = Reference(np.zeros(2), np.array([10.0, math.sqrt(1.0 + 2e4 * b**2)]))
    return Target(
        "banana", 2, sample, log_prob, _grad(log_prob), None, 0.1, 3.0, None, 0.0, ref, 15.0
    )


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
    "mog40": mog40,
    "many_well32": many_well,
    "blr_diabetes": blr_diabetes,
    "logreg_breast_cancer": logreg_breast_cancer,
    "lgcp_synthetic": lgcp_synthetic,
}
"""Target factories by name."""
