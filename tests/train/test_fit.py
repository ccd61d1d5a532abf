"""flowzoo.train.fit: quality on two moons, resume == uninterrupted, NaN stop, eval, Ctrl-C.

Everything but the quality test trains a 4-layer RealNVP (one hidden layer of 16 units)
and compares against one uninterrupted 40-step reference run (module fixture, checkpoints
kept at every 5th step), since each ``fit`` call compiles its scan anew.

Resumed runs are compared with the reference for *exact* equality: on CPU the scanned
step compiles to the same arithmetic whatever the scan length, so where the scan
boundaries fall (``steps_per_call`` dividing the resume point or not, chunks of 5 or 10)
changes no bit.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowzoo
from flowzoo import checkpoint as ckpt
from flowzoo import data as fzdata
from flowzoo import train, zoo
from flowzoo.flows import nll_loss

TOTAL = 40  # steps of the reference run


def _moons(key, n_train, n_test, noise=0.05):
    """Standardised two moons (statistics of the training split only)."""
    ktr, kte = jax.random.split(key)
    x_train = fzdata.two_moons(ktr, n_train, noise=noise)
    x_test = fzdata.two_moons(kte, n_test, noise=noise)
    s = fzdata.fit_standardizer(x_train)
    return fzdata.standardize(s, x_train), fzdata.standardize(s, x_test)


def _opt():
    return optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, TOTAL, 1e-4))


@pytest.fixture(scope="module")
def tiny():
    """``(model, params, batch_fn, x_test)``: a tiny RealNVP on 512 standardised moons."""
    kd, ki = jax.random.split(jax.random.key(1))
    x_train, x_test = _moons(kd, 512, 256)
    model = flowzoo.realnvp(2, 4, (16,))
    params = model.init(ki, x_train[:64])
    return model, params, fzdata.array_batches(x_train, 64), x_test


def _fit(tiny, **kwargs):
    model, params, batch_fn, _ = tiny
    kwargs = {
        "key": jax.random.key(3),
        "num_steps": TOTAL,
        "steps_per_call": 10,
        "progress": False,
        "params": params,
        "batch_fn": batch_fn,
        **kwargs,
    }
    return train.fit(nll_loss(model), _opt(), **kwargs)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """The uninterrupted run: ``(FitResult, workdir)``; checkpoints at 5, 10, ..., 40."""
    workdir = tmp_path_factory.mktemp("reference")
    result = _fit(tiny, checkpointing=train.Checkpointing(workdir, every=5, keep=None))
    assert ckpt.all_steps(workdir / "checkpoints") == list(range(5, TOTAL + 1, 5))
    return result, workdir


def _reference_checkpoint(tiny, reference, step):
    target = train.init_train_state(tiny[1], _opt())
    state, restored = ckpt.restore(reference[1] / "checkpoints", target, step)
    assert restored == step
    return state


def _records(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------- quality

QUALITY_STEPS = 2000  # the default config's own step count
QUALITY_NLL = 1.3  # nats per example, standardised units


@pytest.mark.slow
@pytest.mark.full_opt
def test_two_moons_reaches_target_nll():
    """The default recipe (RealNVP 12 x 2x64 GELU, Adam 1e-3 with 100 warm-up steps and
    cosine decay, clip 1, batch 256, 20000 training points): held-out NLL < 1.3 nats on
    standardised two moons (noise 0.05) after ``QUALITY_STEPS`` steps.

    Run in a child at XLA's default optimisation (``full_opt``), as users train: the suite's
    fast-compile flags make this 2,000-step loop run twice as long (35 s against 16 s).

    Measured (2-core CPU): this test 1.166 nats, ~17 s of CPU. With ``array_batches``
    and other seeds: 2000 steps 1.16-1.23 (seeds 0, 2-6); 1500 steps 1.18-1.51 and 1200
    steps 1.19-1.55 (seeds 0-4): loss spikes at the peak learning rate (test NLL up to
    1e7 around step 400-600) that 1200-1500 steps do not always recover from.
    """
    config = zoo.default_config()
    d, m, t = config["data"], config["model"], config["train"]
    assert t["steps"] == QUALITY_STEPS
    kd, ki, kf, kb = jax.random.split(jax.random.key(config["seed"]), 4)
    x_train, x_test = _moons(kd, d["n_train"], d["n_test"], d["noise"])
    batch_fn = fzdata.array_batches(x_train, t["batch_size"])
    model = flowzoo.realnvp(
        2,
        m["num_layers"],
        tuple(m["hidden"]),
        activation=m["activation"],
        scale_bound=m["scale_bound"],
    )
    params = model.init(ki, x_train[:1024])
    test_nll = jax.jit(lambda p: -jnp.mean(model.log_prob(p, x_test)))
    initial = float(test_nll(params))
    t0 = time.perf_counter()
    result = train.fit(
        nll_loss(model),
        zoo.build_optimizer(config),
        params,
        batch_fn,
        key=kf,
        num_steps=QUALITY_STEPS,
        steps_per_call=QUALITY_STEPS,
        progress=False,
    )
    elapsed = time.perf_counter() - t0
    nll = float(test_nll(result.state.params))
    print(f"two moons: test NLL {initial:.3f} -> {nll:.4f} nats in {elapsed:.1f} s")
    assert int(result.state.step) == QUALITY_STEPS
    assert math.isfinite(nll)
    assert nll < QUALITY_NLL, f"held-out NLL {nll:.4f} >= {QUALITY_NLL}"


# --------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_equals_uninterrupted(tiny, reference, tmp_path):
    """fit(N) into a workdir, then fit(2N) on it again (resumes) == fit(2N), bit for bit.

    Resumed twice from the same step-20 checkpoint: with ``steps_per_call=10`` and with
    ``steps_per_call=8``, which does not divide 20 (scans of 4, 8, 8 steps).
    """
    ref, ref_dir = reference
    first = _fit(tiny, num_steps=TOTAL // 2, checkpointing=train.Checkpointing(tmp_path / "a"))
    assert int(first.state.step) == TOTAL // 2
    assert ckpt.all_steps(tmp_path / "a" / "checkpoints") == [20]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    # different initial params: they must be ignored in favour of the checkpoint
    other = tiny[0].init(jax.random.key(99), jnp.ones((4, 2)))

    resumed = _fit(tiny, params=other, checkpointing=train.Checkpointing(tmp_path / "a"))
    _assert_trees_equal(resumed.state, ref.state)  # step, params and opt_state
    assert ckpt.latest_step(tmp_path / "a" / "checkpoints") == TOTAL
    records = _records(tmp_path / "a")
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    for r in records:
        assert {"step", "loss", "grad_norm", "samples_per_sec"} <= r.keys()
    # the resumed run logged only its own chunks (no duplicates of steps 1..20)
    assert [r["step"] for r in resumed.history] == [30, 40]
    # the reference logged chunks of 5 (it checkpoints every 5): means of pairs agree
    ref_loss = {r["step"]: r["loss"] for r in _records(ref_dir)}
    for r in records:
        pair = (ref_loss[r["step"] - 5] + ref_loss[r["step"]]) / 2
        assert r["loss"] == pytest.approx(pair, rel=1e-6)

    resumed8 = _fit(
        tiny, params=other, checkpointing=train.Checkpointing(tmp_path / "b"), steps_per_call=8
    )
    _assert_trees_equal(resumed8.state, ref.state)
    assert [r["step"] for r in _records(tmp_path / "b")] == [10, 20, 24, 32, 40]


def test_resume_with_build_optimizer(tmp_path):
    """Resume with the optimizer every ``flowzoo train`` run uses: build_optimizer's
    ``chain(clip_by_global_norm, adam)``, whose state starts with an empty ``EmptyState()``.
    The checkpoint must restore (no "corrupt" warning) and the result equal the
    uninterrupted run exactly."""
    config = zoo.default_config()
    config["train"].update(steps=10, warmup_steps=2, grad_clip=1.0)
    opt = zoo.build_optimizer(config)

    def loss_fn(params, key, batch):
        return 0.5 * jnp.sum((params["w"] - batch) ** 2), {}

    kwargs = dict(
        key=jax.random.key(0),
        batch_fn=lambda key, step: jnp.full(3, 3.0) + jax.random.normal(key, (3,)),
        steps_per_call=5,
        progress=False,
    )
    params = {"w": jnp.zeros(3)}
    full = train.fit(loss_fn, opt, params, num_steps=10, **kwargs)
    train.fit(
        loss_fn, opt, params, num_steps=5, checkpointing=train.Checkpointing(tmp_path), **kwargs
    )
    with warnings.catch_warnings():
        # a checkpoint skipped as corrupt (a UserWarning from restore) fails the test
        warnings.filterwarnings("error", message=".*corrupt", category=UserWarning)
        resumed = train.fit(
            loss_fn,
            opt,
            params,
            num_steps=10,
            checkpointing=train.Checkpointing(tmp_path),
            **kwargs,
        )
    _assert_trees_equal(resumed.state, full.state)
    assert [r["step"] for r in _records(tmp_path)] == [5, 10]


# --------------------------------------------------------------------------- NaN


def test_nan_loss_stops_with_step_and_metric(tiny, reference, tmp_path):
    """The data turn NaN at step 7: NonFiniteError names step 7 and ``loss``; the newest
    checkpoint (step 5) is the last good state, equal to the reference's step 5."""
    good_batches = tiny[2]

    def batch_fn(key, step):
        return jnp.where(step >= 7, jnp.nan, good_batches(key, step))

    with pytest.raises(train.NonFiniteError) as info:
        _fit(tiny, batch_fn=batch_fn, checkpointing=train.Checkpointing(tmp_path, every=5))
    err = info.value
    assert err.step == 7 and err.metric == "loss" and math.isnan(err.value)
    assert "step 7" in str(err) and "loss" in str(err)
    assert "checkpoint (step 5) is intact" in str(err)
    assert ckpt.all_steps(tmp_path / "checkpoints") == [5]
    assert [r["step"] for r in _records(tmp_path)] == [5]  # the NaN chunk is not logged

    target = train.init_train_state(tiny[1], _opt())
    restored, step = ckpt.restore(tmp_path / "checkpoints", target)
    assert step == 5 and int(restored.step) == 5
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(restored))
    # its batch_fn makes this run another program than the reference's: equal to float32
    # rounding under the suite's emitters (tests/conftest.py; bit-exact resume is
    # tests/train/test_faults.py's kill -9 test)
    want = jax.tree.leaves(_reference_checkpoint(tiny, reference, 5))
    for x, y in zip(jax.tree.leaves(restored), want, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_nan_gradient_names_grad_norm(tmp_path):
    """A finite loss whose gradient is NaN at step 7 is caught too (metric ``grad_norm``);
    without checkpoint_every nothing was saved, and the message says so."""

    def loss_fn(params, key, batch):  # d/dw sqrt(|w * 0|) = inf * 0 = NaN
        w = params["w"]
        return jnp.sum(w**2) + jnp.sum(jnp.sqrt(jnp.abs(w * batch))), {}

    def batch_fn(key, step):
        return jnp.where(step == 7, 0.0, jnp.ones(3))

    with pytest.raises(train.NonFiniteError) as info:
        train.fit(
            loss_fn,
            optax.sgd(0.01),
            {"w": jnp.ones(3)},
            batch_fn,
            key=jax.random.key(0),
            num_steps=20,
            steps_per_call=10,
            checkpointing=train.Checkpointing(tmp_path),
            progress=False,
        )
    err = info.value
    assert err.step == 7 and err.metric == "grad_norm"
    assert "step 7" in str(err) and "grad_norm" in str(err)
    assert "no checkpoint was written" in str(err)
    assert ckpt.all_steps(tmp_path / "checkpoints") == []


def test_infinite_gradient_norm_stops_training(tmp_path):
    """Every gradient entry finite (1e20) but the global norm overflows float32 to inf: the
    step is not applied, training stops naming ``grad_norm``, the checkpoint of step 5
    stays. (A negative learning rate drove a run there and it reported success.)"""

    def loss_fn(params, key, batch):  # d/dw = 1e20 * batch: finite, squares overflow
        return jnp.sum(params["w"] * batch), {}

    def batch_fn(key, step):
        return jnp.where(step >= 7, 1e20, 1.0) * jnp.ones(4)

    with pytest.raises(train.NonFiniteError) as info:
        train.fit(
            loss_fn,
            optax.sgd(1e-3),
            {"w": jnp.ones(4)},
            batch_fn,
            key=jax.random.key(0),
            num_steps=20,
            steps_per_call=5,
            checkpointing=train.Checkpointing(tmp_path, every=5),
            progress=False,
        )
    err = info.value
    assert err.step == 7 and err.metric == "grad_norm" and err.value == math.inf
    assert "step 7" in str(err) and "checkpoint (step 5) is intact" in str(err)
    assert ckpt.all_steps(tmp_path / "checkpoints") == [5]


# --------------------------------------------------------------------------- eval + metrics


def test_eval_schedule_and_metrics_file(tiny, reference, tmp_path):
    """eval_fn runs at multiples of eval_every and once at the end (40, not a multiple of
    15); metrics.jsonl holds one JSON object per line, equal to the returned history."""
    model, _, _, x_test = tiny
    test_nll = jax.jit(lambda p: -jnp.mean(model.log_prob(p, x_test)))
    calls = []

    def eval_fn(state):
        calls.append(int(state.step))
        return {"nll": test_nll(state.params), "const": 1}

    result = _fit(
        tiny,
        evaluation=train.Evaluation(eval_fn, every=15),
        steps_per_call=5,
        checkpointing=train.Checkpointing(tmp_path),
    )
    assert calls == [15, 30, 40]
    _assert_trees_equal(result.state, reference[0].state)  # eval does not perturb training

    records = _records(tmp_path)
    assert records == json.loads(json.dumps(result.history))
    train_records = [r for r in records if "loss" in r]
    eval_records = [r for r in records if "eval/nll" in r]
    assert [r["step"] for r in train_records] == list(range(5, TOTAL + 1, 5))
    for r in train_records:
        assert math.isfinite(r["loss"]) and r["samples_per_sec"] > 0
    assert [r["step"] for r in eval_records] == [15, 30, 40]
    assert all(r["eval/const"] == 1.0 and r["eval_seconds"] >= 0 for r in eval_records)
    assert eval_records[-1]["eval/nll"] == pytest.approx(
        float(test_nll(result.state.params)), abs=1e-6
    )
    # without checkpoint_every: only the end is checkpointed
    assert ckpt.all_steps(tmp_path / "checkpoints") == [TOTAL]


# --------------------------------------------------------------------------- Ctrl-C


def test_keyboard_interrupt_in_eval_resumes(tiny, reference, tmp_path):
    """Ctrl-C inside eval_fn at step 20: checkpoint 20 is saved; the resumed run evaluates
    only at the end (once) and equals the reference."""
    calls = []

    def interrupting(state):
        raise KeyboardInterrupt

    def eval_fn(state):
        calls.append(int(state.step))
        return {}

    with pytest.raises(KeyboardInterrupt):
        _fit(
            tiny,
            evaluation=train.Evaluation(interrupting, 20),
            checkpointing=train.Checkpointing(tmp_path),
        )
    assert ckpt.all_steps(tmp_path / "checkpoints") == [20]
    resumed = _fit(
        tiny, evaluation=train.Evaluation(eval_fn, 20), checkpointing=train.Checkpointing(tmp_path)
    )
    assert calls == [TOTAL]
    _assert_trees_equal(resumed.state, reference[0].state)


def test_keyboard_interrupt_in_final_eval_saves_checkpoint(tiny, reference, tmp_path):
    """Ctrl-C in the end-of-run eval: the final state is still checkpointed."""

    def interrupting(state):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(
            tiny,
            evaluation=train.Evaluation(interrupting),
            checkpointing=train.Checkpointing(tmp_path),
        )
    assert ckpt.all_steps(tmp_path / "checkpoints") == [TOTAL]
    target = train.init_train_state(tiny[1], _opt())
    restored, _ = ckpt.restore(tmp_path / "checkpoints", target)
    _assert_trees_equal(restored, reference[0].state)


def test_keyboard_interrupt_during_training_saves_checkpoint(
    tiny, reference, tmp_path, monkeypatch
):
    """Ctrl-C while the third compiled chunk runs: the state after two chunks is saved
    (equal to the reference's step 20) and the run resumes from it."""
    from flowzoo.train import _fit as fit_module

    real = fit_module.make_multi_step

    def interrupted_multi_step(*args, **kwargs):
        run, calls = real(*args, **kwargs), []

        def wrapped(*a):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return run(*a)

        return wrapped

    monkeypatch.setattr(fit_module, "make_multi_step", interrupted_multi_step)
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny, checkpointing=train.Checkpointing(tmp_path))
    monkeypatch.undo()
    assert ckpt.all_steps(tmp_path / "checkpoints") == [20]
    assert [r["step"] for r in _records(tmp_path)] == [10, 20]
    target = train.init_train_state(tiny[1], _opt())
    restored, _ = ckpt.restore(tmp_path / "checkpoints", target)
    _assert_trees_equal(restored, _reference_checkpoint(tiny, reference, 20))


# --------------------------------------------------------------------------- deprecated keywords


def test_deprecated_keywords_warn_and_train_the_same(tiny, reference, tmp_path):
    """fit's separate keywords of before the option records still work, with a
    DeprecationWarning naming each one's new place, and train the reference run bit for
    bit: same state, same records and checkpoints, the evaluations and metadata they ask for."""
    calls = []

    def eval_fn(state):
        calls.append(int(state.step))
        return {}

    kwargs = dict(
        workdir=tmp_path,
        checkpoint_every=5,
        keep_checkpoints=None,
        metadata={"name": "old"},
        eval_fn=eval_fn,
        eval_every=10,
    )
    with pytest.warns(DeprecationWarning) as record:
        old = _fit(tiny, **kwargs)
    message = str(record[0].message)
    assert len(record) == 1 and record[0].filename == __file__
    for name in kwargs:
        assert f"{name}=" in message
    assert "checkpointing=Checkpointing(every=...)" in message
    _assert_trees_equal(old.state, reference[0].state)
    assert calls == [10, 20, 30, 40]
    assert ckpt.all_steps(tmp_path / "checkpoints") == list(range(5, TOTAL + 1, 5))
    assert ckpt.restore_metadata(tmp_path / "checkpoints") == {"name": "old"}
    losses = [(r["step"], r["loss"]) for r in old.history if "loss" in r]
    assert losses == [(r["step"], r["loss"]) for r in reference[0].history]

    deprecated = pytest.warns(DeprecationWarning, match=r"local_batches= -> parallel=DataParallel")
    with deprecated, pytest.raises(ValueError, match="needs a mesh"):
        _fit(tiny, local_batches=True)
    deprecated = pytest.warns(DeprecationWarning, match=r"mesh= -> parallel=DataParallel")
    with deprecated, pytest.raises(ValueError, match="mesh must be"):
        _fit(tiny, mesh="everywhere")
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="not both"):
        _fit(tiny, workdir=tmp_path, checkpointing=train.Checkpointing(tmp_path))
    with pytest.raises(TypeError, match="unexpected keyword argument 'workdri'"):
        _fit(tiny, workdri=tmp_path)


def test_build_optimizer_weight_decay_is_adamw():
    """``train.weight_decay`` makes the optimiser AdamW. Closed form of the first update at a
    constant learning rate ``lr``: Adam's bias-corrected step is ``sign(g)`` (``m = g``,
    ``v = g^2``, up to ``eps``), and the decoupled decay adds ``wd * p``:
    ``delta = -lr (g / (|g| + eps) + wd p)``; with a zero gradient only the decay acts."""
    config = zoo.default_config()
    config["train"].update(
        steps=10, warmup_steps=0, final_lr_fraction=1.0, grad_clip=0.0, lr=0.01, weight_decay=0.5
    )
    zoo.validate_config(config)
    opt = zoo.build_optimizer(config)
    p = jnp.array([1.0, -2.0, 3.0])
    g = jnp.array([0.3, 0.0, -4.0])
    updates, _ = opt.update(g, opt.init(p), p)
    expected = -0.01 * (g / (jnp.abs(g) + 1e-8) + 0.5 * p)
    np.testing.assert_allclose(updates, expected, rtol=1e-6, atol=1e-7)  # float32 rounding
    config["train"]["weight_decay"] = -1.0
    with pytest.raises(zoo.ConfigError, match="weight_decay"):
        zoo.validate_config(config)
