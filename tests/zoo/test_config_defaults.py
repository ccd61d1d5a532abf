"""One home for each default: every config key's default is its schema ``Spec``'s; a config
is completed from the schema before it is checked; a run records (and ``--print-config``
prints) only the keys that apply to it; the model registry holds one entry per name.

``fixtures/print_config/NAME.json`` is the output of ``flowzoo train NAME --print-config``
for every built-in experiment, taken before the defaults moved into the schema: the printed
configs must stay the same, except for the keys listed in :data:`REMOVED`.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from flowzoo import cli
from flowzoo import data as fzdata
from flowzoo.zoo import (
    MODELS,
    ConfigError,
    ModelEntry,
    applicable_config,
    apply_overrides,
    available_experiments,
    complete_config,
    default_cfm_config,
    default_config,
    load_experiment,
    load_run,
    register_model,
    schema,
    schema_of,
    train_and_evaluate,
    validate_config,
)

FIXTURES = Path(__file__).parent / "fixtures" / "print_config"

_FILE_KEYS = ("data.path", "data.test_fraction")  # data.name="file" only
_TOY_KEYS = ("data.noise", "data.n_train", "data.standardize")  # toy targets only

REMOVED: dict[str, tuple[str, ...]] = {
    # The keys allowed to differ from the fixtures, all of them removed, none added or
    # changed: data keys that do not apply to the experiment's data set. The two-moons
    # default states data.path and data.test_fraction (read only for data.name="file"), and
    # the experiments that start from it and change data.name carried its keys along.
    **dict.fromkeys(
        (
            "default",
            "moons_realnvp",
            "moons_maf",
            "moons_spline",
            "ffjord_moons",
            "fm_moons",
            "ncsn_moons",
            "reflow_moons",
            "si_moons",
        ),
        _FILE_KEYS,
    ),
    # checkerboard and eight_gaussians take no noise level
    **dict.fromkeys(
        (
            "checkerboard_realnvp",
            "checkerboard_spline",
            "eight_gaussians_realnvp",
            "ebm_8gaussians",
            "fm_8gaussians",
            "sbcfm_8gaussians",
        ),
        (*_FILE_KEYS, "data.noise"),
    ),
    # image sets: no noise, no n_train (a fixed split), never standardised
    **dict.fromkeys(("fm_digits", "fm_mnist", "sde_digits"), (*_FILE_KEYS, *_TOY_KEYS)),
    **dict.fromkeys(("glow_digits", "glow_mnist", "realnvp_digits"), ("data.standardize",)),
    # the CIFAR-10 recipes were written with the schema: their fixtures are as printed
    **dict.fromkeys(("fm_cifar10", "sde_cifar10", "glow_cifar10", "realnvp_cifar10"), ()),
}


def _print_config(name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["train", name, "--print-config"])
    assert rc == 0, err.getvalue()
    return out.getvalue()


def test_every_experiment_has_a_fixture():
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == available_experiments()
    assert sorted(REMOVED) == available_experiments()


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_printed_config_is_the_fixture_without_the_inapplicable_keys(name):
    want = json.loads((FIXTURES / f"{name}.json").read_text())
    for key in REMOVED[name]:
        section, leaf = key.split(".")
        del want[section][leaf]  # KeyError: the fixture never had it (fix REMOVED)
    assert _print_config(name) == json.dumps(want, indent=2) + "\n"


def _tables():
    """``(where, schema)`` of every section schema: top level, data per data set, train,
    plot, and each registered model's."""
    yield "top", schema.TOP
    for name in (*fzdata.TOY_TARGETS, *fzdata.IMAGE_LEVELS, "file"):
        yield f"data ({name})", schema.data_schema(name)
    yield "train", schema.TRAIN
    yield "plot", schema.PLOT
    for name, entry in MODELS.items():
        if entry.schema is not None:
            yield f"model ({name})", entry.schema


def test_every_default_is_allowed_by_its_own_spec():
    for where, table in _tables():
        for key, spec in table.items():
            if spec.has_default:
                assert not spec.required, (where, key)
                assert schema.value_ok(spec, spec.default), (where, key, spec.default)
                assert spec.check is None or spec.check(spec.default) is None, (where, key)


def test_default_sections_agree_with_the_schema():
    """default_config() and default_cfm_config() are experiments' configs, not a second table
    of defaults: wherever the schema has a default for one of their keys, they hold it."""
    cfm = {**default_config(), "model": default_cfm_config()}
    for config in (default_config(), cfm):
        for section in ("data", "model", "train", "plot"):
            for key, value in config[section].items():
                spec = schema_of(config, f"{section}.{key}")
                if spec is not None and spec.has_default:
                    assert value == spec.default, (section, key, value, spec.default)


def test_completion_fills_every_default_and_keeps_given_values():
    config = {
        "name": "tiny",
        "data": {"name": "checkerboard"},
        "model": {"name": "realnvp", "num_layers": 2, "hidden": [8], "activation": "relu"},
        "train": {
            "steps": 1,
            "batch_size": 8,
            "lr": 1e-3,
            "steps_per_call": 1,
            "eval_every": 0,
            "checkpoint_every": 0,
            "keep_checkpoints": 1,
        },
    }
    full = complete_config(config)
    validate_config(config)  # checked as completed
    assert full["seed"] == 0 and full["plot"]["n_samples"] == 5000
    assert full["data"] == {
        "name": "checkerboard",
        "n_train": 20000,
        "n_test": 5000,
        "standardize": True,
    }
    assert full["model"]["activation"] == "relu" and full["model"]["transformer"] == "affine"
    assert full["train"]["warmup_steps"] == 100 and full["train"]["compute_dtype"] == "float32"
    assert complete_config(full) == full  # completing twice changes nothing
    assert "seed" not in config and "plot" not in config  # the input is not touched


def test_noise_default_is_the_toy_targets_own():
    config = apply_overrides(default_config(), ["data.name=circles"])
    assert config["data"]["noise"] == 0.05  # stated by the default config
    del config["data"]["noise"]
    assert complete_config(config)["data"]["noise"] == 0.08  # circles' signature default


def test_data_keys_follow_the_data_set():
    assert applicable_config(load_experiment("fm_mnist"))["data"] == {
        "name": "mnist",
        "n_test": 200,
    }
    assert load_experiment("fm_mnist")["data"] == {"name": "mnist", "n_test": 200}
    # switching the data set by override drops the keys that no longer apply, and a key of
    # the new data set can be set in the same command, in any order
    config = apply_overrides(
        load_experiment(None), ["data.path=x.npy", "data.name=file", "data.test_fraction=0.2"]
    )
    assert config["data"] == {
        "name": "file",
        "standardize": True,
        "path": "x.npy",
        "test_fraction": 0.2,
    }
    back = apply_overrides(load_experiment("fm_mnist"), ["data.name=two_moons"])
    assert complete_config(back)["data"] == {
        "name": "two_moons",
        "noise": 0.05,
        "n_train": 20000,
        "n_test": 200,
        "standardize": True,
    }
    with pytest.raises(ConfigError, match="unknown key 'data.nois'"):
        apply_overrides(load_experiment(None), ["data.nois=0.1"])
    # a key of another data set is checked, then dropped (shared overrides stay usable)
    assert "n_train" not in apply_overrides(config, ["data.n_train=2000"])["data"]
    with pytest.raises(ConfigError, match=r"data\.n_train=1"):
        apply_overrides(config, ["data.n_train=1"])


def test_overrides_of_unset_keys_take_the_type_of_their_default():
    config = apply_overrides(
        load_experiment(None), ["model.spline_bound=3", "train.weight_decay=1"]
    )
    assert config["model"]["spline_bound"] == 3.0 and isinstance(
        config["model"]["spline_bound"], float
    )
    assert config["train"]["weight_decay"] == 1.0
    with pytest.raises(ConfigError, match=r"model\.inverse"):
        apply_overrides(load_experiment("moons_maf"), ["model.inverse=[1]"])
    with pytest.raises(ConfigError, match=r"model\.spline_bound=-2\.5"):
        validate_config(apply_overrides(load_experiment(None), ["model.spline_bound=-2.5"]))


def test_registry_refuses_a_duplicate_name_unless_replace():
    entry = MODELS["realnvp"]
    assert isinstance(entry, ModelEntry) and entry.schema["num_layers"].required
    with pytest.raises(ValueError, match="already registered"):
        register_model("realnvp", entry.builder, entry.schema)
    with pytest.raises(TypeError):
        MODELS["realnvp"] = entry  # read-only: register_model is the one way in
    try:
        replaced = register_model("realnvp", entry.builder, replace=True)
        assert MODELS["realnvp"] is replaced and replaced.schema is None
    finally:
        register_model("realnvp", *entry, replace=True)
    assert MODELS["realnvp"] == entry


def _tiny(steps: int) -> dict:
    config = apply_overrides(
        default_config(),
        [
            "name=tiny",
            "data.name=checkerboard",
            "data.n_train=512",
            "data.n_test=128",
            "model.num_layers=2",
            "model.hidden=[8]",
            f"train.steps={steps}",
            "train.steps_per_call=10",
            "train.eval_every=0",
            "train.checkpoint_every=10",
            "plot.n_samples=64",
            "plot.grid=10",
        ],
    )
    return config


@pytest.mark.slow
def test_old_run_json_without_keys_resumes(tmp_path):
    """A run.json that lacks keys (written before they existed, or leaving them at their
    defaults) resumes: it is completed from the schema like the new config."""
    workdir = tmp_path / "tiny"
    train_and_evaluate(_tiny(10), workdir, progress=False)
    info = json.loads((workdir / "run.json").read_text())
    assert set(info["config"]["data"]) == {"name", "n_train", "n_test", "standardize"}
    for key in ("compute_dtype", "data_parallel", "ema_warmup", "warmup_steps"):
        info["config"]["train"].pop(key)
    info["config"]["model"].pop("activation")
    (workdir / "run.json").write_text(json.dumps(info))
    summary = train_and_evaluate(_tiny(20), workdir, progress=False)
    assert summary["steps"] == 20 and load_run(workdir).config["train"]["warmup_steps"] == 100
    other = apply_overrides(_tiny(30), ["model.activation=relu"])
    with pytest.raises(ConfigError, match=r"model\.activation: 'gelu' -> 'relu'"):
        train_and_evaluate(other, workdir, progress=False)
