"""Peer rows of the sampler benchmark: blackjax chains and Meta's flow_matching ODE solver on
the same targets, against the targets' truth and against flowzoo's own rows.

blackjax is in the ``dev`` extra, so these run in CI; the Meta rows need PyTorch and
``flow-matching`` (the ``bench`` extra) and are skipped without them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bench, paths
from flowzoo.bench import _peers

pytest.importorskip("blackjax")

SMALL = bench.Settings(n=500, repeats=1, trace=16, warmup=False)


@pytest.mark.slow
def test_blackjax_mala_agrees_with_flowzoo_mala_on_the_banana():
    """Same step size and budget: both chains match the target's moments to the same
    accuracy and accept at nearly the same rate (the same algorithm, two implementations)."""
    target = bench.TARGETS["banana"]()
    ours = bench.run_cell(target, "mala", 512, 0, SMALL)
    peer = bench.run_cell(target, "blackjax_mala", 512, 0, SMALL)
    assert peer["nfe"] == 512 and peer["kind"] == "chain"
    assert abs(peer["acceptance_rate"] - ours["acceptance_rate"]) < 0.05
    for metric in ("energy_distance", "mean_error", "cov_error"):
        assert peer[metric] < 2 * ours[metric] + 0.05, (metric, peer, ours)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blackjax_hmc", "blackjax_nuts"])
def test_blackjax_hmc_and_nuts_sample_the_banana_and_count_gradients(name):
    target = bench.TARGETS["banana"]()
    cell = bench.run_cell(target, name, 512, 0, SMALL)
    assert not cell["diverged"]
    assert 0.0 < cell["acceptance_rate"] <= 1.0
    if name == "blackjax_hmc":
        assert cell["nfe"] == 512  # 64 transitions x 8 leapfrog steps
    else:
        assert cell["nfe"] >= 64  # 64 transitions, at least one gradient each
    floor = bench.noise_floor(target, 0, SMALL)["energy_distance"]
    assert cell["energy_distance"] < 20 * floor + 0.05, cell


def test_peer_rows_are_skipped_where_they_do_not_apply_and_named_when_missing(tmp_path):
    moons = bench.TARGETS["two_moons"]()  # no log-density: no MCMC rows
    assert bench.run_cell(moons, "blackjax_mala", 64, 0, SMALL) is None
    assert bench.run_cell(bench.TARGETS["banana"](), "metafm_euler", 8, 0, SMALL) is None
    with pytest.raises(ValueError, match="unknown sampler nope"):
        bench.run_benchmark(tmp_path, samplers=["nope"], targets=["banana"], progress=False)


def test_meta_flow_matching_rows_use_the_same_field_and_reach_the_same_quality():
    pytest.importorskip("torch")
    pytest.importorskip("flow_matching")
    import torch

    target = bench.TARGETS["eight_gaussians"]()
    field = _peers.torch_cond_ot_velocity(target.mixture)
    ref = bench.path_velocity(target.mixture, paths.cond_ot_path())
    x = 2.0 * jax.random.normal(jax.random.key(0), (64, 2))
    for t in (0.0, 0.3, 0.9, 0.999):
        got = field(torch.tensor(np.array(x)), torch.tensor(t)).numpy()
        np.testing.assert_allclose(got, ref(jnp.float32(t), x), rtol=1e-4, atol=1e-5)
    for ours, peer in (
        ("flow_ode_euler", "metafm_euler"),
        ("flow_ode_midpoint", "metafm_midpoint"),
    ):
        a = bench.run_cell(target, ours, 32, 0, SMALL)
        b = bench.run_cell(target, peer, 32, 0, SMALL)
        assert a["nfe"] == b["nfe"] == 32
        assert abs(a["energy_distance"] - b["energy_distance"]) < 0.02, (a, b)


def test_diffusers_rows_use_the_exact_noise_prediction_and_agree_with_flowzoo():
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    import torch

    target = bench.TARGETS["eight_gaussians"]()
    score = _peers.torch_diffused_score(target.mixture)
    x = 2.0 * jax.random.normal(jax.random.key(0), (64, 2))
    for a, s in ((0.99, 0.1), (0.6, 0.8), (0.01, 1.0)):
        got = score(a, s, torch.tensor(np.array(x))).numpy()
        np.testing.assert_allclose(
            got, bench.diffused_score(target.mixture, a, s, x), rtol=1e-4, atol=1e-5
        )
    ours = bench.run_cell(target, "dpm_solver_2m", 32, 0, SMALL)
    peer = bench.run_cell(target, "diffusers_dpm_solver_2m", 32, 0, SMALL)
    assert peer["nfe"] == 32
    floor = bench.noise_floor(target, 0, SMALL)["energy_distance"]
    assert (
        peer["energy_distance"] < 3 * floor + 2e-3
        and abs(ours["energy_distance"]) < 3 * floor + 2e-3
    )
    heun = bench.run_cell(target, "diffusers_edm_heun", 32, 0, SMALL)
    assert heun["nfe"] == 31  # 16 Heun steps, the last one Euler
