"""flowzoo.checkpoint: round trips, retention, corruption fallback, atomicity of saves."""

import os
import pathlib
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowzoo import checkpoint as ckpt

TMP = ".orbax-checkpoint-tmp"


class State(NamedTuple):
    step: Any
    params: Any
    opt_state: Any


def make_state(seed=0, width=8, step=0):
    """A TrainState-like NamedTuple with an adam state, plus PRNG keys (raw and typed).

    Leaves are filled from numpy (no XLA compilation, so the tests stay fast); the
    structure, including optax's NamedTuple states, comes from ``jax.eval_shape``.
    """
    rng = np.random.default_rng(seed)
    opt = optax.adam(1e-2)

    def fill(leaf):
        if np.issubdtype(leaf.dtype, np.floating):
            return jnp.asarray(rng.standard_normal(leaf.shape).astype(leaf.dtype))
        return jnp.asarray(rng.integers(0, 2**31 - 1, leaf.shape).astype(leaf.dtype))

    shapes = {"dense": {"w": (16, width), "b": (width,)}, "scale": (width,)}
    params = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, jnp.float32),
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )
    abstract = State(jax.ShapeDtypeStruct((), jnp.int32), params, jax.eval_shape(opt.init, params))
    state = jax.tree.map(fill, abstract)._replace(step=jnp.asarray(step, jnp.int32))
    key_data = rng.integers(0, 2**32 - 1, (2, 2), dtype=np.uint32)
    return {
        "state": state,
        "key": jnp.asarray(key_data[0]),
        "typed_key": jax.random.wrap_key_data(key_data[1]),
    }


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def files_under(path):
    return [p for p in pathlib.Path(path).rglob("*") if p.is_file()]


def truncate_arrays(step_dir):
    for f in files_under(step_dir / "state"):
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size // 3)


def delete_array_data(step_dir):
    for f in files_under(step_dir / "state"):
        if f.parent.name == "d":  # the OCDBT data/b-tree files
            f.unlink()


def garbage_everywhere(step_dir):
    for f in files_under(step_dir):
        f.write_bytes(b"\x00not a checkpoint{" * 7)


CORRUPTIONS = {
    "truncate": truncate_arrays,
    "delete": delete_array_data,
    "garbage": garbage_everywhere,
}


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "runs" / "x" / "checkpoints"


def test_round_trip_bit_for_bit(run_dir):
    tree = make_state(1, step=300)
    ckpt.save(run_dir, 300, tree)
    fresh = make_state(2)  # same structure, other values
    for target in (fresh, jax.eval_shape(lambda: fresh)):
        restored, step = ckpt.restore(run_dir, target)
        assert step == 300
        assert_bitwise_equal(restored, tree)
        assert type(restored["state"]) is State
        assert isinstance(restored["state"].opt_state[0], optax.ScaleByAdamState)
        assert isinstance(restored["state"].opt_state[1], optax.EmptyState)


def test_scalar_and_numpy_leaves_keep_their_types(run_dir):
    tree = {"count": np.int32(7), "lr": 0.25, "n": 3, "flag": True, "x": np.arange(3.0)}
    ckpt.save(run_dir, 1, tree)
    target = {"count": np.int32(0), "lr": 0.0, "n": 0, "flag": False, "x": np.zeros(3)}
    restored, _ = ckpt.restore(run_dir, target)
    assert restored == {**tree, "x": restored["x"]}
    assert {k: type(v) for k, v in restored.items()} == {k: type(v) for k, v in tree.items()}
    np.testing.assert_array_equal(restored["x"], tree["x"])


def test_keep_latest_step_and_all_steps(run_dir):
    assert ckpt.all_steps(run_dir) == [] and ckpt.latest_step(run_dir) is None
    for s in (10, 20, 30, 40):
        ckpt.save(run_dir, s, make_state(s, step=s), keep=2)
    assert ckpt.all_steps(run_dir) == [30, 40]
    assert ckpt.latest_step(run_dir) == 40
    assert sorted(os.listdir(run_dir)) == ["30", "40"]
    restored, step = ckpt.restore(run_dir, make_state(), step=30)
    assert step == 30 and int(restored["state"].step) == 30


def test_save_same_step_twice_keeps_first(run_dir):
    first = make_state(0, step=5)
    ckpt.save(run_dir, 5, first, metadata={"v": 1})
    ckpt.save(run_dir, 5, make_state(9, step=5), metadata={"v": 2})
    assert ckpt.all_steps(run_dir) == [5]
    assert_bitwise_equal(ckpt.restore(run_dir, first)[0], first)
    assert ckpt.restore_metadata(run_dir) == {"v": 1}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_corrupt_newest_falls_back_to_previous(run_dir, corrupt):
    good = make_state(0, step=100)
    ckpt.save(run_dir, 100, good, metadata={"step": 100})
    ckpt.save(run_dir, 200, make_state(2, step=200))
    CORRUPTIONS[corrupt](run_dir / "200")
    assert ckpt.latest_step(run_dir) == 200  # still listed: it is a finished directory
    with pytest.warns(UserWarning, match=r"step 200 .* corrupt/unreadable"):
        restored, step = ckpt.restore(run_dir, make_state())
    assert step == 100
    assert_bitwise_equal(restored, good)
    with pytest.raises(ckpt.CheckpointError, match="step 200 .* corrupt/unreadable"):
        ckpt.restore(run_dir, make_state(), step=200)  # an explicit step never falls back


def test_all_corrupt_raises(run_dir):
    for s in (1, 2):
        ckpt.save(run_dir, s, make_state(0, step=s), metadata={"s": s})
    truncate_arrays(run_dir / "1")
    garbage_everywhere(run_dir / "2")
    with (
        pytest.warns(UserWarning) as record,
        pytest.raises(ckpt.CheckpointError, match=r"no readable checkpoint .*\[2, 1\]"),
    ):
        ckpt.restore(run_dir, make_state())
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "step 2" in messages[0] and "trying step 1" in messages[0]
    assert "step 1" in messages[1] and "no older checkpoint left" in messages[1]
    assert ckpt.restore_metadata(run_dir, step=1) == {"s": 1}  # its JSON is intact
    with pytest.raises(ckpt.CheckpointError, match="step 2 .* corrupt/unreadable"):
        ckpt.restore_metadata(run_dir, step=2)


def test_missing_or_empty_directory(run_dir):
    for fn in (
        lambda: ckpt.restore(run_dir, make_state()),
        lambda: ckpt.restore_metadata(run_dir),
    ):
        with pytest.raises(ckpt.CheckpointError, match="no checkpoint in .*train first"):
            fn()
    assert not run_dir.exists()  # reading never creates the directory
    run_dir.mkdir(parents=True)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint in .*`flowzoo train`"):
        ckpt.restore(run_dir, make_state())
    ckpt.save(run_dir, 1, make_state())
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint for step 7 .*\[1\]"):
        ckpt.restore(run_dir, make_state(), step=7)


def test_mismatched_target_raises_without_fallback(run_dir):
    ckpt.save(run_dir, 1, make_state(0, width=8))
    ckpt.save(run_dir, 2, make_state(0, width=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mismatch is not corruption: no fallback warning
        with pytest.raises(ckpt.CheckpointError, match="step 2 .*shapes differ"):
            ckpt.restore(run_dir, make_state(0, width=9))
        with pytest.raises(ckpt.CheckpointError, match="tree structures differ"):
            ckpt.restore(run_dir, make_state()["state"])


def test_metadata_round_trip(run_dir):
    meta = {"model": "realnvp", "config": {"layers": 4, "hidden": [64, 64]}, "lr": 1e-3}
    ckpt.save(run_dir, 1, make_state(), metadata=meta)
    ckpt.save(run_dir, 2, make_state())
    assert ckpt.restore_metadata(run_dir, step=1) == meta
    assert ckpt.restore_metadata(run_dir) == {}
    with pytest.raises(TypeError, match="JSON"):
        ckpt.save(run_dir, 3, make_state(), metadata={"bad": object()})
    assert ckpt.all_steps(run_dir) == [1, 2]


@pytest.mark.parametrize("where", ["item", "step"])
def test_interrupted_save_keeps_previous(run_dir, monkeypatch, where):
    """Kill a save at one of orbax's commit renames: the previous checkpoint survives."""
    good = make_state(0, step=1)
    ckpt.save(run_dir, 1, good, keep=1)
    rename = os.rename

    def interrupted(src, dst, *args, **kwargs):
        src = pathlib.Path(src)
        final_commit = src.parent == run_dir and src.name.endswith(TMP)
        if src.name.endswith(TMP) and (final_commit == (where == "step")):
            raise KeyboardInterrupt  # like a kill: nothing after this point runs
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(run_dir, 2, make_state(2, step=2), keep=1)
    monkeypatch.undo()
    assert sorted(os.listdir(run_dir)) == ["1", "2" + TMP]  # keep=1 did not delete step 1
    assert ckpt.all_steps(run_dir) == [1] and ckpt.latest_step(run_dir) == 1
    restored, step = ckpt.restore(run_dir, make_state())
    assert step == 1
    assert_bitwise_equal(restored, good)
    ckpt.save(run_dir, 2, make_state(0, step=2), keep=1)  # the retry cleans up
    assert sorted(os.listdir(run_dir)) == ["2"]


def test_leftover_tmp_directory_is_ignored(run_dir):
    good = make_state(0, step=1)
    ckpt.save(run_dir, 1, good)
    junk = run_dir / f"9{TMP}" / "state"
    junk.mkdir(parents=True)
    (junk / "_METADATA").write_text("{half a file")
    assert ckpt.all_steps(run_dir) == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored, step = ckpt.restore(run_dir, make_state())
    assert step == 1
    assert_bitwise_equal(restored, good)
    ckpt.save(run_dir, 2, good)  # the next save removes the leftover
    assert sorted(os.listdir(run_dir)) == ["1", "2"]


def test_empty_subtrees_before_arrays_round_trip(tmp_path):
    """optax.chain(clip_by_global_norm, adam) puts an empty state before adam's arrays."""

    from flowzoo.train import init_train_state

    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    state = init_train_state({"w": jnp.arange(3.0), "empty": ()}, opt)
    ckpt.save(tmp_path, 1, state)
    restored, step = ckpt.restore(tmp_path, init_train_state({"w": jnp.zeros(3), "empty": ()}, opt))
    assert step == 1
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    np.testing.assert_array_equal(restored.params["w"], state.params["w"])


def test_tuples_of_per_layer_subtrees_are_stacked_into_the_target(tmp_path):
    """A checkpoint holding a tuple of per-layer params (and optimizer moments) where the
    target stacks them along a leading axis restores into the target's layout, layer i at
    index i, with the target's dtypes; typed keys and empty subtrees come along. A tuple
    of the wrong length still does not fit."""
    from flowzoo.train import init_train_state

    def layer(i):  # distinct values per layer, so that a wrong order shows
        return {"w": jnp.full((2, 3), float(i)), "b": jnp.arange(3.0) + 10 * i}

    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    per_layer = {"stack": tuple(layer(i) for i in range(4)), "head": jnp.ones(5), "empty": ()}
    state = init_train_state(per_layer, opt, ema=True)
    moments = jax.tree.map(lambda a: a + 1.0, state.params)  # per-layer values too
    state = state._replace(
        step=jnp.int32(9),
        opt_state=(
            state.opt_state[0],
            (state.opt_state[1][0]._replace(mu=moments), state.opt_state[1][1]),
        ),
    )
    ckpt.save(tmp_path, 9, {"state": state, "key": jax.random.key(3)})

    stacked = {**per_layer, "stack": jax.tree.map(lambda *a: jnp.stack(a), *per_layer["stack"])}
    target = {"state": init_train_state(stacked, opt, ema=True), "key": jax.random.key(0)}
    target = jax.tree.map(jnp.zeros_like, target)
    restored, step = ckpt.restore(tmp_path, target)
    assert step == 9
    assert jax.tree.structure(restored) == jax.tree.structure(target)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
    got = restored["state"]
    np.testing.assert_array_equal(got.params["stack"]["w"][:, 0, 0], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(got.ema_params["stack"]["b"][:, 1], [1.0, 11.0, 21.0, 31.0])
    np.testing.assert_array_equal(
        got.opt_state[1][0].mu["stack"]["b"][:, 0], [1.0, 11.0, 21.0, 31.0]
    )
    np.testing.assert_array_equal(got.params["head"], np.ones(5))
    assert int(got.step) == 9
    np.testing.assert_array_equal(
        jax.random.key_data(restored["key"]), jax.random.key_data(jax.random.key(3))
    )

    three = {**per_layer, "stack": jax.tree.map(lambda *a: jnp.stack(a), *per_layer["stack"][:3])}
    with pytest.raises(ckpt.CheckpointError, match="does not fit the target"):
        ckpt.restore(
            tmp_path, {"state": init_train_state(three, opt, ema=True), "key": target["key"]}
        )


def test_a_stack_of_chains_is_stacked_along_the_outer_tuple(tmp_path):
    """Two blocks of two same-shape entries each (an 8-coupling RealNVP has four blocks; a
    4-coupling one at dim 2 has this shape) saved as a tuple of blocks: the layer axis is
    the outer tuple's (entry j of the target stacks entry j of every block), never the
    transpose, which fits the shapes as well."""
    blocks = tuple(
        tuple({"w": jnp.full((3,), 10.0 * layer + entry)} for entry in range(2))
        for layer in range(2)
    )
    ckpt.save(tmp_path, 1, {"bijector": blocks})
    target = {"bijector": tuple({"w": jnp.zeros((2, 3))} for _ in range(2))}
    restored, _ = ckpt.restore(tmp_path, target)
    np.testing.assert_array_equal(restored["bijector"][0]["w"][:, 0], [0.0, 10.0])
    np.testing.assert_array_equal(restored["bijector"][1]["w"][:, 0], [1.0, 11.0])
