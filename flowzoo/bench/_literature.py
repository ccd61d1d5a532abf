"""Targets of the sampling literature, each with exact samples and its exact ``log Z``.

* ``mog40`` (d=2): the 40-component mixture of Midgley et al. 2023, "Flow Annealed
  Importance Sampling Bootstrap" (FAB, ICLR), as built by lollcat/fab-torch
  (``fab/target_distributions/gmm.py``, ``GMM(dim=2, n_mixes=40, loc_scaling=40,
  log_var_scaling=1.0)`` after ``torch.manual_seed(0)`` in ``experiments/gmm/run.py``):
  equal weights, means uniform on ``[-40, 40]^2``, isotropic std ``softplus(1) = 1.3133``.
  The means are torch's draw ``torch.manual_seed(0); (torch.rand((40, 2)) - 0.5) * 2 * 40``
  (CPU generator, float32), computed once with torch 2.14.1 and shipped as
  ``data/mog40_means.json`` (which records the command). The JAX port lollcat/fab-jax
  (``fabjax/targets/gmm_v0.py``) draws different means (``jax.random.uniform`` with
  ``PRNGKey(0)``) and uses std 1; this is the paper's torch target. Normalised: ``log Z = 0``.
* ``many_well32`` (d=32): FAB's Many Well (lollcat/fab-jax ``fabjax/targets/many_well.py``,
  ``ManyWellEnergy(dim=32)``): 16 independent copies of the double well
  ``log p(x1, x2) = 0.5 x1 + 6 x1^2 - x1^4 - 0.5 x2^2`` (unnormalised; FAB's energy
  ``a x1 + b x1^2 + c x1^4 + 0.5 x2^2`` with ``a = -0.5, b = -6, c = 1``), copy ``i`` on
  coordinates ``(2i, 2i+1)``. ``log Z = 16 (ln 11784.50927 + 0.5 ln 2 pi) = 164.6957``
  (FAB's constant for the 1-D integral). Exact samples: ``x2 ~ N(0, 1)``; ``x1`` by
  rejection from FAB's proposal ``0.2 N(-1.7, 0.5^2) + 0.8 N(1.7, 0.5^2)`` with FAB's bound
  ``3 Z1`` (the ratio ``p~/q`` peaks at ``2.59 Z1``), in rounds inside a ``lax.while_loop``
  until every draw is accepted, so the samples are exact and the function jittable.
* ``blr_diabetes`` (d=11): Bayesian linear regression on scikit-learn's ``load_diabetes``
  (442 patients, 10 features; Efron et al. 2004): features and target standardised (mean 0,
  population std 1), a column of ones for the intercept, prior ``w ~ N(0, I)``, known noise
  ``y | w ~ N(X w, 0.7^2 I)`` (0.7: the least-squares residual std, 0.703 with ``n - 11``
  degrees of freedom, rounded). Conjugate: the posterior is ``N(mu, Sigma)`` with
  ``Sigma^-1 = X^T X / 0.49 + I`` and ``mu = Sigma X^T y / 0.49`` (exact samples and
  moments), and ``log_prob(w) = log N(y; X w, 0.49 I) + log N(w; 0, I)`` integrates to the
  marginal likelihood ``log Z = log N(y; 0, 0.49 I + X X^T)``. Needs scikit-learn (the
  ``data`` extra).

Tuning rules: ``step_size`` (the Langevin step ``h`` of ``x + h score + sqrt(2h) z``) is a
quarter of the target's smallest variance (a component's for the mixture, the Gaussian
approximation's at the deeper well for Many Well, the posterior's smallest eigenvalue for
the regression), rounded down to one significant digit for the fixed targets; chains start
from ``N(0, init_scale^2 I)`` with ``init_scale`` the largest marginal std rounded up to an
integer (the prior's std, 1, for the regression).
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import HIGHEST
from .._types import Array, Batch, Key
from . import _mixture as gm
from ._base import Reference, Target, from_mixture, grad_of

DATA = Path(__file__).parent / "data"

MOG40_STD = math.log1p(math.e)
"""``softplus(1)``: the std of every ``mog40`` component."""

DOUBLE_WELL_Z = 11784.50927
"""FAB's ``integral exp(0.5 x + 6 x^2 - x^4) dx`` (the double well's first coordinate)."""

_PROPOSAL_W, _PROPOSAL_M, _PROPOSAL_S = 0.8, 1.7, 0.5  # weight of +1.7; means +-1.7; std
_LOG_BOUND = math.log(3.0 * DOUBLE_WELL_Z)


def mog40() -> Target:
    """FAB's 40-Gaussian mixture (see the module docstring); exact moments as reference."""
    means = json.loads((DATA / "mog40_means.json").read_text())["means"]
    means = jnp.asarray(means, jnp.float32)
    mix = gm.GaussianMixture(
        jnp.full(40, 1 / 40), means, jnp.full((40, 2), MOG40_STD**2, jnp.float32)
    )
    # step 0.25 * 1.7247 = 0.43 -> 0.4; largest marginal std 24.97 -> 25
    return from_mixture("mog40", mix, 0.4, 25.0)


def double_well_log_prob(x1: Array, x2: Array) -> Array:
    """The unnormalised 2-D double well ``0.5 x1 + 6 x1^2 - x1^4 - 0.5 x2^2`` (elementwise)."""
    return 0.5 * x1 + 6.0 * x1**2 - x1**4 - 0.5 * x2**2


def _proposal_log_prob(y: Array) -> Array:
    """``log q(y)`` of FAB's proposal ``0.2 N(-1.7, 0.5^2) + 0.8 N(1.7, 0.5^2)``."""
    log_norm = math.log(_PROPOSAL_S * math.sqrt(2 * math.pi))
    lo = -0.5 * ((y + _PROPOSAL_M) / _PROPOSAL_S) ** 2 + math.log(1.0 - _PROPOSAL_W)
    hi = -0.5 * ((y - _PROPOSAL_M) / _PROPOSAL_S) ** 2 + math.log(_PROPOSAL_W)
    return jnp.logaddexp(lo, hi) - log_norm


def double_well_x1(key: Key, shape: tuple[int, ...]) -> Array:
    """Exact draws ``shape`` of the double well's first coordinate, density
    ``exp(0.5 x + 6 x^2 - x^4) / 11784.50927``, by rejection from FAB's mixture proposal with
    bound ``3 Z1`` (acceptance 1/3). Each round proposes a pool of ``4 m`` candidates (``m``
    the number of draws) and fills the open slots, in order, with the accepted ones; rounds
    repeat until every slot is filled (one round but for a tiny chance: the accepted count,
    Binomial(4m, 1/3), falls short of ``m = 1000`` with probability below 1e-28). Accepted
    candidates are independent exact draws, so the result is exact."""
    m = math.prod(shape)
    pool = 4 * m

    def body(carry):
        key, x, filled = carry
        key, k_comp, k_z, k_u = jax.random.split(key, 4)
        sign = jnp.where(jax.random.bernoulli(k_comp, _PROPOSAL_W, (pool,)), 1.0, -1.0)
        y = sign * _PROPOSAL_M + _PROPOSAL_S * jax.random.normal(k_z, (pool,))
        log_ratio = double_well_log_prob(y, 0.0) - _proposal_log_prob(y) - _LOG_BOUND
        accept = jnp.log(jax.random.uniform(k_u, (pool,))) < log_ratio
        slot = jnp.where(
            accept, filled + jnp.cumsum(accept, dtype=jnp.int32) - 1, m
        )  # m: out of range
        return key, x.at[slot].set(y, mode="drop"), filled + jnp.sum(accept, dtype=jnp.int32)

    init = (key, jnp.zeros(m), jnp.zeros((), jnp.int32))
    return jax.lax.while_loop(lambda c: c[2] < m, body, init)[1].reshape(shape)


def _double_well_moments() -> tuple[float, float]:
    """Mean and std of the double well's first coordinate, by the trapezoid rule in float64
    on 40,001 points of ``[-5, 5]`` (the density is below ``e^-500`` of its peak at the
    ends, so the rule is a plain sum)."""
    x = np.linspace(-5.0, 5.0, 40_001)
    p = np.exp(double_well_log_prob(x, 0.0) - 10.0)
    p = p / p.sum()
    mean = float(np.sum(x * p))
    return mean, float(np.sqrt(np.sum((x - mean) ** 2 * p)))


@partial(jax.jit, static_argnums=(1, 2))
def _many_well_sample(key: Key, n: int, wells: int) -> Batch:
    """``n`` exact Many Well samples ``(n, 2 wells)``, compiled once per ``(n, wells)``."""
    k1, k2 = jax.random.split(key)
    x1 = double_well_x1(k1, (n, wells))
    return jnp.stack([x1, jax.random.normal(k2, (n, wells))], -1).reshape(n, 2 * wells)


def many_well(dim: int = 32) -> Target:
    """FAB's Many Well in ``dim`` (even) dimensions: ``dim / 2`` double wells (see the module
    docstring); exact samples, exact ``log Z``, exact moments (by quadrature) as reference."""
    if dim % 2:
        raise ValueError(f"many_well needs an even dim, got {dim}")
    wells = dim // 2

    def log_prob(x: Batch) -> Array:
        return jnp.sum(double_well_log_prob(x[:, 0::2], x[:, 1::2]), 1)

    log_z = wells * (math.log(DOUBLE_WELL_Z) + 0.5 * math.log(2 * math.pi))
    mean1, std1 = _double_well_moments()
    ref = Reference(np.tile([mean1, 0.0], wells), np.tile([std1, 1.0], wells))
    # curvature 12 x^2 - 12 = 24.5 at the deeper well (x = 1.74): step 0.25 / 24.5 -> 0.01;
    # largest marginal std 1.24 -> 2
    name = "many_well32" if dim == 32 else f"many_well{dim}"
    sample = lambda key, n: _many_well_sample(key, n, wells)
    return Target(
        name, dim, sample, log_prob, grad_of(log_prob), None, 0.01, 2.0, None, log_z, ref, 2.0
    )


def diabetes_design() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes data standardised: ``X`` ``(442, 11)`` (a column of ones, then
    the 10 features at mean 0 and population std 1) and ``y`` ``(442,)`` (same), float64."""
    try:
        from sklearn.datasets import load_diabetes
    except ImportError as err:
        raise ImportError(
            f"the blr_diabetes target needs scikit-learn, which is not installed ({err}); "
            'install the optional data dependencies with: pip install "flowzoo[data]"'
        ) from None
    x, y = load_diabetes(return_X_y=True, scaled=False)
    x = (x - x.mean(0)) / x.std(0)
    return np.c_[np.ones(len(y)), x], (y - y.mean()) / y.std()


def blr_diabetes(prior_var: float = 1.0, noise_sd: float = 0.7) -> Target:
    """Conjugate Bayesian linear regression on the diabetes data (see the module docstring):
    exact posterior samples, ``log_z`` the log marginal likelihood, the posterior moments as
    reference. ``prior_var``: the prior ``N(0, prior_var I)``; ``noise_sd``: the known noise."""
    x, y = diabetes_design()
    n, d = x.shape
    noise_var = noise_sd**2
    precision = x.T @ x / noise_var + np.eye(d) / prior_var
    cov = np.linalg.inv(precision)
    mean = cov @ (x.T @ y) / noise_var
    # log p(y) = log p(y | w) + log p(w) - log p(w | y), at w = mean
    resid = y - x @ mean
    log_lik = -0.5 * (resid @ resid / noise_var + n * math.log(2 * math.pi * noise_var))
    log_prior = -0.5 * (mean @ mean / prior_var + d * math.log(2 * math.pi * prior_var))
    log_post = -0.5 * d * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(precision)[1]
    log_z = float(log_lik + log_prior - log_post)
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    const = -0.5 * (n * math.log(2 * math.pi * noise_var) + d * math.log(2 * math.pi * prior_var))

    def log_prob(w: Batch) -> Array:
        r = yj[None] - jnp.matmul(w, xj.T, precision=HIGHEST)
        return const - 0.5 * (jnp.sum(r**2, 1) / noise_var + jnp.sum(w**2, 1) / prior_var)

    chol = jnp.asarray(np.linalg.cholesky(cov), jnp.float32)
    mean_j = jnp.asarray(mean, jnp.float32)

    def sample(key: Key, n_samples: int) -> Batch:
        z = jax.random.normal(key, (n_samples, d))
        return mean_j[None] + jnp.matmul(z, chol.T, precision=HIGHEST)

    step = 0.25 * float(np.linalg.eigvalsh(cov)[0])  # 6.9e-5 at the defaults
    ref = Reference(mean, np.sqrt(np.diag(cov)))
    init = math.sqrt(prior_var)
    return Target(
        "blr_diabetes",
        d,
        sample,
        log_prob,
        grad_of(log_prob),
        None,
        step,
        init,
        None,
        log_z,
        ref,
        init,
    )
