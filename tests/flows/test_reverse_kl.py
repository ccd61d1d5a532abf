"""Flow samplers trained by reverse KL (flowzoo.flows.reverse_kl_fit, the flow_* registry
entries): log Z, ESS and moments on Gaussians with closed forms, the NFE, non-finite
targets, and plain importance sampling from the untrained flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowzoo.zoo  # noqa: F401  (registers the flow samplers)
from flowzoo import flows, samplers

M = jnp.array([1.0, -2.0])
SD = jnp.array([0.5, 2.0])
SCALE = 3.0  # the reference N(0, 3^2 I)


def _gaussian(const: float):
    """``log N(x; M, diag(SD^2)) + const`` (unnormalised when const != 0) and its log Z."""
    log_norm = float(jnp.sum(jnp.log(SD)) + np.log(2.0 * np.pi))
    lp = lambda x: const - log_norm - 0.5 * jnp.sum(((x - M[None]) / SD[None]) ** 2, 1)
    return lp, const


def test_registry_entries_state_their_budget():
    for name in ("flow_realnvp", "flow_spline", "flow_iaf"):
        spec = samplers.SAMPLERS[name]
        assert spec.kind == "flow" and not spec.adaptive
        assert spec.needs == (("log_prob",), ("reference_scale",))
        assert spec.nfe(10) == 11 and spec.steps_for(64) == 63 and spec.steps_for(1) == 1


@pytest.mark.slow
def test_trained_realnvp_finds_log_z_ess_and_moments(key):
    """150 steps of a batch of 500 at learning rate 3e-3 on N(M, diag(SD^2)) times e^3.7:
    log Z within 0.05 nats, ESS above 80 % of n, resampled moments close; NFE = steps + 1."""
    lp, log_z = _gaussian(3.7)
    problem = samplers.Problem((2,), log_prob=lp, reference_scale=SCALE)
    run = jax.jit(lambda k: samplers.run("flow_realnvp", k, problem, 500, 150, learning_rate=3e-3))
    x, info = run(key)
    assert int(info.nfe) == 151 and np.isnan(float(info.acceptance_rate))
    assert abs(float(info.log_z) - log_z) < 0.05, float(info.log_z)
    assert float(info.ess) > 0.8 * 500, float(info.ess)
    # 500 resampled draws with ESS > 400: the mean's standard error is about 0.05 SD
    np.testing.assert_array_less(jnp.abs(jnp.mean(x, 0) - M) / SD, 0.25)
    np.testing.assert_allclose(jnp.std(x, 0), SD, rtol=0.15)


@pytest.mark.slow
def test_target_with_nan_and_minus_inf_regions_stays_finite(key):
    """Gamma(2, 1) x N(0, 1) written as log(x0) - x0 - x1^2/2 (NaN for x0 < 0, -inf at 0):
    training skips nothing (the bad draws leave the mean), the samples lie in the support and
    log Z = log sqrt(2 pi) within 0.2 nats."""
    lp = lambda x: jnp.log(x[:, 0]) - x[:, 0] - 0.5 * x[:, 1] ** 2
    problem = samplers.Problem((2,), log_prob=lp, reference_scale=SCALE)
    run = jax.jit(lambda k: flows.reverse_kl_fit(k, problem, 256, 60, flow="spline"))
    out = run(key)
    assert bool(jnp.all(jnp.isfinite(out.losses))) and int(out.skipped) == 0
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(out.params))
    assert bool(jnp.all(out.position[:, 0] > 0))
    assert abs(float(out.log_z) - 0.5 * np.log(2 * np.pi)) < 0.2, float(out.log_z)
    assert 0 < float(out.ess) <= 256


@pytest.mark.slow
def test_target_minus_inf_everywhere_skips_every_update(key):
    """Every step's loss is NaN: no update is applied, log Z = -inf, ESS = 0, and the
    returned samples are the (finite) draws of the untrained flow."""
    problem = samplers.Problem(
        (3,), log_prob=lambda x: jnp.full(x.shape[:1], -jnp.inf), reference_scale=2.0
    )
    out = jax.jit(lambda k: flows.reverse_kl_fit(k, problem, 64, 4, flow="iaf"))(key)
    assert int(out.skipped) == 4 and bool(jnp.all(jnp.isnan(out.losses)))
    assert float(out.log_z) == -np.inf and float(out.ess) == 0.0
    assert bool(jnp.all(jnp.isfinite(out.position)))
    np.testing.assert_allclose(jnp.std(out.position), 2.0, rtol=0.15)  # the reference


@pytest.mark.slow
def test_untrained_flow_is_importance_sampling_from_the_reference(key):
    """learning_rate=0: importance sampling of the normalised N(M, diag(SD^2)) from
    N(0, 3^2 I). Against the closed form E_q[w^2] = prod_i int p_i^2 / q_i: the mean of
    Z-hat over 16 runs is 1 within 3 standard errors sqrt((E_q[w^2] - 1) / (16 n)), and
    ESS / n is 1 / E_q[w^2] within 10 %."""
    lp, _ = _gaussian(0.0)
    problem = samplers.Problem((2,), log_prob=lp, reference_scale=SCALE)
    n, runs = 2000, 16
    fit = lambda k: flows.reverse_kl_fit(k, problem, n, 1, flow="iaf", learning_rate=0.0)
    out = jax.jit(jax.vmap(fit))(jax.random.split(key, runs))
    a = 1.0 / SD**2 - 0.5 / SCALE**2  # int N(x; m, sd^2)^2 / N(x; 0, s^2) dx, per coordinate
    per = SCALE / (SD**2 * np.sqrt(2 * np.pi)) * jnp.sqrt(np.pi / a)
    per = per * jnp.exp((M / SD**2) ** 2 / a - M**2 / SD**2)
    second = float(jnp.prod(per))
    z_hat = np.exp(np.asarray(out.log_z, np.float64))
    assert abs(z_hat.mean() - 1.0) < 3 * np.sqrt((second - 1.0) / (runs * n)), z_hat.mean()
    np.testing.assert_allclose(np.mean(out.ess) / n, 1.0 / second, rtol=0.1)


def test_bad_event_shape_and_flow_name_are_refused(key):
    lp = lambda x: -jnp.sum(x**2, (1, 2))
    with pytest.raises(ValueError, match=r"must be \(dim,\), got \(2, 2\)"):
        samplers.run(
            "flow_iaf", key, samplers.Problem((2, 2), log_prob=lp, reference_scale=1.0), 8, 2
        )
    with pytest.raises(ValueError, match="unknown flow 'glow'"):
        flows.reverse_kl_fit(
            key, samplers.Problem((2,), log_prob=lp, reference_scale=1.0), 8, 2, flow="glow"
        )
    with pytest.raises(ValueError, match="needs Problem fields"):
        samplers.run("flow_realnvp", key, samplers.Problem((2,), log_prob=lp), 8, 2)
