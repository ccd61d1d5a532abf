"""2-D toy targets for density estimation, flow matching and samplers, sampled in pure JAX.

Every sampler has the signature ``sampler(key, n, **hyper) -> (n, 2)`` float32 array: ``key``
is a JAX PRNG key, ``n`` a static Python ``int`` (it sets the output shape), and the
hyper-parameters are floats (they may be traced). The samplers use no NumPy RNG and no
scikit-learn, so they compose with ``jax.jit`` (with ``n`` static), ``jax.vmap`` over keys
and ``lax.scan``. Mixture components are drawn independently per point (a categorical draw),
not in fixed blocks, so any ``n`` works and the output needs no shuffle.

The definitions follow scikit-learn's ``make_moons`` / ``make_circles`` / ``make_swiss_roll``
and the toy sets of FFJORD (Grathwohl et al. 2019,
https://github.com/rtqichen/ffjord/blob/master/lib/toy_data.py), also used by torchcfm
(Tong et al. 2023); each docstring names its source and any deviation.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Int

from .._types import Array, Float, Key, Scalar

Points2D = Float[Array, "n 2"]
FloatLike = float | Scalar  # hyper-parameters are traced inside the compiled sampler
IntLike = int | Int[Array, ""]


def _count(n, what: str) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(
            f"{what}: n must be a static Python int (it sets the output shape), got "
            f"{type(n).__name__}; mark it static under jit (static_argnums)"
        ) from None
    if n < 0:
        raise ValueError(f"{what}: n must be non-negative, got {n}")
    return n


def _sampler(fn: Callable[..., Points2D]) -> Callable[..., Points2D]:
    """Check that ``n`` is a static int, then run ``fn`` compiled (one XLA program per ``n``).

    Hyper-parameters are bound to positions (defaults filled in) and stay traced, so passing
    or changing them does not recompile; the result is still jit-able and vmappable from
    outside (the inner jit is inlined).
    """
    compiled = jax.jit(fn, static_argnums=1)
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def sampler(key: Key, n: int, *args, **kwargs) -> Points2D:
        bound = signature.bind(key, _count(n, fn.__name__), *args, **kwargs)
        bound.apply_defaults()
        return compiled(*bound.args)

    return sampler


def _stack(x: Array, y: Array) -> Points2D:
    return jnp.stack([x, y], axis=-1).astype(jnp.float32)


def _normal(key: Key, n: int) -> Array:
    return jax.random.normal(key, (n, 2), jnp.float32)


def _uniform(key: Key, n: int, lo: float = 0.0, hi: float = 1.0) -> Array:
    return jax.random.uniform(key, (n,), jnp.float32, lo, hi)


@_sampler
def two_moons(key: Key, n: int, noise: FloatLike = 0.05) -> Points2D:
    """Two interleaving half circles, as scikit-learn's ``make_moons``.

    The upper moon is the half circle of radius 1 centred at ``(0, 0)`` (angle in
    ``[0, pi]``); the lower moon is the half circle of radius 1 centred at ``(1, 0.5)``
    opening upwards (points ``(1 - cos a, 0.5 - sin a)``). Each point picks a moon with
    probability 1/2 and a uniform angle (sklearn uses an evenly spaced angle grid), then gets
    isotropic Gaussian noise of standard deviation ``noise``. The mean is ``(0.5, 0.25)``.
    Raw sklearn units (FFJORD rescales by ``2x + (-1, -0.2)``; torchcfm by ``3x - 1``).

    Returns:
      ``(n, 2)`` float32.
    """
    k_moon, k_angle, k_noise = jax.random.split(key, 3)
    lower = jax.random.bernoulli(k_moon, 0.5, (n,))
    a = _uniform(k_angle, n, 0.0, math.pi)
    x = jnp.where(lower, 1.0 - jnp.cos(a), jnp.cos(a))
    y = jnp.where(lower, 0.5 - jnp.sin(a), jnp.sin(a))
    return _stack(x, y) + noise * _normal(k_noise, n)


@_sampler
def eight_gaussians(
    key: Key, n: int, radius: FloatLike = 4.0 / 1.414, std: FloatLike = 0.5 / 1.414
) -> Points2D:
    """Equal-weight mixture of 8 isotropic Gaussians centred on a circle (FFJORD's ``8gaussians``).

    Centres at ``radius * (cos(k pi/4), sin(k pi/4))``, ``k = 0..7``; each component has
    standard deviation ``std`` per coordinate. The defaults are FFJORD's (centres at radius 4
    and std 0.5, all divided by 1.414). torchcfm's ``sample_8gaussians`` is
    ``radius=5.0, std=0.1 ** 0.25`` (its covariance is ``sqrt(0.1) * I``).

    Returns:
      ``(n, 2)`` float32.
    """
    k_mode, k_noise = jax.random.split(key)
    mode = jax.random.randint(k_mode, (n,), 0, 8)
    angle = mode.astype(jnp.float32) * (math.pi / 4.0)
    centres = radius * _stack(jnp.cos(angle), jnp.sin(angle))
    return centres + std * _normal(k_noise, n)


@_sampler
def checkerboard(key: Key, n: int) -> Points2D:
    """Uniform density on the 8 "on" squares of a 4x4 checkerboard over ``[-4, 4]^2`` (FFJORD).

    Squares have side 2; the square containing ``(x, y)`` is "on" when
    ``floor(x / 2) + floor(y / 2)`` is even (so ``[0, 2) x [0, 2)`` is on). The density is
    ``1/32`` on the on squares and 0 elsewhere.

    Returns:
      ``(n, 2)`` float32.
    """
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = _uniform(k1, n, -2.0, 2.0)
    row = jax.random.randint(k3, (n,), 0, 2).astype(jnp.float32)  # lower or upper pair of rows
    x2 = _uniform(k2, n) - 2.0 * row + jnp.mod(jnp.floor(x1), 2.0)
    return 2.0 * _stack(x1, x2)


@_sampler
def pinwheel(
    key: Key,
    n: int,
    num_arms: IntLike = 5,
    radial_std: FloatLike = 0.3,
    tangential_std: FloatLike = 0.1,
    rate: FloatLike = 0.25,
) -> Points2D:
    """Pinwheel of ``num_arms`` curved arms (FFJORD's ``pinwheel``, after Johnson et al. 2016).

    Each point picks an arm ``c`` uniformly, draws ``f = (1 + radial_std * e1,
    tangential_std * e2)`` with ``e ~ N(0, I)``, and is rotated by the angle
    ``2 pi c / num_arms + rate * exp(f_1)`` (clockwise, as FFJORD's ``einsum``), then scaled
    by 2. FFJORD assigns ``n // 5`` points per arm; here arms are drawn per point.

    Args:
      num_arms: static Python int.

    Returns:
      ``(n, 2)`` float32.
    """
    k_arm, k_feat = jax.random.split(key)
    arm = jax.random.randint(k_arm, (n,), 0, num_arms).astype(jnp.float32)
    e = _normal(k_feat, n)
    f1 = 1.0 + radial_std * e[:, 0]
    f2 = tangential_std * e[:, 1]
    angle = arm * (2.0 * math.pi / num_arms) + rate * jnp.exp(f1)
    c, s = jnp.cos(angle), jnp.sin(angle)
    return 2.0 * _stack(f1 * c + f2 * s, -f1 * s + f2 * c)


@_sampler
def swiss_roll(key: Key, n: int, noise: FloatLike = 1.0, scale: FloatLike = 0.2) -> Points2D:
    """2-D Swiss roll: scikit-learn's ``make_swiss_roll`` projected on ``(x, z)`` (FFJORD).

    ``t = 1.5 pi (1 + 2u)`` with ``u ~ U[0, 1)``; the point ``(t cos t, t sin t)`` gets
    isotropic Gaussian noise of standard deviation ``noise`` (sklearn units) and is then
    multiplied by ``scale`` (FFJORD: ``noise=1.0``, divide by 5).

    Returns:
      ``(n, 2)`` float32.
    """
    k_t, k_noise = jax.random.split(key)
    t = 1.5 * math.pi * (1.0 + 2.0 * _uniform(k_t, n))
    return scale * (_stack(t * jnp.cos(t), t * jnp.sin(t)) + noise * _normal(k_noise, n))


@_sampler
def circles(key: Key, n: int, noise: FloatLike = 0.08, factor: FloatLike = 0.5) -> Points2D:
    """Two concentric circles, as scikit-learn's ``make_circles``.

    Each point picks the outer circle (radius 1) or the inner one (radius ``factor``) with
    probability 1/2 and a uniform angle, then gets isotropic Gaussian noise of standard
    deviation ``noise``. FFJORD uses ``noise=0.08, factor=0.5`` and multiplies by 3.

    Returns:
      ``(n, 2)`` float32.
    """
    k_c, k_a, k_noise = jax.random.split(key, 3)
    r = jnp.where(jax.random.bernoulli(k_c, 0.5, (n,)), factor, 1.0)
    a = _uniform(k_a, n, 0.0, 2.0 * math.pi)
    return _stack(r * jnp.cos(a), r * jnp.sin(a)) + noise * _normal(k_noise, n)


@_sampler
def rings(
    key: Key, n: int, num_rings: IntLike = 4, radius: FloatLike = 3.0, noise: FloatLike = 0.08
) -> Points2D:
    """Concentric rings of equal mass (FFJORD's ``rings``).

    Ring ``k = 1..num_rings`` has radius ``radius * k / num_rings``; each point picks a ring
    uniformly and a uniform angle, then gets isotropic Gaussian noise of standard deviation
    ``noise``. FFJORD's defaults: 4 rings, outer radius 3, noise 0.08.

    Args:
      num_rings: static Python int.

    Returns:
      ``(n, 2)`` float32.
    """
    k_r, k_a, k_noise = jax.random.split(key, 3)
    ring = jax.random.randint(k_r, (n,), 1, num_rings + 1).astype(jnp.float32)
    r = radius * ring / num_rings
    a = _uniform(k_a, n, 0.0, 2.0 * math.pi)
    return _stack(r * jnp.cos(a), r * jnp.sin(a)) + noise * _normal(k_noise, n)


@_sampler
def two_spirals(key: Key, n: int, noise: FloatLike = 0.1) -> Points2D:
    """Two interleaved spiral arms, point-symmetric about the origin (FFJORD's ``2spirals``).

    ``s = sqrt(u) * 3 pi`` (540 degrees) with ``u ~ U[0, 1)``; a point on the first arm is
    ``(-s cos s + j1, s sin s + j2)`` with jitter ``j ~ U[0, 0.5)^2``; the second arm is its
    negation. Each point picks an arm with probability 1/2; the result is divided by 3 and
    gets isotropic Gaussian noise of standard deviation ``noise``.

    Returns:
      ``(n, 2)`` float32.
    """
    k_arm, k_s, k_j, k_noise = jax.random.split(key, 4)
    s = jnp.sqrt(_uniform(k_s, n)) * (3.0 * math.pi)
    jitter = 0.5 * jax.random.uniform(k_j, (n, 2), jnp.float32)
    arm = _stack(-s * jnp.cos(s), s * jnp.sin(s)) + jitter
    sign = jnp.where(jax.random.bernoulli(k_arm, 0.5, (n,)), -1.0, 1.0)[:, None]
    return sign * arm / 3.0 + noise * _normal(k_noise, n)


TOY_TARGETS: dict[str, Callable[..., Points2D]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
    "swiss_roll": swiss_roll,
    "circles": circles,
    "rings": rings,
    "two_spirals": two_spirals,
}
"""Name -> sampler ``(key, n, **hyper) -> (n, 2)`` for every 2-D toy target."""

_ALIASES = {
    "moons": "two_moons",
    "8gaussians": "eight_gaussians",
    "swissroll": "swiss_roll",
    "2spirals": "two_spirals",
}


def toy(name: str, key: Key, n: int, **kwargs) -> Points2D:
    """Sample ``n`` points from the toy target ``name`` (a key of :data:`TOY_TARGETS`).

    FFJORD's names (``"moons"``, ``"8gaussians"``, ``"swissroll"``, ``"2spirals"``) are
    accepted as aliases; ``-`` and ``_`` are interchangeable. ``kwargs`` go to the sampler.

    Returns:
      ``(n, 2)`` float32.
    """
    canonical = str(name).lower().replace("-", "_")
    canonical = _ALIASES.get(canonical, canonical)
    if canonical not in TOY_TARGETS:
        raise ValueError(
            f"unknown toy target {name!r}; valid names: {', '.join(sorted(TOY_TARGETS))}"
        )
    return TOY_TARGETS[canonical](key, n, **kwargs)
