"""Spectrally normalised MLPs: Lipschitz-constrained residual branches for i-ResNets.

Every dense layer ``W`` is used as ``W * min(1, c / sigma(W))`` where ``sigma`` is its
largest singular value, so ``||W_used||_2 <= c``; with 1-Lipschitz activations the whole MLP
is ``c**L``-Lipschitz (``L`` layers), hence ``< c < 1``.

``sigma`` is computed inside the function (pure, no mutable state):

* ``"svd"`` (default): exact, ``jnp.linalg.norm(W, 2)``; cheap for the small layers used on
  low-dimensional data, and the guarantee ``Lip < c`` is exact.
* ``"power"``: ``power_iterations`` steps of power iteration from the vector ``u`` stored in
  the params (under ``stop_gradient``; Miyato et al. 2018). Power iteration approaches
  ``sigma`` from below, so with few iterations the bound can be exceeded slightly; the
  stored ``u`` is not updated (the function stays pure), so use enough iterations (default
  20) or refresh ``u`` yourself with :func:`refresh_power_vectors` between training steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from .._types import Array, Key, Params

SPECTRAL = ("svd", "power")


def lipswish(x: Array) -> Array:
    """``x * sigmoid(x) / 1.1``: a smooth 1-Lipschitz activation (Chen et al. 2019)."""
    return x * jax.nn.sigmoid(x) / 1.1


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "elu": jax.nn.elu,
    "tanh": jnp.tanh,
    "lipswish": lipswish,
}


def init_mlp(key: Key, sizes: Sequence[int], dtype=jnp.float32) -> Params:
    """Params ``[{"w": (in, out), "b": (out,), "u": (out,)}, ...]`` for layer ``sizes``.

    LeCun-normal weights, zero biases, a random unit power-iteration vector ``u``.
    """
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True):
        kw, ku = jax.random.split(k)
        u = jax.random.normal(ku, (n,), dtype)
        params.append(
            {
                "w": jax.random.normal(kw, (m, n), dtype) / jnp.sqrt(m).astype(dtype),
                "b": jnp.zeros((n,), dtype),
                "u": u / jnp.linalg.norm(u),
            }
        )
    return params


def spectral_norm(w: Array, u: Array, method: str = "svd", power_iterations: int = 20) -> Array:
    """Largest singular value of ``w`` (``(in, out)``), exact or by power iteration from ``u``."""
    if method == "svd":
        return jnp.linalg.norm(w, 2)
    if method != "power":
        raise ValueError(f"unknown spectral norm method {method!r}; choose one of {SPECTRAL}")
    w_sg = jax.lax.stop_gradient(w)

    def body(_, u):
        v = w_sg @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = w_sg.T @ v
        return u / (jnp.linalg.norm(u) + 1e-12)

    u = jax.lax.fori_loop(0, power_iterations, body, jax.lax.stop_gradient(u))
    v = w_sg @ u
    v = jax.lax.stop_gradient(v / (jnp.linalg.norm(v) + 1e-12))
    return v @ (w @ u)


def normalized_weights(
    params: Params, coeff: float, method: str = "svd", power_iterations: int = 20
) -> list[Array]:
    """The weights as used: ``W * min(1, coeff / sigma(W))`` for every layer."""
    out = []
    for layer in params:
        sigma = spectral_norm(layer["w"], layer["u"], method, power_iterations)
        out.append(layer["w"] * jnp.minimum(1.0, coeff / jnp.maximum(sigma, 1e-12)))
    return out


def apply_mlp(
    params: Params,
    x: Array,
    coeff: float,
    activation: Callable[[Array], Array],
    method: str = "svd",
    power_iterations: int = 20,
) -> Array:
    """The spectrally normalised MLP on ``(batch, in)`` (no activation after the last layer)."""
    ws = normalized_weights(params, coeff, method, power_iterations)
    h = x
    for i, (w, layer) in enumerate(zip(ws, params, strict=True)):
        h = h @ w + layer["b"][None]
        if i < len(params) - 1:
            h = activation(h)
    return h


def refresh_power_vectors(params: Params, iterations: int = 1) -> Params:
    """Params with every stored ``u`` advanced by ``iterations`` power-iteration steps.

    A pure update for ``"power"`` mode (e.g. once per training step, outside the loss).
    """

    def step(layer):
        u = layer["u"]
        for _ in range(iterations):
            v = layer["w"] @ u
            u = layer["w"].T @ (v / (jnp.linalg.norm(v) + 1e-12))
            u = u / (jnp.linalg.norm(u) + 1e-12)
        return {**layer, "u": u}

    return [step(layer) for layer in params]
