"""The probability-flow ODE model is a Distribution, and a CNF in flow-matching time agrees.

Exact Gaussian scores (data ``N(MU, diag(STD^2))``): SDE time t=0 data, t=T noise. The
PF-ODE Distribution (:func:`flowzoo.score.pf_ode_distribution`) and a plain CNF
(:func:`flowzoo.cnf.cnf`, base at s=0, data at s=1 - t_min/T) of the same field converted
with :func:`flowzoo.paths.sde_to_flow_time` must give the same log-density, and both the
closed form once the prior is replaced by the exact marginal at T.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from flowzoo import paths
from flowzoo.cnf import cnf
from flowzoo.distributions import Distribution
from flowzoo.integrate import SolverConfig
from flowzoo.score import pf_ode_distribution, sde_prior

MU, STD = jnp.array([1.0, -0.5]), jnp.array([0.5, 1.5])
T_MIN = 1e-3
TIGHT = SolverConfig("tsit5", None, 1e-6, 1e-6)


def _score(sde):
    def score(t, x):
        m, s = sde.marginal(jnp.ones_like(x), t)
        var = m**2 * STD[None] ** 2 + paths.bcast(s**2, x)
        return -(x - m * MU[None]) / var

    return score


def _marginal(sde, t):
    """The exact marginal ``p_t`` of the Gaussian data as a parameter-free Distribution."""
    m, s = sde.marginal(jnp.ones((2,)), jnp.float32(t))  # mean coefficient, std (scalars)
    mean, sd = m * MU, jnp.sqrt(m**2 * STD**2 + s**2)

    def log_prob(params, z, context=None):
        return jnp.sum(norm.logpdf(z, mean[None], sd[None]), 1)

    def sample(params, key, n, context=None, temperature=1.0):
        return mean[None] + temperature * sd[None] * jax.random.normal(key, (n, 2))

    return Distribution(lambda *a: (), log_prob, sample, None, (2,))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_cnf_in_flow_time_and_pf_ode_agree(key, name):
    sde = {"vp": paths.vp_sde(), "subvp": paths.subvp_sde(), "ve": paths.ve_sde(0.01, 20.0)}[name]
    score = _score(sde)
    x = MU[None] + STD[None] * jax.random.normal(key, (16, 2))
    pf = pf_ode_distribution(
        sde, lambda p, t, y: score(t, y), (2,), t_min=T_MIN, log_prob_solver=TIGHT
    )
    flow_field = paths.sde_to_flow_time(paths.probability_flow(sde, score), sde.T)
    as_cnf = cnf(
        lambda p, s, y, context=None: flow_field(s, y),
        2,
        base=sde_prior(sde, (2,)),
        t_base=0.0,
        t_data=1.0 - T_MIN / sde.T,
        log_prob_solver=TIGHT,
    )
    lp_pf = jax.jit(pf.log_prob)((), x)
    np.testing.assert_allclose(jax.jit(as_cnf.log_prob)((), x), lp_pf, atol=2e-4)
    # with the exact marginal p_T as base (instead of the prior, which differs from p_T by
    # the data mean that T has not forgotten) the model is exactly p_{t_min}
    base = _marginal(sde, sde.T)
    field = paths.probability_flow(sde, score)
    exact = cnf(
        lambda p, t, y, context=None: field(t, y),
        2,
        base=base,
        t_base=sde.T,
        t_data=T_MIN,
        log_prob_solver=TIGHT,
    )
    want = _marginal(sde, T_MIN).log_prob((), x)
    np.testing.assert_allclose(jax.jit(exact.log_prob)((), x), want, atol=1e-3)
    # and the prior's mismatch is what separates the model from p_{t_min}: a few 1e-2 nats
    assert float(jnp.max(jnp.abs(lp_pf - want))) < 0.2


@pytest.mark.slow
def test_log_time_change_gives_the_same_density(key):
    sde = paths.vp_sde()
    score = _score(sde)
    x = MU[None] + STD[None] * jax.random.normal(key, (8, 2))
    kw = dict(t_min=T_MIN, log_prob_solver=TIGHT)
    linear = pf_ode_distribution(sde, lambda p, t, y: score(t, y), (2,), **kw)
    logt = pf_ode_distribution(sde, lambda p, t, y: score(t, y), (2,), time_change="log", **kw)
    np.testing.assert_allclose(logt.log_prob((), x), linear.log_prob((), x), atol=2e-4)


def test_pf_ode_distribution_checks_its_arguments():
    sde = paths.vp_sde()
    with pytest.raises(ValueError, match="t_min"):
        pf_ode_distribution(sde, lambda p, t, y: y, (2,), t_min=0.0)
    with pytest.raises(ValueError, match="time_change"):
        pf_ode_distribution(sde, lambda p, t, y: y, (2,), time_change="cubic")
    with pytest.raises(TypeError, match="Network"):
        pf_ode_distribution(sde, lambda p, t, y: y, (2,)).init(jax.random.key(0), jnp.ones((2, 2)))
