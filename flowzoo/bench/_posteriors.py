"""Posterior targets without exact samples: reference moments and samples from long runs.

* ``logreg_breast_cancer`` (d=31): Bayesian logistic regression on scikit-learn's
  ``load_breast_cancer`` (569 tumours, 30 features; Wolberg, Street & Mangasarian 1995),
  features standardised (mean 0, population std 1), a column of ones for the intercept
  (coordinate 0), labels ``y`` in ``{0, 1}`` (1: benign), prior ``w ~ N(0, I)``, likelihood
  ``y_i ~ Bernoulli(sigmoid(x_i . w))``. ``log_prob(w) = sum_i log sigmoid(s_i x_i . w) +
  log N(w; 0, I)`` with ``s_i = 2 y_i - 1`` (the log-sigmoid form, ``-softplus(-s l)``, is
  stable in float32 at any logit). Needs scikit-learn (the ``data`` extra).
* ``lgcp_synthetic`` (d=1024): the log-Gaussian Cox process of Moller, Syversveen &
  Waagepetersen (1998), as PIS (Zhang & Chen 2022) and DDS (Vargas et al. 2023) run it on
  the Finnish pines at 40x40, ported from google-deepmind/annealed_flow_transport
  (``annealed_flow_transport/densities.py``, ``LogGaussianCoxPines``;
  ``cox_process_utils.py``), on a 32x32 grid of the unit square. Cell ``(i, j)`` is
  coordinate ``32 i + j`` (row-major). The log-intensity ``x`` is a Gaussian field with
  constant mean ``mu = log 126 - sigma^2 / 2`` and covariance ``K(u, v) = sigma^2 exp(-|u -
  v| / (M beta))`` between cells at grid indices ``u, v`` (``M = 32``; in unit-square
  coordinates ``sigma^2 exp(-r / beta)`` with ``r`` the distance between cell centres),
  ``sigma^2 = 1.91``, ``beta = 1/33`` (Moller et al.'s estimates for the pines); counts
  ``y_i | x ~ Poisson(a exp(x_i))`` with cell area ``a = 1 / M^2``, log-likelihood
  ``sum_i (x_i y_i - a exp(x_i))`` (without ``-log y_i!``, as in the source). The pines
  data do not ship offline, so the counts are synthetic: one field drawn from this prior
  and Poisson counts on it (:func:`synthetic_counts`, numpy seed 0; shipped as
  ``data/lgcp_synthetic_counts.json``: 101 points in 95 of the 1024 cells, where the pines
  have 126 points on 1600 cells).

  The target's coordinates are the *whitened* field ``z`` (annealed_flow_transport's
  ``use_whitened=True``, not the default of its experiments nor PIS's): ``x = mu + L z``
  with ``L`` the Cholesky factor of ``K``, prior ``z ~ N(0, I)``, ``log_prob(z) = log N(z;
  0, I) + sum_i (x_i y_i - a exp(x_i))``. Why: the prior is the standard normal, so chains
  start from it, SMC anneals from it exactly (``reference_scale`` 1), and the posterior is
  close to isotropic (variances 0.31 to 0.97 under the Laplace approximation), where the
  field ``x`` has prior variance 1.91 and correlations of 0.36 between neighbours. The
  change of variables has a constant Jacobian, so ``log Z`` (the marginal likelihood) is
  the same in both parameterisations.

Neither target has exact samples (``Target.sample`` is ``None``) nor a known ``log Z``.
``Target.reference`` holds the posterior mean and marginal standard deviations (float64)
and a thinned reference sample (logistic: 10,000 x 31 float32; LGCP: 2,000 x 1024
float16), all from long NUTS runs computed once by ``benchmarks/sampler_references.py``
(seeds, R-hat, ESS and the adapted-MALA cross-check in
``benchmarks/results/sampler_references.json``) and shipped as
``data/<name>_reference.npz``.

Tuning rules (those of ``_literature.py``): ``step_size`` is a quarter of the posterior
covariance's smallest eigenvalue, from the reference run, rounded down to one significant
digit; chains start from the prior (``init_scale`` 1), and SMC's reference is the prior
(``reference_scale`` 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import HIGHEST
from .._types import Array, Batch
from ._base import Reference, Target, grad_of

DATA = Path(__file__).parent / "data"

LGCP_VARIANCE = 1.91
"""``sigma^2``, the field's prior variance (Moller et al. 1998's estimate for the pines)."""

LGCP_BETA = 1.0 / 33.0
"""``beta``, the field's correlation length in unit-square coordinates."""

LGCP_SEED = 0
"""numpy seed of the synthetic field and its counts (:func:`synthetic_counts`)."""


def load_reference(name: str) -> Reference:
    """The shipped reference of target ``name``: ``data/<name>_reference.npz`` (read with
    ``allow_pickle=False``) holding ``mean`` and ``std`` ``(dim,)`` float64 and ``samples``
    ``(m, dim)``, returned as float64 moments and the samples as float32."""
    path = DATA / f"{name}_reference.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"the reference data of {name!r} ({path}) are missing; they ship with flowzoo "
            "and are made by benchmarks/sampler_references.py"
        )
    with np.load(path, allow_pickle=False) as f:
        mean, std, samples = f["mean"], f["std"], f["samples"]
    return Reference(mean.astype(np.float64), std.astype(np.float64), samples.astype(np.float32))


def _std_normal_log_prob(w: Batch) -> Array:
    """``log N(w; 0, I)`` ``(n,)``: the prior of both targets (normalised)."""
    return -0.5 * (jnp.sum(w**2, 1) + w.shape[1] * math.log(2 * math.pi))


def _posterior(
    name: str, dim: int, log_prob: Callable[[Batch], Array], step: float, reference: bool
) -> Target:
    """A posterior :class:`Target` under the prior ``N(0, I)``: no exact sampler,
    ``log_z`` unknown, chains from the prior and SMC's reference the prior (scale 1), the
    shipped reference with ``reference``."""
    ref = load_reference(name) if reference else None
    return Target(
        name, dim, None, log_prob, grad_of(log_prob), None, step, 1.0, None, None, ref, 1.0
    )


def breast_cancer_design() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's breast-cancer data: ``X`` ``(569, 31)`` float64 (a column of ones,
    then the 30 features at mean 0 and population std 1) and ``y`` ``(569,)`` in ``{0, 1}``
    (1: benign)."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as err:
        raise ImportError(
            f"the logreg_breast_cancer target needs scikit-learn, which is not installed "
            f'({err}); install the optional data dependencies with: pip install "flowzoo[data]"'
        ) from None
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return np.c_[np.ones(len(y)), x], y.astype(np.float64)


def logreg_breast_cancer(reference: bool = True) -> Target:
    """Bayesian logistic regression on the breast-cancer data (see the module docstring):
    no exact sampler, ``log_z`` unknown, the shipped reference moments and samples
    (``reference=False``: none, for the script that computes them)."""
    x, y = breast_cancer_design()
    d = x.shape[1]
    xj = jnp.asarray(x, jnp.float32)
    sign = jnp.asarray(2.0 * y - 1.0, jnp.float32)

    def log_prob(w: Batch) -> Array:
        logits = jnp.matmul(w, xj.T, precision=HIGHEST)  # (n, 569)
        log_lik = -jnp.sum(jax.nn.softplus(-sign[None] * logits), 1)
        return log_lik + _std_normal_log_prob(w)

    # a quarter of the reference covariance's smallest eigenvalue, see the reference JSON
    return _posterior("logreg_breast_cancer", d, log_prob, 0.003, reference)


def lgcp_covariance(grid: int = 32) -> np.ndarray:
    """The field's prior covariance ``(grid^2, grid^2)`` float64 on the row-major cells:
    ``sigma^2 exp(-|u - v| / (grid beta))`` with ``u, v`` the cells' grid indices."""
    ij = np.stack(np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij"), -1)
    ij = ij.reshape(-1, 2).astype(np.float64)
    dist = np.sqrt(np.sum((ij[:, None] - ij[None]) ** 2, -1))
    return LGCP_VARIANCE * np.exp(-dist / (grid * LGCP_BETA))


def lgcp_mean() -> float:
    """``mu = log 126 - sigma^2 / 2``: the field's constant prior mean (126: the pines'
    count, so ``E[exp(x)]`` is 126 points per unit area)."""
    return math.log(126.0) - 0.5 * LGCP_VARIANCE


def synthetic_counts(seed: int = LGCP_SEED, grid: int = 32) -> np.ndarray:
    """The synthetic point pattern's counts ``(grid^2,)`` int64: with
    ``rng = np.random.default_rng(seed)``, the field ``x = mu + L rng.standard_normal(d)``
    (``L`` the Cholesky factor of :func:`lgcp_covariance`, float64), then
    ``rng.poisson(exp(x) / grid^2)``. The shipped ``data/lgcp_synthetic_counts.json`` is
    this function's output at the defaults."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(lgcp_covariance(grid))
    field = lgcp_mean() + chol @ rng.standard_normal(grid * grid)
    return rng.poisson(np.exp(field) / grid**2).astype(np.int64)


def lgcp_synthetic(reference: bool = True) -> Target:
    """The log-Gaussian Cox process on the synthetic 32x32 counts, in whitened coordinates
    ``z`` ``(n, 1024)`` (see the module docstring): no exact sampler, ``log_z`` unknown, the
    shipped reference moments and samples (``reference=False``: none)."""
    counts = json.loads((DATA / "lgcp_synthetic_counts.json").read_text())["counts"]
    grid = 32
    d = grid * grid
    chol_t = jnp.asarray(np.linalg.cholesky(lgcp_covariance(grid)).T, jnp.float32)
    y = jnp.asarray(counts, jnp.float32)
    mu, area = lgcp_mean(), 1.0 / d

    def log_prob(z: Batch) -> Array:
        x = mu + jnp.matmul(z, chol_t, precision=HIGHEST)  # rows: L z
        return jnp.sum(x * y[None] - area * jnp.exp(x), 1) + _std_normal_log_prob(z)

    # a quarter of the reference covariance's smallest eigenvalue, see the reference JSON
    return _posterior("lgcp_synthetic", d, log_prob, 0.07, reference)
