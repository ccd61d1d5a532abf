"""The CIFAR-10 recipes at their published sizes (``glow_cifar10``, ``realnvp_cifar10``,
``fm_cifar10``, ``sde_cifar10``): each trains 3 steps at reduced width on a file in the
official python-version format, and ``--dry-run`` compiles a step without reading data.

The full-size dry runs take about a minute of compilation each on 2 CPU cores, so the suite
checks ``--dry-run`` at reduced width against the parameters a real ``init`` creates, and
Glow's full-size parameter count without compiling (``jax.eval_shape``). One run reports FID
(random Inception weights), the others say why FID was skipped.
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
from safetensors.numpy import save_file

from flowzoo import cli, data, metrics, nets, zoo
from flowzoo.zoo import apply_overrides, build_model, complete_config, jaxpr_flops, load_experiment

# per recipe: overrides that keep its structure (levels, scales, blocks, attention) at a
# fraction of its width, so that 3 steps compile and run in seconds
_UNET = [  # torchcfm's UNet at a quarter of its width, two levels, attention at 16x16, on
    # batches of 2 (its convolutions by im2col: XLA:CPU runs lax.conv inside the solvers'
    # loops an order of magnitude slower)
    "model.num_channels=32",
    "model.channel_mult=[1,2]",
    "model.num_res_blocks=1",
    "model.num_head_channels=16",
    "model.conv=im2col",
    "train.batch_size=2",
    "data.n_test=2",
]
REDUCED = {
    "glow_cifar10": ["model.depth=1", "model.hidden=8"],
    "realnvp_cifar10": ["model.hidden=8", "model.num_blocks=1"],
    # and a few fixed solver steps for the samples and the likelihood of a 3-step model
    "fm_cifar10": [*_UNET, "model.solver=euler", "model.num_steps=2",
                   "model.log_prob_solver=euler", "model.log_prob_steps=2"],
    # the same UNet at one level (attention at 32x32): fm_cifar10 runs its two levels
    "sde_cifar10": [*_UNET, "model.sample_steps=2", "model.log_prob_solver=euler",
                    "model.log_prob_steps=2", "model.channel_mult=[1]",
                    "model.attention_resolutions=[32]"],
}  # fmt: skip
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


def _one_blas_thread():
    """NumPy's BLAS on one thread: FID's two 2048x2048 float64 eigendecompositions took
    10x longer (15 s against 1.5 s) on OpenBLAS's two threads while the other pytest-xdist
    worker held the second of the machine's 2 cores."""
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency (dev extra)
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


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


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    """Random FID Inception weights (the real file is pytorch-fid's download)."""
    rng = np.random.default_rng(0)
    params = {
        k: (rng.uniform(0.5, 1.5, v) if "running_var" in k else 0.05 * rng.standard_normal(v))
        for k, v in nets.fid_inception_shapes().items()
    }
    path = tmp_path_factory.mktemp("fid") / "inception.safetensors"
    save_file({k: v.astype(np.float32) for k, v in params.items()}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_recipe_trains_three_steps_on_a_cifar_file(name, cifar, fid_weights, tmp_path, monkeypatch):
    """Every recipe trains; the Glow run reports FID against the training split (whose
    statistics are read from the cache here: the features of 40 images would cost an
    Inception compile at another batch size), the others say why FID was skipped."""
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(metrics.FID_WEIGHTS_ENV, raising=False)
    sets = _sets([*COMMON, *REDUCED[name], f"data.path={cifar}", "plot.fid_samples=2"])
    fid = ["--fid-weights", fid_weights] if name == "glow_cifar10" else []
    if fid:
        stats = data.fid_statistics_file("cifar10", cifar, fid_weights)
        stats.parent.mkdir(parents=True)
        feats = np.random.default_rng(1).standard_normal((8, 2048))
        mu, sigma = metrics.fid_statistics(feats)
        np.savez(stats, mu=mu, sigma=sigma, n=np.int64(8))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_one_blas_thread())
        if not fid:  # the one-line warning, before training
            stack.enter_context(pytest.warns(UserWarning, match="FID will be skipped"))
        rc, out, err = _run_cli("train", name, *sets, *fid, "--workdir", tmp_path, "--no-progress")
    assert rc == 0, err
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["steps"] == 3
    assert np.isfinite(summary["test_bpd"]) and 0 < summary["test_bpd"] < 20
    if fid:
        assert summary["fid_samples"] == 2 and summary["fid"] > 0
        assert summary["fid_reference"] == "cifar10 training split"
        # the trained run's FID afterwards: flowzoo eval, without the likelihood pass
        run_dir = tmp_path / name
        rc, out, err = _run_cli(
            "eval", run_dir, "--data", "none", *fid, "--fid-samples", "2", "--seed", "3"
        )
        assert rc == 0, err
        found = json.loads(out)
        assert found["fid_samples"] == 2 and "nll" not in found and "bpd" not in found
        direct = zoo.load_run(run_dir).fid(jax.random.key(3), 2, fid_weights)
        assert found["fid"] == pytest.approx(direct["fid"], rel=1e-6) and found["fid"] > 0
        # without weights: FID is skipped and says why; too few samples are refused
        rc, out, err = _run_cli("eval", run_dir, "--data", "none", "--fid-samples", "2")
        assert rc == 0, err
        assert json.loads(out)["fid"] is None and "fid-weights convert" in out
        rc, _, err = _run_cli("eval", run_dir, "--data", "none", *fid, "--fid-samples", "1")
        assert rc == 2 and "--fid-samples must be 0 or >= 2" in err
        missing = tmp_path / "no_such_weights.safetensors"
        rc, _, err = _run_cli("eval", run_dir, "--fid-weights", missing, "--fid-samples", "2")
        assert rc == 2 and f"FID weights file {missing} does not exist" in err
    else:
        assert summary["fid"] is None and "flowzoo fid-weights convert" in summary["fid_skipped"]
    info = json.loads((tmp_path / name / "run.json").read_text())
    assert info["event_shape"] == [32, 32, 3]


def _config(name: str, keys: list[str]) -> dict:
    return complete_config(apply_overrides(load_experiment(name), keys))


def _model(config: dict):
    """The recipe's model on 256-level 32x32x3 images, as ``flowzoo train`` builds it."""
    return build_model({**config, "model": {**config["model"], "data_levels": 256}}, (32, 32, 3))


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.slow
def test_dry_run_prints_the_parameters_init_creates_and_the_step_cost():
    """``--dry-run`` at reduced width: the parameter count is that of a real ``init`` on
    images, FLOPs and memory are positive, and no data file is read (the path is missing)."""
    keys = [*REDUCED["glow_cifar10"], *COMMON, "data.path=/nonexistent/cifar.tar.gz"]
    rc, out, err = _run_cli("train", "glow_cifar10", *_sets(keys), "--dry-run")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("parameters: ") and lines[1].startswith("step FLOPs: ")
    assert lines[2].startswith("peak memory: ")
    report = json.loads(out[out.index("{") :])
    assert lines[0] == f"parameters: {report['parameters']:,}"
    model = _model(_config("glow_cifar10", keys))
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)), jnp.float32)
    assert report["parameters"] == _count(model.init(jax.random.key(0), x))
    assert report["event_shape"] == [32, 32, 3] and report["batch_size"] == 8
    assert report["flops"] > 0 and report["peak_bytes"] >= report["temp_bytes"] > 0


def test_glow_cifar10_has_the_papers_size():
    """Counted from shapes only (no compute): Glow's CIFAR-10 model (3 levels x 32 steps x
    512 channels) has about 44M parameters (the sizes other papers quote for it). The UNet's
    count, 35,746,307 as torchcfm's, is tests/nets/test_adm_unet.py's."""
    config = _config("glow_cifar10", [])
    model = _model(config)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 32, 32, 3)))
    assert _count(shapes) == 44_297_764


def test_jaxpr_flops_counts_products_convolutions_and_scanned_layers():
    """Closed forms: a matmul 2MNK (batched: B times that), a convolution 2 x outputs x taps x in-channels, a scan
    of L layers L times its body (XLA's cost analysis counts a loop body once), and a
    gradient its forward product plus the weight gradient's."""
    a, b = jnp.ones((3, 4)), jnp.ones((4, 5))
    assert jaxpr_flops(jax.make_jaxpr(jnp.matmul)(a, b).jaxpr) == 2 * 3 * 4 * 5
    q, k = jnp.ones((2, 6, 4)), jnp.ones((2, 7, 4))  # attention's products: batch 2, 6x7 of 4
    scores = jax.make_jaxpr(lambda q, k: jnp.einsum("bqd,bkd->bqk", q, k))(q, k)
    assert jaxpr_flops(scores.jaxpr) == 2 * 2 * 6 * 7 * 4

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 16))
    assert jaxpr_flops(jax.make_jaxpr(conv)(x, w).jaxpr) == 2 * (2 * 8 * 8 * 16) * (3 * 3 * 3)

    def layers(h, ws):
        return jax.lax.scan(lambda c, wi: (c @ wi, None), h, ws)[0]

    assert jaxpr_flops(jax.make_jaxpr(layers)(a[:2], jnp.ones((7, 4, 4))).jaxpr) == 7 * 64
    grad = jax.make_jaxpr(jax.grad(lambda w_, x_: (x_ @ w_).sum()))(b, a)
    assert jaxpr_flops(grad.jaxpr) == 2 * (2 * 3 * 4 * 5)
