"""Runs saved in older params formats (``zoo._run.PARAMS_FORMAT``) load and resume.

The fixtures under ``fixtures/`` are tiny ``moons_realnvp`` runs (8 couplings: one short
stack of four blocks) written by the flowzoo commits of formats 3 and 4, with the
log-densities and samples that code computed (``reference.json``; written by
``fixtures/make_params_format_runs.py``). ``format3_tuple`` and ``format4_tuple`` hold the
stack's params as a tuple of per-layer params (format 3 for every short stack, format 4
for short stacks over 2^18 parameters), ``format4_stacked`` as stacked arrays.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import checkpoint as ckpt
from flowzoo.zoo import ConfigError, _run, build_model, load_run, train_and_evaluate

FIXTURES = Path(__file__).parent / "fixtures"
RUNS = ["format3_tuple", "format4_tuple", "format4_stacked"]


def copy_of(name: str, tmp_path: Path) -> tuple[Path, dict]:
    """A private copy of a fixture run and its reference values."""
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    return run_dir, json.loads((run_dir / "reference.json").read_text())


def holds_a_tuple(step_dir: Path) -> bool:
    """Whether a checkpoint holds the stack's params as a tuple of per-block params (the
    key of block 0's first coupling), judged from orbax's tree metadata."""
    keys = json.loads((step_dir / "state" / "_METADATA").read_text())["tree_metadata"]
    return any(k.startswith("('params', 'bijector', '0', '0', 'params'") for k in keys)


def test_the_fixtures_hold_the_layouts_they_are_named_for():
    """The tuple fixtures really hold a tuple where format 5 stacks (else the tests below
    would not exercise the conversion), and the stacked one does not."""
    for name in RUNS:
        info = json.loads((FIXTURES / name / "run.json").read_text())
        reference = json.loads((FIXTURES / name / "reference.json").read_text())
        assert info["params_format"] == reference["params_format"] == int(name[6])
        assert holds_a_tuple(FIXTURES / name / "checkpoints" / "300") == name.endswith("tuple")


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_old_runs_load_with_the_log_densities_and_samples_of_the_code_that_wrote_them(
    name, tmp_path
):
    run_dir, reference = copy_of(name, tmp_path)
    run = load_run(run_dir)
    assert run.step == reference["step"]
    x = np.asarray(reference["points"], np.float32)
    np.testing.assert_allclose(run.log_prob(x), reference["log_prob"], rtol=1e-5, atol=1e-5)
    samples = run.sample(jax.random.key(reference["sample_seed"]), len(reference["samples"]))
    np.testing.assert_allclose(samples, reference["samples"], rtol=1e-4, atol=1e-5)
    # in format 5's layout: every leaf of the stack has the leading layer axis of size 4
    fresh = jax.eval_shape(run.model.distribution.init, jax.random.key(0), jnp.zeros((2, 2)))
    assert jax.tree.structure(run.params) == jax.tree.structure(fresh)
    assert all(a.shape[0] == 4 for a in jax.tree.leaves(run.params))
    # not vacuous: the trained flow is far from its initialisation (the identity)
    untrained = run.model.distribution.init(jax.random.key(0), jnp.zeros((2, 2)))
    moved = run._replace(params=untrained).log_prob(x) - run.log_prob(x)
    assert float(np.max(np.abs(moved))) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["format3_tuple", "format4_tuple"])
def test_old_runs_resume_and_save_format_5(name, tmp_path):
    """Training more steps on an old run resumes from its checkpoint (step 300, not from
    scratch), records format 5 and writes a checkpoint in the stacked layout."""
    run_dir, reference = copy_of(name, tmp_path)
    config = json.loads((run_dir / "run.json").read_text())["config"]
    config["train"]["steps"] = 350
    config["plot"] = {**config.get("plot", {}), "n_samples": 200, "grid": 20}  # may change
    summary = train_and_evaluate(config, run_dir)
    assert np.isfinite(summary["test_nll"])
    assert json.loads((run_dir / "run.json").read_text())["params_format"] == _run.PARAMS_FORMAT
    assert ckpt.latest_step(run_dir / "checkpoints") == 350
    assert not holds_a_tuple(run_dir / "checkpoints" / "350")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert min(r["step"] for r in records if "step" in r) > 300  # resumed, not retrained
    run = load_run(run_dir)
    assert run.step == 350
    x = np.asarray(reference["points"], np.float32)
    assert np.all(np.isfinite(run.log_prob(x)))


@pytest.mark.slow
def test_short_stacks_of_any_size_save_one_layout(tmp_path):
    """New runs carry one saved layout whatever the model size: the 8-layer RealNVP of the
    fixtures at dim 2 and at dim 784 (a short stack over 2^18 parameters, which format 4
    held as a tuple, and which now holds Layers in memory) save params and Adam moments of
    the same structure, stacked along the layer axis; the files restore into Layers and
    into stacked params alike, with the same values."""
    import optax

    from flowzoo import bijectors

    config = json.loads((FIXTURES / "format4_stacked" / "run.json").read_text())["config"]
    config["model"]["hidden"] = [64, 64]

    def state_of(dim):
        model = build_model(config, (dim,))
        params = model.distribution.init(jax.random.key(0), jnp.ones((2, dim)))
        return {"params": params, "opt": optax.adam(1e-3).init(params)}

    small, large = state_of(2), state_of(784)
    is_layers = lambda n: isinstance(n, bijectors.Layers)  # noqa: E731
    assert any(map(is_layers, jax.tree.leaves(large, is_leaf=is_layers)))
    assert not any(map(is_layers, jax.tree.leaves(small, is_leaf=is_layers)))
    stacked = bijectors.saved_layout(large)
    assert jax.tree.structure(small) == jax.tree.structure(stacked)
    assert sum(a.size for a in jax.tree.leaves(large["params"])) > 2**18
    layer_leaves = jax.tree.leaves(small["params"]) + jax.tree.leaves(stacked["params"])
    assert all(a.shape[0] == 4 for a in layer_leaves)

    large["params"] = jax.tree.map(
        lambda a: a + 0.01 * jnp.arange(a.size).reshape(a.shape) / a.size, large["params"]
    )
    ckpt.save(tmp_path / "layers", 1, large)
    ckpt.save(tmp_path / "stacked", 1, bijectors.saved_layout(large))

    def tree_metadata(run):
        return json.loads((tmp_path / run / "1" / "state" / "_METADATA").read_text())[
            "tree_metadata"
        ]

    assert tree_metadata("layers") == tree_metadata("stacked")  # the same files
    assert not holds_a_tuple(tmp_path / "layers" / "1")
    for target in (state_of(784), bijectors.saved_layout(state_of(784))):
        got, step = ckpt.restore(tmp_path / "layers", target)
        assert step == 1 and jax.tree.structure(got) == jax.tree.structure(target)
        want = large if is_layers_anywhere(target) else bijectors.saved_layout(large)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def is_layers_anywhere(tree) -> bool:
    from flowzoo import bijectors

    is_layers = lambda n: isinstance(n, bijectors.Layers)  # noqa: E731
    return any(map(is_layers, jax.tree.leaves(tree, is_leaf=is_layers)))


def test_a_run_of_a_newer_params_format_is_refused_naming_the_version(tmp_path):
    run_dir, _ = copy_of("format4_stacked", tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    info.update(params_format=_run.PARAMS_FORMAT + 1, flowzoo_version="9.9.0")
    (run_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"params format 6, written by flowzoo 9\.9\.0") as err:
        load_run(run_dir)
    assert "\n" not in str(err.value)
