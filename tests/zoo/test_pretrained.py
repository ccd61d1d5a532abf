"""The pretrained weights that ship in the package: every model reproduces its card at a fixed
seed, the files are checked (checksum, params format, shapes), and the CLI finds them.

The per-model check is the fast one; ``benchmarks/pretrained.py`` reproduces every card in
full (all held-out points, three sampling draws) and commits its JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from flowzoo import cli, zoo
from flowzoo.zoo import (
    WeightsError,
    likelihood_figures,
    load_data,
    model_card,
    pretrained,
    pretrained_names,
    sample_figures,
)

SHIPPED = pretrained_names()
ROOT = Path(__file__).resolve().parents[2]

# held-out examples for the fixed-seed likelihood check: the likelihoods of continuous-time
# models (an ODE with the exact divergence, 64 tangents per image on digits) get fewer
N_CHECK = {"vector": 1000, "digits": 60, "mnist": 60}
N_CHECK_ODE = {"digits": 6, "mnist": 4}


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def test_the_zoo_ships_the_models_the_recipes_train():
    required = {"moons_realnvp", "moons_spline", "moons_maf", "fm_moons", "sbcfm_8gaussians"}
    required |= {"si_moons", "ncsn_moons", "ebm_8gaussians", "glow_mnist", "fm_mnist"}
    required |= {"realnvp_digits", "glow_digits", "sde_digits", "fm_digits"}
    assert required <= set(SHIPPED)
    total = sum(model_card(n)["bytes"] for n in SHIPPED)
    total += sum(p.stat().st_size for p in (zoo.PRETRAINED_DIR / "classifiers").iterdir())
    assert total <= 20 * 2**20, f"{total / 2**20:.1f} MB of weights, the budget is 20 MB"
    for name in SHIPPED:
        card = model_card(name)
        assert card["experiment"] == name and card["command"] == f"flowzoo train {name}"
        assert len(card["commit"]) >= 7 and card["training"]["train_seconds"] > 0
        assert card["sha256"] == zoo.sha256_of(zoo.PRETRAINED_DIR / card["file"])


# fm_mnist's check (the same computation, on its first four test images) is a cell of the
# pretrained_models notebook, which tests/test_notebooks.py executes: one CNF likelihood of
# the MNIST UNet in the suite, not two
CHECKED_IN_THE_NOTEBOOK = {"fm_mnist": ROOT / "docs" / "notebooks" / "pretrained_models.py"}


def test_the_models_checked_in_a_notebook_are_checked_there():
    for name, source in CHECKED_IN_THE_NOTEBOOK.items():
        text = source.read_text()
        assert f'zoo.pretrained("{name}")' in text and "run.log_prob(test)" in text
        assert "3 * se" in text  # tests/test_notebooks.py runs every docs/notebooks/*.py


# the image likelihood with 64 tangents per image runs twice as fast at XLA's default
# optimisation (10 s against 22 s), more than a child's start costs
AT_FULL_OPTIMISATION = {"fm_digits"}
# the checks that take over 2.5 s on 2 cores: left out of the quick loop (-m "not slow")
SLOW_CARDS = {"ebm_8gaussians", "fm_digits", "ncsn_moons", "sde_digits"}


def _card_marks(name: str) -> list:
    marks = []
    if name in AT_FULL_OPTIMISATION:
        marks.append(pytest.mark.full_opt)
    if name in SLOW_CARDS:
        marks.append(pytest.mark.slow)
    return marks


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=_card_marks(n))
        for n in sorted(set(SHIPPED) - set(CHECKED_IN_THE_NOTEBOOK))
    ],
)
def test_shipped_model_reproduces_its_card(name):
    """Likelihood models: the mean NLL (bits/dim for images) of the first ``k`` held-out
    examples lies within three standard errors of the card's mean over all of them (the
    standard error of a ``k``-mean: the card's per-example std / sqrt(k), plus the card's
    own). Sample-only models: the energy distance of sampling seed 0 is no worse than the
    card's worst draw plus the draws' range."""
    card = model_card(name)["figures"]
    run = pretrained(name)
    test = np.asarray(load_data(run.config)[1])
    if "test_nll" in card or "test_bpd" in card:
        key = "test_bpd" if "test_bpd" in card else "test_nll"
        data_name = str(run.config["data"]["name"])
        k = N_CHECK.get(data_name, N_CHECK["vector"])
        if run.config["model"]["name"] in ("cfm", "score_sde") and data_name in N_CHECK_ODE:
            k = N_CHECK_ODE[data_name]
        found = likelihood_figures(run, test[:k])[key]
        se = card[f"{key}_sd"] / math.sqrt(k) + card[f"{key}_se"]
        assert abs(found - card[key]) <= 3 * se, (found, card[key], se)
    else:
        ed = card["energy_distance"]
        found = sample_figures(run, test, draws=(0,))["energy_distance"]["mean"]
        assert found <= ed["max"] + (ed["max"] - ed["min"]), (found, ed)


@pytest.fixture
def copied(tmp_path):
    """The shipped moons_realnvp files, copied to change them."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(zoo.PRETRAINED_DIR / f"moons_realnvp{suffix}", tmp_path)
    return tmp_path


def _rewrite(root, edit_tensors=None, edit_header=None) -> None:
    """Rewrite ``root``'s moons_realnvp weights (with a valid checksum in its card)."""
    tensors, header = zoo.read_weights(root / "moons_realnvp.safetensors")
    if edit_tensors:
        edit_tensors(tensors)
    if edit_header:
        edit_header(header)
    sha = zoo.save_weights(root / "moons_realnvp.safetensors", tensors, header)
    card = json.loads((root / "moons_realnvp.json").read_text())
    (root / "moons_realnvp.json").write_text(json.dumps({**card, "sha256": sha}))


def test_a_tampered_file_fails_its_checksum(copied):
    path = copied / "moons_realnvp.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of one parameter
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="fails its checksum"):
        pretrained("moons_realnvp", copied)


def test_tensors_that_do_not_fit_the_model_are_named(copied):
    name = next(iter(zoo.read_weights(copied / "moons_realnvp.safetensors")[0]))

    def drop(t):
        t[name] = t[name][..., :1]

    _rewrite(copied, edit_tensors=drop)
    with pytest.raises(WeightsError, match=f"tensor '{name}' has shape"):
        pretrained("moons_realnvp", copied)

    def extra(t):
        t["params/surplus"] = np.zeros(3, np.float32)

    shutil.copy(zoo.PRETRAINED_DIR / "moons_realnvp.safetensors", copied)
    shutil.copy(zoo.PRETRAINED_DIR / "moons_realnvp.json", copied)
    _rewrite(copied, edit_tensors=extra)
    with pytest.raises(WeightsError, match="'params/surplus'"):
        pretrained("moons_realnvp", copied)


def test_another_params_format_is_refused(copied):
    _rewrite(copied, edit_header=lambda h: h.update(params_format=4))
    with pytest.raises(WeightsError, match="params format 4"):
        pretrained("moons_realnvp", copied)


def test_not_a_weight_file_and_unknown_names(copied):
    (copied / "moons_realnvp.safetensors").write_bytes(b"\x00" * 64)
    card = json.loads((copied / "moons_realnvp.json").read_text())
    card["sha256"] = zoo.sha256_of(copied / "moons_realnvp.safetensors")
    (copied / "moons_realnvp.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="is not a flowzoo weight file"):
        pretrained("moons_realnvp", copied)
    with pytest.raises(WeightsError, match="no pretrained model named 'nope'.*moons_realnvp"):
        pretrained("nope")


def test_cli_samples_and_evaluates_a_shipped_model_without_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli("sample", "moons_realnvp", "-n", 64, "--out", "x.npy")
    assert rc == 0, err
    assert np.load(tmp_path / "x.npy").shape == (64, 2)
    rc, out, err = run_cli("eval", "moons_realnvp")  # the held-out split by default
    assert rc == 0, err
    card = model_card("moons_realnvp")["figures"]
    assert json.loads(out)["nll_standardized"] == pytest.approx(card["test_nll"], abs=1e-4)
    rc, out, err = run_cli("list")
    assert rc == 0 and "moons_realnvp" in out
    marked = [line.split()[0] for line in out.splitlines() if line.endswith("pretrained")]
    assert set(marked) == set(SHIPPED)


@pytest.mark.slow
def test_a_run_directory_takes_precedence_with_a_notice(tmp_path, monkeypatch):
    """``NAME`` means ``./runs/NAME`` where it exists (with a notice), ``pretrained:NAME``
    the shipped weights; a run exported with ``export_pretrained`` loads back unchanged."""
    monkeypatch.chdir(tmp_path)
    config = zoo.load_experiment("moons_realnvp")
    config["train"].update(steps=5, steps_per_call=5, eval_every=0, checkpoint_every=0)
    config["plot"].update(n_samples=50, grid=10)
    zoo.train_and_evaluate(config, tmp_path / "runs" / "moons_realnvp", progress=False)
    found = zoo.open_run("moons_realnvp")
    assert found.source == str(tmp_path / "runs" / "moons_realnvp") or found.source.endswith(
        "runs/moons_realnvp"
    )
    assert "takes precedence over the pretrained weights moons_realnvp" in found.notice
    assert found.run.step == 5
    shipped = zoo.open_run("pretrained:moons_realnvp")
    assert shipped.notice is None and shipped.run.step == model_card("moons_realnvp")["step"]
    rc, _, err = run_cli("sample", "moons_realnvp", "-n", 8, "--out", "y.npy")
    assert rc == 0 and "flowzoo: note: using the run directory" in err
    rc, _, err = run_cli("sample", "no_such_model", "-n", 8, "--out", "y.npy")
    assert rc == 2 and "does not exist, and no pretrained model has that name" in err
    # round trip: the run exported as shipped weights gives the same log-densities
    zoo.export_pretrained("runs/moons_realnvp", "ship", {"experiment": "moons_realnvp"})
    shipped = pretrained("moons_realnvp", tmp_path / "ship")
    x = np.asarray(load_data(config)[1][:50])
    np.testing.assert_array_equal(shipped.log_prob(x), found.run.log_prob(x))
    assert shipped.step == 5


@pytest.mark.slow
def test_fine_tuning_starts_from_the_shipped_weights(tmp_path):
    """``--init pretrained``: its own run directory, and after a few steps at a small
    learning rate its held-out NLL is the card's, far from a fresh model's."""
    card = model_card("moons_realnvp")["figures"]
    args = ["--set", "train.steps=10", "--set", "train.steps_per_call=10", "--set"]
    args += ["train.lr=1e-5", "--set", "train.warmup_steps=0", "--set", "plot.grid=10"]
    args += ["--no-progress", "--workdir", tmp_path]
    rc, out, err = run_cli("train", "moons_realnvp", "--init", "pretrained", *args)
    assert rc == 0, err
    summary = json.loads(out)
    assert (tmp_path / "moons_realnvp_finetune" / "summary.json").is_file()
    assert summary["init"].startswith("pretrained:moons_realnvp (sha256 ")
    assert summary["test_nll"] == pytest.approx(card["test_nll"], abs=0.02)
    cmd = ["train", "moons_realnvp", "--init", "pretrained", "--set", "model.hidden=[8]"]
    rc, _, err = run_cli(*cmd, "--name", "other", *args)
    assert rc == 2 and "do not fit this config's model" in err
    rc, _, err = run_cli("train", "ffjord_moons", "--init", "pretrained", *args)
    assert rc == 2 and "no pretrained weights for 'ffjord_moons'" in err


def test_shipped_classifiers_load_without_training(tmp_path, monkeypatch):
    """Both classifiers come from the package (an empty cache stays empty: nothing is
    trained) with their cards' held-out accuracy; the digits one classifies its test split
    at that accuracy."""
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path))
    from flowzoo import data as fzdata

    for name in ("digits", "mnist"):
        card = json.loads((zoo.PRETRAINED_DIR / "classifiers" / f"{name}.json").read_text())
        clf = zoo.image_classifier(name)
        assert clf.test_accuracy == card["test_accuracy"] >= 0.98
    assert list(tmp_path.iterdir()) == []
    digits = fzdata.image_dataset("digits")
    quality = zoo.image_quality(zoo.image_classifier("digits"), digits.test.astype(np.float32))
    assert quality["legibility"] > 0.9  # real held-out digits read as digits


def test_bench_takes_a_shipped_model_as_a_learned_target():
    from flowzoo.bench import learned_target

    target = learned_target("pretrained:fm_moons")
    assert target.name == "run:fm_moons"
    x = target.sample(jax.random.key(0), 100)
    assert x.shape == (100, 2) and np.all(np.isfinite(np.asarray(x)))
