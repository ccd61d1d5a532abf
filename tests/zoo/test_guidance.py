"""Autoguidance in ``flowzoo train``: ``model.guide_steps`` trains a guide run beside the main
one, and the run samples and evaluates ``guide + w (main - guide)`` (``nets.guided``).

One tiny two-moons flow-matching run (MLP 16 units, 60 steps; guide 8 units, 20 steps) per
module; the references are the same fields composed by hand from the two runs' checkpoints.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import flow_matching, nets, paths
from flowzoo.integrate import SolverConfig
from flowzoo.zoo import (
    ConfigError,
    build_model,
    default_cfm_config,
    default_config,
    load_run,
    prepare_data,
    train_and_evaluate,
    validate_config,
)

WEIGHT = 2.5


def tiny_config() -> dict:
    config = default_config()
    config["name"] = "guided"
    config["data"].update(n_train=2000, n_test=300)
    config["model"] = default_cfm_config()
    config["model"].update(
        hidden=[16],
        num_steps=8,
        log_prob_steps=8,
        guide_steps=20,
        guide_hidden=[8],
        guide_weight=WEIGHT,
    )
    config["train"].update(steps=60, steps_per_call=20, eval_every=0, checkpoint_every=20)
    config["plot"].update(n_samples=300, grid=20)
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "guided"
    summary = train_and_evaluate(tiny_config(), workdir, progress=False)
    return workdir, summary


def _field(hidden, config):
    m = config["model"]
    return nets.time_mlp(
        (2,), tuple(hidden), embed_dim=m["embed_dim"], activation_fn=m["activation"]
    )


@pytest.mark.slow
def test_guide_is_its_own_run_and_the_summary_says_so(run):
    workdir, summary = run
    guide = json.loads((workdir / "guide" / "run.json").read_text())["config"]
    assert guide["model"]["hidden"] == [8] and guide["model"]["log_prob"] == "none"
    assert guide["train"]["steps"] == 20
    assert not any(k.startswith("guide_") for k in guide["model"])
    assert load_run(workdir / "guide").step == 20
    assert summary["guide_train_seconds"] > 0 and summary["steps"] == 60


def test_loaded_run_is_the_hand_composed_guided_field(run):
    """Samples and the summary's test NLL equal those of ``flow_matching.distribution`` of
    ``nets.guided`` built by hand from the two runs' params."""
    workdir, summary = run
    config = tiny_config()
    loaded, guide = load_run(workdir), load_run(workdir / "guide")
    main_only = load_run(workdir, step=60).params["main"]
    jax.tree.map(np.testing.assert_array_equal, loaded.params["guide"], guide.params)
    field = nets.guided(_field([16], config), _field([8], config), WEIGHT)
    dist = flow_matching.distribution(
        field,
        paths.cond_ot_path(),
        2,
        sample_solver=SolverConfig("midpoint", 8),
        log_prob_solver=SolverConfig("rk4", 8),
    )
    params = {"main": main_only, "guide": guide.params}
    key = jax.random.key(3)
    got = loaded.model.sample(loaded.params, key, 200)
    np.testing.assert_allclose(got, dist.sample(params, key, 200), atol=1e-5)
    test = prepare_data(config).test_std
    want_nll = -float(jnp.mean(dist.log_prob(params, test)))
    np.testing.assert_allclose(summary["test_nll"], want_nll, rtol=1e-4)
    # the guide changes the model: weight 1 (main alone) gives another likelihood
    plain = flow_matching.distribution(
        _field([16], config), paths.cond_ot_path(), 2, log_prob_solver=SolverConfig("rk4", 8)
    )
    plain_nll = -float(jnp.mean(plain.log_prob(main_only, test)))
    assert abs(plain_nll - want_nll) > 1e-3
    # ... and the summary keeps the main model's own likelihood beside the guided one
    np.testing.assert_allclose(summary["unguided_test_nll"], plain_nll, rtol=1e-4)


def test_bench_learned_target_uses_the_guided_field(run):
    from flowzoo import bench

    workdir, _ = run
    config = tiny_config()
    loaded = load_run(workdir)
    field = nets.guided(_field([16], config), _field([8], config), WEIGHT)
    x = jax.random.normal(jax.random.key(1), (7, 2))
    velocity = bench.learned_target(workdir, "data").fields["velocity"]
    np.testing.assert_allclose(
        velocity(0.4, x), field.apply(loaded.params, 0.4, x), atol=1e-6, rtol=1e-6
    )


@pytest.mark.slow
def test_rerun_trains_nothing_more(run, tmp_path):
    workdir = tmp_path / "guided"
    shutil.copytree(run[0], workdir)
    before = load_run(workdir).params
    again = train_and_evaluate(tiny_config(), workdir, progress=False)
    assert again["steps"] == 60
    jax.tree.map(np.testing.assert_array_equal, load_run(workdir).params, before)


@pytest.mark.slow
def test_guide_keys_change_on_a_finished_run_without_retraining_it(run, tmp_path):
    """A new ``guide_weight`` re-samples and re-evaluates the finished run with the new
    field; more ``guide_steps`` train the guide further; the main model is not touched."""
    workdir = tmp_path / "guided"
    shutil.copytree(run[0], workdir)
    before = load_run(workdir).params
    config = tiny_config()
    config["model"].update(guide_weight=1.5, guide_steps=30)
    summary = train_and_evaluate(config, workdir, progress=False)
    loaded = load_run(workdir)
    assert loaded.step == 60 and load_run(workdir / "guide").step == 30
    jax.tree.map(np.testing.assert_array_equal, loaded.params["main"], before["main"])
    field = nets.guided(_field([16], config), _field([8], config), 1.5)
    dist = flow_matching.distribution(
        field, paths.cond_ot_path(), 2, log_prob_solver=SolverConfig("rk4", 8)
    )
    test = prepare_data(config).test_std
    want = -float(jnp.mean(dist.log_prob(loaded.params, test)))
    np.testing.assert_allclose(summary["test_nll"], want, rtol=1e-4)
    np.testing.assert_allclose(summary["unguided_test_nll"], run[1]["unguided_test_nll"], rtol=1e-6)
    # another guide is refused by the guide run, which the message names
    config["model"]["guide_hidden"] = [4]
    with pytest.raises(ConfigError, match=r"the guide run .*guide.*model\.hidden"):
        train_and_evaluate(config, workdir, progress=False)
    # a key of the main model is still refused, and names the key
    config["model"]["hidden"] = [32]
    with pytest.raises(ConfigError, match="model.hidden"):
        train_and_evaluate(config, workdir, progress=False)


def test_missing_guide_run_is_named(run, tmp_path):
    workdir = tmp_path / "guided"
    shutil.copytree(run[0], workdir)
    shutil.rmtree(workdir / "guide")
    with pytest.raises(ConfigError, match="guide run .* is missing"):
        load_run(workdir)


def test_guided_model_refuses_training_and_bad_keys_are_refused(run):
    config = tiny_config()
    from flowzoo.zoo import build_guided_cfm

    model = build_guided_cfm(config["model"], (2,))
    with pytest.raises(TypeError, match="guide apart"):
        model.loss({}, jax.random.key(0), jnp.zeros((4, 2)))
    for key, value in (("guide_steps", -1), ("guide_weight", float("nan")), ("guide_hidden", [])):
        bad = tiny_config()
        bad["model"][key] = value
        with pytest.raises(ConfigError, match=key):
            validate_config(bad)
    # without guide_steps the keys are inert: the model trains, one network, as before
    plain = tiny_config()
    plain["model"]["guide_steps"] = 0
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)), jnp.float32)
    trainable = build_model(plain, (2,))
    p = trainable.init(jax.random.key(0), x)
    assert "guide" not in p and np.isfinite(float(trainable.loss(p, jax.random.key(1), x)[0]))


@pytest.mark.slow
def test_exported_guided_run_loads_and_fine_tunes_with_its_guide(run, tmp_path):
    """A guided run exported as pretrained weights (main + guide in one file) samples like
    the run; fine-tuning from it writes the shipped guide as a finished run (not trained)
    and trains the main model from the shipped params."""
    from flowzoo.zoo import export_pretrained, pretrained, pretrained_parts

    workdir, _ = run
    export_pretrained(workdir, tmp_path / "ship", {"experiment": "guided"})
    loaded, shipped = load_run(workdir), pretrained("guided", tmp_path / "ship")
    key = jax.random.key(5)
    np.testing.assert_array_equal(
        shipped.model.sample(shipped.params, key, 50), loaded.model.sample(loaded.params, key, 50)
    )
    config = tiny_config()
    config["train"].update(steps=20, lr=1e-6)
    init = pretrained_parts("guided", tmp_path / "ship")
    summary = train_and_evaluate(config, tmp_path / "ft", progress=False, init=init)
    assert summary["guide_train_seconds"] == 0.0 and summary["init"].startswith("pretrained:")
    guide = load_run(tmp_path / "ft" / "guide")
    assert guide.step == 20
    jax.tree.map(np.testing.assert_array_equal, guide.params, loaded.params["guide"])
    tuned = load_run(tmp_path / "ft")  # at lr 1e-6, 20 steps stay next to the shipped params
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
        tuned.params["main"],
        loaded.params["main"],
    )
