"""The CIFAR-10 recipes at their published sizes (``glow_cifar10``, ``realnvp_cifar10``,
``fm_cifar10``, ``sde_cifar10``): each trains 3 steps at reduced width on a file in the
official python-version format, and ``--dry-run`` compiles a step without reading data.

The full-size dry runs take about a minute of compilation each on 2 CPU cores, so the suite
checks ``--dry-run`` at reduced width against the parameters a real ``init`` creates; the
full-size parameter counts are checked without compiling (``jax.eval_shape``).
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import cli
from flowzoo.zoo import apply_overrides, build_model, complete_config, dry_run, load_experiment

# per recipe: overrides that keep its structure (levels, scales, blocks, attention) at a
# fraction of its width, so that 3 steps compile and run in seconds
REDUCED = {
    "glow_cifar10": ["model.depth=1", "model.hidden=8"],
    "realnvp_cifar10": ["model.hidden=8", "model.num_blocks=1"],
}
COMMON = [
    "train.steps=3",
    "train.batch_size=8",
    "train.steps_per_call=1",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.warmup_steps=1",
    "data.n_test=8",
    "data.workers=1",
    "plot.n_samples=4",
]


def _sets(keys: list[str]) -> list[str]:
    return [a for k in keys for a in ("--set", k)]


def _run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _cifar_batch(x: np.ndarray) -> bytes:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # R, G, B planes, as published
    obj = {b"batch_label": b"batch", b"labels": [i % 10 for i in range(len(x))], b"data": rows}
    return pickle.dumps(obj, protocol=2)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A cifar-10-python.tar.gz with 8 images per batch (40 train, 8 test)."""
    path = tmp_path_factory.mktemp("data") / "cifar-10-python.tar.gz"
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            raw = _cifar_batch(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_recipe_trains_three_steps_on_a_cifar_file(name, cifar, tmp_path):
    sets = _sets([*REDUCED[name], *COMMON, f"data.path={cifar}"])
    rc, out, err = _run_cli("train", name, *sets, "--workdir", tmp_path, "--no-progress")
    assert rc == 0, err
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["steps"] == 3
    assert np.isfinite(summary["test_bpd"]) and 0 < summary["test_bpd"] < 20
    info = json.loads((tmp_path / name / "run.json").read_text())
    assert info["event_shape"] == [32, 32, 3]


def _config(name: str, keys: list[str]) -> dict:
    return complete_config(apply_overrides(load_experiment(name), keys))


def _model(config: dict):
    """The recipe's model on 256-level 32x32x3 images, as ``flowzoo train`` builds it."""
    return build_model({**config, "model": {**config["model"], "data_levels": 256}}, (32, 32, 3))


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_dry_run_reports_the_parameters_init_creates_and_the_step_cost(cifar):
    """``dry_run`` at reduced width: the parameter count is that of a real ``init`` on
    images, FLOPs and memory are positive, and no data file is read (the path is missing)."""
    keys = [*REDUCED["glow_cifar10"], *COMMON, "data.path=/nonexistent/cifar.tar.gz"]
    report = dry_run(_config("glow_cifar10", keys))
    model = _model(_config("glow_cifar10", keys))
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)), jnp.float32)
    assert report["parameters"] == _count(model.init(jax.random.key(0), x))
    assert report["event_shape"] == [32, 32, 3] and report["batch_size"] == 8
    assert report["flops"] > 0 and report["peak_bytes"] >= report["temp_bytes"] > 0


def test_dry_run_cli_prints_parameters_flops_and_memory(capsys):
    keys = [*REDUCED["realnvp_cifar10"], *COMMON]
    rc, out, err = _run_cli("train", "realnvp_cifar10", *_sets(keys), "--dry-run")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("parameters: ") and lines[1].startswith("step FLOPs: ")
    assert lines[2].startswith("peak memory: ")
    report = json.loads(out[out.index("{") :])
    assert f"{report['parameters']:,}" in lines[0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("glow_cifar10", 44_297_764), ("realnvp_cifar10", 3_379_942)],
)
def test_full_size_parameter_counts(name, expected):
    """At the published sizes, counted from shapes only (no compute): Glow's CIFAR-10 model
    has about 44M parameters (3 levels x 32 steps x 512 channels)."""
    config = _config(name, [])
    model = _model(config)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 32, 32, 3)))
    assert _count(shapes) == expected
