"""Affine Gaussian probability paths ``x_t = sigma_t * x0 + alpha_t * x1``.

Time convention (flow matching): t=0 is noise ``x0 ~ N(0, I)``, t=1 is data ``x1``.
A path is defined by its schedule ``t -> (alpha_t, sigma_t)`` and the schedule's time
derivative; the conditional target velocity ``u_t(x0, x1) = d/dt x_t`` is then in closed
form: ``sigma_t' * x0 + alpha_t' * x1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, ArrayLike, Batch, Float

Times = Float[ArrayLike, "*batch"]
ScheduleFn = Callable[[Array], tuple[Array, Array]]


class Path(NamedTuple):
    """An affine Gaussian probability path (t=0 noise ``x0 ~ N(0, I)``, t=1 data ``x1``).

    * ``schedule(t) -> (alpha_t, sigma_t)``, elementwise in ``t`` (any shape).
    * ``schedule_dt(t) -> (d alpha_t / dt, d sigma_t / dt)``, in closed form.
    * ``sample_xt(x0, x1, t) -> x_t = sigma_t x0 + alpha_t x1``; ``x0, x1``: ``(batch, *event)``,
      ``t``: ``(batch,)`` or a scalar.
    * ``velocity(x0, x1, t) -> u_t = sigma_t' x0 + alpha_t' x1``, the conditional target field.
    * ``noise``: ``None`` (a deterministic interpolation of the pair), or ``t -> (gamma_t,
      gamma_t')`` for a *stochastic interpolant* ``x_t = sigma_t x0 + alpha_t x1 + gamma_t z``
      with fresh ``z ~ N(0, I)`` (Albergo et al. 2023; the Brownian bridge of Schroedinger-
      bridge CFM, Tong et al. 2024). ``sample_xt``/``velocity`` are then the ``z``-free parts;
      :func:`flowzoo.flow_matching.cfm_loss` adds ``gamma_t z`` and ``gamma_t' z``.
    """

    schedule: ScheduleFn
    sample_xt: Callable[[Batch, Batch, Times], Batch]
    velocity: Callable[[Batch, Batch, Times], Batch]
    schedule_dt: ScheduleFn
    noise: ScheduleFn | None = None


def expand_time(t: ArrayLike, x: Array) -> Array:
    """Broadcast times ``t`` (scalar or ``(batch,)``) against ``x`` of shape ``(batch, *event)``."""
    t = jnp.asarray(t, x.dtype)
    if t.ndim == 0:
        return t
    if t.shape != x.shape[:1]:
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {t.shape}")
    return t.reshape(t.shape + (1,) * (x.ndim - 1))


def affine_path(schedule: ScheduleFn, schedule_dt: ScheduleFn) -> Path:
    """The :class:`Path` of ``x_t = sigma_t x0 + alpha_t x1`` for a schedule and its derivative.

    Args:
      schedule: ``t -> (alpha_t, sigma_t)``, elementwise (t=0 noise, t=1 data).
      schedule_dt: ``t -> (alpha_t', sigma_t')``, its time derivative.
    """

    def sample_xt(x0: Batch, x1: Batch, t: Times) -> Batch:
        alpha, sigma = schedule(expand_time(t, x1))
        return sigma * x0 + alpha * x1

    def velocity(x0: Batch, x1: Batch, t: Times) -> Batch:
        d_alpha, d_sigma = schedule_dt(expand_time(t, x1))
        return d_sigma * x0 + d_alpha * x1

    return Path(schedule, sample_xt, velocity, schedule_dt)


def cond_ot_path(sigma_min: float = 0.0) -> Path:
    """Conditional optimal-transport path (Lipman et al. 2023, eq. 20).

    ``alpha_t = t``, ``sigma_t = 1 - (1 - sigma_min) t``: straight lines from noise (t=0) to
    ``N(x1, sigma_min^2 I)`` at t=1. ``sigma_min = 0`` is rectified flow / I-CFM.
    """
    if not 0.0 <= float(sigma_min) < 1.0:
        raise ValueError(f"cond_ot_path: sigma_min must be in [0, 1), got {sigma_min}")
    c = 1.0 - float(sigma_min)
    return affine_path(
        lambda t: (t, 1.0 - c * t),
        lambda t: (jnp.ones_like(t), jnp.full_like(t, -c)),
    )


def vp_path(beta_min: float = 0.1, beta_max: float = 20.0) -> Path:
    """Variance-preserving diffusion path in flow-matching time (Lipman et al. 2023, eq. 19).

    With ``T(s) = beta_min s + (beta_max - beta_min) s^2 / 2`` (the integrated linear
    ``beta`` of Song et al. 2021) and diffusion time ``s = 1 - t``:
    ``alpha_t = exp(-T(1 - t) / 2)``, ``sigma_t = sqrt(1 - alpha_t^2)``.
    t=0 is (very nearly) noise (``alpha_0 = exp(-T(1)/2)``, 0.0066 for the defaults); t=1 is
    data. ``sigma_t'`` diverges as t -> 1 (``sigma_1 = 0``), so train and sample on
    ``t <= 1 - 1e-3`` or so (``cfm_loss(time_range=...)``).
    """
    b0, b1 = float(beta_min), float(beta_max)

    def big_t(s):
        return b0 * s + 0.5 * (b1 - b0) * s**2

    def schedule(t):
        alpha = jnp.exp(-0.5 * big_t(1.0 - t))
        return alpha, jnp.sqrt(-jnp.expm1(-big_t(1.0 - t)))

    def schedule_dt(t):
        alpha, sigma = schedule(t)
        beta = b0 + (b1 - b0) * (1.0 - t)
        d_alpha = 0.5 * beta * alpha
        return d_alpha, -alpha * d_alpha / sigma

    return affine_path(schedule, schedule_dt)


def ve_path(sigma_min: float = 0.01, sigma_max: float = 50.0) -> Path:
    """Variance-exploding diffusion path in flow-matching time (Lipman et al. 2023, eq. 18).

    ``alpha_t = 1``, ``sigma_t = sigma_min (sigma_max / sigma_min)^(1 - t)``. Note that t=0
    is noise of scale ``sigma_max`` around the data, not ``N(0, I)``: the model's base is
    ``N(0, sigma_max^2 I)`` (:func:`base_scale`; :func:`flowzoo.flow_matching.distribution`
    uses it for both sampling and the likelihood).
    """
    if not 0.0 < float(sigma_min) < float(sigma_max):
        raise ValueError(
            f"ve_path: need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, "
            f"sigma_max={sigma_max} (sigma_min = 0 would make log(sigma_max / sigma_min) infinite)"
        )
    lo, ratio = float(sigma_min), math.log(float(sigma_max) / float(sigma_min))
    return affine_path(
        lambda t: (jnp.ones_like(t), lo * jnp.exp(ratio * (1.0 - t))),
        lambda t: (jnp.zeros_like(t), -ratio * lo * jnp.exp(ratio * (1.0 - t))),
    )


def cosine_path() -> Path:
    """Cosine (trigonometric) path: ``alpha_t = sin(pi t / 2)``, ``sigma_t = cos(pi t / 2)``.

    Variance preserving for unit-variance data; t=0 noise, t=1 data (Nichol & Dhariwal 2021,
    Albergo & Vanden-Eijnden 2023).
    """
    h = 0.5 * math.pi
    return affine_path(
        lambda t: (jnp.sin(h * t), jnp.cos(h * t)),
        lambda t: (h * jnp.cos(h * t), -h * jnp.sin(h * t)),
    )


def polynomial_path(exponent: float = 2.0) -> Path:
    """Polynomial convex schedule: ``alpha_t = t^n``, ``sigma_t = 1 - t^n`` (n > 0).

    ``n = 1`` is :func:`cond_ot_path` with ``sigma_min = 0``. For ``n < 1`` the velocity
    diverges at t=0.
    """
    n = float(exponent)
    if n <= 0:
        raise ValueError(f"exponent must be > 0, got {exponent}")

    def schedule_dt(t):
        d = n * t ** (n - 1.0)
        return d, -d

    return affine_path(lambda t: (t**n, 1.0 - t**n), schedule_dt)


def stochastic_interpolant_path(noise_scale: float = 1.0, base: str = "linear") -> Path:
    """A stochastic interpolant ``x_t = sigma_t x0 + alpha_t x1 + gamma_t z`` (Albergo,
    Boffi & Vanden-Eijnden 2023, "Stochastic Interpolants: A Unifying Framework", sec. 3).

    ``gamma_t = noise_scale * sqrt(t (1 - t))`` (their ``sqrt(a t(1-t))`` with ``a =
    noise_scale^2``), zero at both ends, so the t=0 and t=1 marginals are those of ``x0`` and
    ``x1``. ``base``: ``"linear"`` (``alpha_t = t``, ``sigma_t = 1 - t``; then this is the
    Brownian bridge of :func:`brownian_bridge_path`) or ``"trig"`` (``sin``/``cos`` of ``pi
    t / 2``). ``x0`` may be Gaussian noise (one-sided) or samples of any other law
    (two-sided; ``cfm_loss(source=...)``). ``gamma_t'`` is infinite at t = 0 and 1: train
    on ``time_range`` inside ``(0, 1)``, e.g. ``(1e-3, 1 - 1e-3)``.
    """
    a = float(noise_scale)
    if not a > 0:
        raise ValueError(f"noise_scale must be > 0, got {noise_scale}")
    if base == "linear":
        mean = cond_ot_path()
    elif base == "trig":
        mean = cosine_path()
    else:
        raise ValueError(f"base must be 'linear' or 'trig', got {base!r}")

    def noise(t):
        # floored at 1e-12 so gamma * gamma' stays finite (a^2 (1 - 2t) / 2) at the ends,
        # where gamma' alone is infinite
        root = jnp.sqrt(jnp.maximum(t * (1.0 - t), 1e-12))
        return a * root, a * (1.0 - 2.0 * t) / (2.0 * root)

    return mean._replace(noise=noise)


def brownian_bridge_path(noise_scale: float = 1.0) -> Path:
    """The Brownian bridge of Schroedinger-bridge CFM (Tong et al. 2024, "Improving and
    generalizing flow-based generative models with minibatch optimal transport", eq. 19):
    ``x_t = (1 - t) x0 + t x1 + noise_scale * sqrt(t (1 - t)) z``, the law at time t of a
    Brownian motion of diffusion ``noise_scale`` pinned at ``x0`` and ``x1``. Pair it with
    :func:`flowzoo.flow_matching.sinkhorn_coupling` at ``epsilon = 2 noise_scale^2``
    (absolute) to learn the Schroedinger bridge's probability flow.
    """
    return stochastic_interpolant_path(noise_scale, "linear")


def gaussian_schedule(path: Path, t: Array) -> tuple[Array, Array, Array, Array]:
    """``(alpha_t, s_t, alpha_t', s_t')`` of the path's Gaussian marginal given ``x1`` when
    ``x0 ~ N(0, I)``: ``x_t | x1 ~ N(alpha_t x1, s_t^2 I)`` with ``s_t^2 = sigma_t^2 +
    gamma_t^2`` (``s = sigma`` without interpolant noise). The marginal velocity of a
    stochastic interpolant with Gaussian ``x0`` is that of the affine path with ``s_t``,
    because ``E[sigma' x0 + gamma' z | sigma x0 + gamma z] = s' (sigma x0 + gamma z) / s``.
    """
    alpha, sigma = path.schedule(t)
    d_alpha, d_sigma = path.schedule_dt(t)
    if path.noise is None:
        return alpha, sigma, d_alpha, d_sigma
    gamma, d_gamma = path.noise(t)
    s = jnp.sqrt(sigma**2 + gamma**2)
    return alpha, s, d_alpha, (sigma * d_sigma + gamma * d_gamma) / s


def base_scale(path: Path, t0: float = 0.0) -> float:
    """The noise scale ``sigma_{t0}`` of the path's t=0 end (1 for OT/VP/cosine; sigma_max for VE).

    A flow-matching model's base density is ``N(0, sigma_{t0}^2 I)``: the t=0 marginal of
    the path when ``alpha_{t0}`` is (close to) 0, the law its samples start from.
    """
    with jax.ensure_compile_time_eval():  # a constant of the path, also under jit
        _, sigma = path.schedule(jnp.asarray(t0, jnp.float32))
        return float(sigma)


PATHS: dict[str, Callable[..., Path]] = {
    "cond_ot": cond_ot_path,
    "vp": vp_path,
    "ve": ve_path,
    "cosine": cosine_path,
    "polynomial": polynomial_path,
    "brownian_bridge": brownian_bridge_path,
    "stochastic_interpolant": stochastic_interpolant_path,
}
"""Path factories by name (used by configs: ``model.path``)."""


def get_path(name: str, **kwargs) -> Path:
    """The path ``PATHS[name](**kwargs)``; raises ``ValueError`` naming the choices."""
    if name not in PATHS:
        raise ValueError(f"unknown path {name!r}; choose one of {sorted(PATHS)}")
    return PATHS[name](**kwargs)
