"""Conditional score models: context through the DSM loss, classifier-free guidance.

Exact scores, no training. Data: class 0 ~ N(-M, S^2 I), class 1 ~ N(+M, S^2 I) in 2-D,
equal weights; under the VP SDE (t=0 data, t=T noise) the class-c marginal is
``N(a m_c, (a^2 S^2 + std^2) I)`` and the unconditional score is the mixture's. The score
"network" reads a one-hot context; an all-zero context means unconditional.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import paths
from flowzoo.samplers import reverse_sde_sample
from flowzoo.score import guided_score, sde_dsm_loss

SDE = paths.vp_sde()
M, S = jnp.array([2.0, 0.0]), 0.5


def _moments(t, x):
    a, std = SDE.marginal(jnp.ones_like(x), t)
    return a, a**2 * S**2 + paths.bcast(std**2, x)


def score_apply(params, t, x, context):
    a, var = _moments(t, x)
    means = jnp.stack([-a * M[None], a * M[None]])  # (2, n, 2)
    scores = -(x[None] - means) / var[None]
    log_w = -0.5 * jnp.sum((x[None] - means) ** 2 / var[None], -1)  # (2, n)
    posterior = jax.nn.softmax(log_w, axis=0)
    weights = jnp.where(jnp.sum(context, 1, keepdims=True) > 0, context, posterior.T)  # (n, 2)
    return jnp.einsum("nc,cnd->nd", weights, scores)


def _data(key, n):
    kc, kx = jax.random.split(key)
    label = jax.random.bernoulli(kc, 0.5, (n,)).astype(jnp.int32)
    x = jnp.where(label[:, None] == 1, M[None], -M[None]) + S * jax.random.normal(kx, (n, 2))
    return x, jax.nn.one_hot(label, 2)


def test_dsm_loss_routes_the_context(key):
    x, c = _data(key, 4096)
    loss = jax.jit(sde_dsm_loss(score_apply, SDE, t_min=1e-3))
    right, _ = loss((), jax.random.key(1), (x, c))
    swapped, _ = loss((), jax.random.key(1), (x, c[:, ::-1]))
    unconditional, _ = loss((), jax.random.key(1), (x, jnp.zeros_like(c)))
    assert float(right) < float(unconditional) < float(swapped), (right, unconditional, swapped)
    dropped, _ = jax.jit(sde_dsm_loss(score_apply, SDE, t_min=1e-3, context_dropout=0.999))(
        (), jax.random.key(1), (x, c)
    )
    np.testing.assert_allclose(float(dropped), float(unconditional), rtol=0.05)


@pytest.mark.slow
def test_guidance_scales_pick_conditional_and_unconditional(key):
    n = 2048
    ctx = jnp.tile(jnp.array([[0.0, 1.0]]), (n, 1))  # class 1
    for scale, want_mean in [(1.0, 2.0), (0.0, 0.0)]:
        score = lambda t, y, w=scale: guided_score(score_apply, (), t, y, ctx, w)
        xs = jax.jit(lambda k, s=score: reverse_sde_sample(SDE, s, k, (n, 2), 300))(key)
        np.testing.assert_allclose(float(jnp.mean(xs[:, 0])), want_mean, atol=0.15)
    # the last run (scale 0) samples both modes: spread sqrt(M^2 + S^2) along the first axis
    np.testing.assert_allclose(float(jnp.std(xs[:, 0])), float(jnp.sqrt(4.0 + S**2)), rtol=0.1)
