"""The tuned samplers of the registry: blackjax's HMC and NUTS with window adaptation, MALA
with dual averaging, and SMC with its log Z.

Targets: a correlated 2-D Gaussian ``N(MU, COV)`` (std 0.5 and 1.5, correlation 0.6) for the
chains; for SMC the same Gaussian unnormalised by a known constant and a 2-D two-component
mixture, both written as one mixture of two correlated Gaussians (the Gaussian is the
mixture of two equal components), so one compiled SMC serves both.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import samplers

MU = jnp.array([1.0, -0.5])
STD = np.array([0.5, 1.5])
COV = jnp.asarray(np.array([[1.0, 0.6], [0.6, 1.0]]) * np.outer(STD, STD), jnp.float32)
PREC = jnp.linalg.inv(COV)


def _log_prob(x):
    """Written elementwise (no dot products), so one chain and a ``vmap`` of chains compute
    the same bits (a per-chain reference run reproduces the registry's chains exactly)."""
    d0, d1 = x[:, 0] - MU[0], x[:, 1] - MU[1]
    return -0.5 * (PREC[0, 0] * d0 * d0 + 2.0 * PREC[0, 1] * d0 * d1 + PREC[1, 1] * d1 * d1)


PROBLEM = samplers.Problem(
    event_shape=(2,),
    log_prob=_log_prob,
    init=lambda key, n: MU[None] + 2.0 * jax.random.normal(key, (n, 2)),
    reference_scale=4.0,
)

N = 400  # chains, one sample each
ADAPTED = {  # name -> (num_steps, acceptance bounds)
    # dual averaging holds the mean acceptance of its warm-up iterates at blackjax's target
    # 0.8 (0.78-0.80 measured over the last windows here); the chains then sample at the
    # iterates' average step, which accepts more (acceptance is concave in log step):
    # measured 0.95 (HMC) and 0.91 (NUTS) on this target at these steps, every seed
    "hmc": (200, (0.8, 0.98)),
    "nuts": (200, (0.8, 0.98)),
    # MALA's dual averaging on 0.574: measured 0.58 (its iterates vary less)
    "mala_adapted": (400, (0.54, 0.62)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ADAPTED))
def test_adapted_chains_reach_the_target(key, name):
    """One sample per chain from 400 chains started around ``MU`` with std 2 (half the
    steps warm-up), with a trace of 8 positions over the run: the means within 4 standard errors ``4 STD / sqrt(400)``, the stds
    within 14% and the correlation within 0.1 (about 4 standard errors each); measured on
    five seeds at 1,000 chains, the errors stayed within 3 standard errors."""
    steps, (low, high) = ADAPTED[name]
    run = jax.jit(lambda k: samplers.run(name, k, PROBLEM, N, steps, trace=8))
    x, info = run(key)
    assert info.trace.shape == (8, N, 2)  # 4 from the warm-up, 4 from sampling
    np.testing.assert_array_equal(info.trace[-1], x)
    assert np.all(np.abs(np.mean(x, 0) - MU) < 4 * STD / np.sqrt(N)), np.mean(x, 0)
    np.testing.assert_allclose(jnp.std(x, 0), STD, rtol=0.14)
    np.testing.assert_allclose(np.corrcoef(np.asarray(x).T)[0, 1], 0.6, atol=0.1)
    assert low < float(info.acceptance_rate) < high, float(info.acceptance_rate)
    spec = samplers.SAMPLERS[name]
    if name == "nuts":  # random: at least one gradient a transition, at most 2^10 - 1
        assert steps < int(info.nfe) <= 1 + 1023 * steps
    else:  # deterministic: the spec states it
        assert int(info.nfe) == spec.nfe(steps)
    assert np.isnan(float(info.log_z)) and np.isnan(float(info.ess))


@pytest.mark.slow
def test_nuts_reports_the_gradients_it_spent(key):
    """NUTS through the registry reports the gradient evaluations it spent, warm-up
    included, read from blackjax's records (1 + the sum of ``num_integration_steps``): equal
    to an independent count, a host callback in the log-density that fires at every
    evaluation (blackjax evaluates the log-density and its gradient together). One chain,
    so the count is that chain's (under ``vmap`` a callback fires once per evaluation of
    the whole batch); three seeds."""
    calls = [0]

    def counted(x):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return _log_prob(x)

    steps = 40
    run = jax.jit(lambda k: samplers.run("nuts", k, PROBLEM._replace(log_prob=counted), 1, steps))
    for seed in range(3):
        calls[0] = 0
        _, info = jax.block_until_ready(run(jax.random.fold_in(key, seed)))
        assert int(info.nfe) == calls[0], (seed, int(info.nfe), calls[0])
        assert calls[0] > 1 + steps  # trajectories longer than one step


BUDGETS = (8, 16, 32, 64, 128, 256, 512, 1000, 1024)


@pytest.mark.parametrize("name", ["hmc", "nuts", "mala_adapted", "smc"])
def test_budgets_buy_steps_whose_gradients_fit(name):
    """``nfe(steps_for(B)) <= B``, the initial gradient included, for every budget flowzoo
    bench runs (for NUTS at its nominal 7 gradients a transition), and more budget never
    buys fewer steps."""
    spec = samplers.SAMPLERS[name]
    option_sets = {"hmc": [{"num_integration_steps": 3}], "smc": [{"num_moves": 5}]}
    for options in [{}, *option_sets.get(name, [])]:
        for budget in BUDGETS:
            steps = spec.steps_for(budget, **options)
            assert isinstance(steps, int) and steps >= 1
            assert spec.nfe(steps, **options) <= budget, (budget, options)
            assert spec.steps_for(2 * budget, **options) >= steps
    assert samplers.SAMPLERS["nuts"].nfe(10) == 1 + 7 * 10 == samplers.SAMPLERS["hmc"].nfe(10)


def test_adapted_trace_must_split_both_phases(key):
    """``trace=k`` keeps ``k`` positions over warm-up and sampling (see above); a ``k``
    whose blocks do not split both phases is refused before anything runs."""
    with pytest.raises(ValueError, match="trace=3 must divide"):
        samplers.run("mala_adapted", key, PROBLEM, 16, 40, trace=3)
    with pytest.raises(ValueError, match="trace=5 must divide num_steps=40 and the 20"):
        samplers.run("nuts", key, PROBLEM, 16, 40, trace=5)


# the Gaussian density times exp(C) (log Z = C), and the normalised mixture
# 0.3 N(M0, COV) + 0.7 N(M1, COV) (log Z = 0)
C = 3.0
M0, M1 = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])


def _mixture(weights, means, const):
    log_det = jnp.linalg.slogdet(COV)[1]

    def log_prob(x):
        d = x[:, None, :] - means[None]  # (n, 2 components, 2)
        quad = jnp.einsum("nki,ij,nkj->nk", d, PREC, d)
        log_c = jnp.log(weights)[None] - 0.5 * quad - jnp.log(2 * jnp.pi) - 0.5 * log_det
        return jax.nn.logsumexp(log_c, 1) + const

    return log_prob


@jax.jit
def _smc_seeds(key, weights, means, const):
    problem = samplers.Problem((2,), log_prob=_mixture(weights, means, const), reference_scale=4.0)
    run = lambda k: samplers.run("smc", k, problem, 1000, 64)
    return jax.vmap(run)(jax.random.split(key, 4))


@pytest.mark.slow
def test_smc_log_z_of_a_gaussian(key):
    """SMC's ``log Z`` of ``exp(C) N(MU, COV)``, 4 seeds of 1,000 particles and 64
    temperatures (129 gradients): each within 0.25 of ``C`` and their mean within 0.1 (the
    seeds' spread measured 0.05-0.1 nats). The samples' moments as for the chains."""
    x, info = _smc_seeds(key, jnp.array([0.5, 0.5]), jnp.stack([MU, MU]), C)
    log_z = np.asarray(info.log_z)
    np.testing.assert_allclose(log_z, C, atol=0.25)
    assert abs(log_z.mean() - C) < 0.1, log_z
    np.testing.assert_array_equal(info.nfe, samplers.SAMPLERS["smc"].nfe(64))
    np.testing.assert_allclose(jnp.mean(x, 1), jnp.broadcast_to(MU, (4, 2)), atol=0.1)
    np.testing.assert_allclose(jnp.std(x, 1), np.broadcast_to(STD, (4, 2)), rtol=0.1)
    assert np.all((np.asarray(info.ess) > 1) & (np.asarray(info.ess) <= 1000))
    assert np.all(
        (np.asarray(info.acceptance_rate) > 0.4) & (np.asarray(info.acceptance_rate) < 0.7)
    )


def test_smc_on_a_mixture(key):
    """On the two-mode mixture: each mode's share within 0.06 of 0.3/0.7 (binomial error
    0.015 at n = 1000, inflated by resampling), the mean within 0.2 of ``0.3 M0 + 0.7 M1``,
    ``log Z`` within 0.25 of 0 (normalised) for every seed."""
    weights = jnp.array([0.3, 0.7])
    x, info = _smc_seeds(key, weights, jnp.stack([M0, M1]), 0.0)
    share = np.mean(np.asarray(x[..., 0]) > 0, 1)
    np.testing.assert_allclose(share, 0.7, atol=0.06)
    np.testing.assert_allclose(
        jnp.mean(x, 1), jnp.broadcast_to(0.3 * M0 + 0.7 * M1, (4, 2)), atol=0.2
    )
    np.testing.assert_allclose(info.log_z, 0.0, atol=0.25)


def test_smc_needs_its_reference(key):
    problem = PROBLEM._replace(reference_scale=None)
    assert not samplers.supports("smc", problem)
    with pytest.raises(ValueError, match="reference_scale"):
        samplers.run("smc", key, problem, 4, 4)
