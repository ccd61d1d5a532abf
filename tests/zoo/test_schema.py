"""The config schema (flowzoo.zoo._schema): every key of every experiment is described,
valid values pass, and wrong types or out-of-range values fail before any work, with an
error that names the key. Property-based tests (hypothesis) push random ``--set``
overrides through the validator and the CLI entry point: never a traceback, never a zero
exit on invalid input."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowzoo.cli import main
from flowzoo.zoo import (
    ConfigError,
    apply_overrides,
    available_experiments,
    load_experiment,
    schema_of,
    validate_config,
)

EXPERIMENTS = available_experiments()


def _leaves(config: dict):
    """``(dotted key, value)`` of every config key; dict-valued keyword arguments
    (``model.options``, ``model.sde_kwargs``) are leaves."""
    for section, value in config.items():
        if isinstance(value, dict):
            yield from ((f"{section}.{k}", v) for k, v in value.items())
        else:
            yield section, value


def _all_keys():
    return [(name, k, v) for name in EXPERIMENTS for k, v in _leaves(load_experiment(name))]


ALL_KEYS = _all_keys()


def _set(config: dict, key: str, value) -> dict:
    config = copy.deepcopy(config)
    node = config
    *path, leaf = key.split(".")
    for part in path:
        node = node[part]
    node[leaf] = value
    return config


def _bad_values(spec) -> list:
    """Values the spec must refuse: a wrong type, and values just outside its range."""
    kind = spec.kind
    bad: list = [object()] if kind in ("dict", "section") else [{"a": 1}]
    if kind in ("int", "width"):
        bad += ["7", 1.5, True]
    if kind == "float":
        bad += ["0.5", math.nan, math.inf, True]
    if kind == "bool":
        bad += [1, "yes"]
    if kind in ("ints", "floats"):
        bad += [3, ["a"]]
        if spec.length:
            bad.append([1] * (spec.length[0] - 1) if spec.length[0] > 0 else None)
    if kind == "str":
        bad += [3]
        if spec.choices:
            bad.append("not-a-choice")
    if spec.lo is not None and kind in ("int", "float", "width", "ints", "floats"):
        below = spec.lo if spec.lo_open else spec.lo - (1 if kind != "float" else 1e-3)
        bad.append([below] * (spec.length or (1, 1))[0] if kind in ("ints", "floats") else below)
    if spec.hi is not None and kind in ("int", "float", "width", "ints", "floats"):
        above = spec.hi if spec.hi_open else spec.hi + (1 if kind != "float" else 1e-3)
        bad.append([above] * (spec.length or (1, 1))[0] if kind in ("ints", "floats") else above)
    return [b for b in bad if b is not None]


def test_every_experiment_validates():
    assert len(EXPERIMENTS) >= 14
    for name in EXPERIMENTS:
        validate_config(load_experiment(name))


def test_every_key_of_every_experiment_has_a_schema():
    missing = []
    for name, key, _ in ALL_KEYS:
        if schema_of(load_experiment(name), key) is None:
            missing.append(f"{name}: {key}")
    assert not missing, missing
    assert len(ALL_KEYS) > 200


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_key_refuses_wrong_types_and_out_of_range(name):
    """For each key of the experiment: every value from _bad_values is refused with a
    ConfigError naming the key (so nothing could have started)."""
    config = load_experiment(name)
    checked = 0
    for exp, key, _ in ALL_KEYS:
        if exp != name:
            continue
        spec = schema_of(config, key)
        for bad in _bad_values(spec):
            with pytest.raises(ConfigError) as err:
                validate_config(_set(config, key, bad))
            assert key in str(err.value), (key, bad, str(err.value))
            checked += 1
    assert checked >= 2 * len([k for e, k, _ in ALL_KEYS if e == name])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.keep_checkpoints=0", "train.keep_checkpoints=0"),
        ("data.n_test=0", "data.n_test=0"),
        ("train.final_lr_fraction=-5", "train.final_lr_fraction"),
        ("train.checkpoint_every=-1", "train.checkpoint_every"),
        ("train.eval_every=-1", "train.eval_every"),
        ("train.warmup_steps=-5", "train.warmup_steps"),
        ("data.test_fraction=-0.5", "data.test_fraction"),
        ("seed=18446744073709551616", "seed"),
        ("seed=-1", "seed"),
        ("train.lr=nan", "train.lr"),
        ("train.lr=inf", "train.lr"),
        ("plot.temperature=0", "plot.temperature"),
        ("model.num_layers=2.5", "model.num_layers"),
        ("model.hidden=64", "model.hidden"),
        ("model.activation=swish", "model.activation"),
        ("model.typo=3", "model.typo"),
        ("data.name=file", "data.path"),
        ("name=a/b", "name"),
    ],
)
def test_issue_cases_are_refused(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate_config(apply_overrides(load_experiment(None), [override]))


def test_zero_disables_periodic_work():
    config = apply_overrides(
        load_experiment(None), ["train.eval_every=0", "train.checkpoint_every=0"]
    )
    validate_config(config)


def test_cross_key_rules():
    with pytest.raises(ConfigError, match="sigma_min must be < sigma_max"):
        validate_config(apply_overrides(load_experiment("ncsn_moons"), ["model.sigma_min=5"]))
    with pytest.raises(ConfigError, match="t_lo < t_hi"):
        validate_config(
            apply_overrides(load_experiment("fm_moons"), ["model.time_range=[0.9, 0.1]"])
        )
    with pytest.raises(ConfigError, match="sigma_min must be in"):
        validate_config(apply_overrides(load_experiment("fm_moons"), ["model.sigma_min=5"]))
    with pytest.raises(ConfigError, match="beta_min"):
        validate_config(
            apply_overrides(load_experiment("sde_digits"), ["model.sde_kwargs={'beta_min': -1}"])
        )
    with pytest.raises(ConfigError, match="not an option of glow_bijector"):
        validate_config(
            apply_overrides(load_experiment("glow_digits"), ["model.options={'bogus': 1}"])
        )


def test_schema_keys_absent_from_the_config_can_be_set():
    """A key the builder reads with a default (ffjord's max_steps) can be overridden even
    though the experiment does not list it; a key no schema knows cannot."""
    config = apply_overrides(load_experiment("ffjord_moons"), ["model.max_steps=100"])
    assert config["model"]["max_steps"] == 100
    validate_config(config)
    with pytest.raises(ConfigError, match="model.max_step"):
        apply_overrides(load_experiment("ffjord_moons"), ["model.max_step=100"])


# --------------------------------------------------------------------------- hypothesis

_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "true", "False", "[]", "[1, 2]", "{}", "None", ""]),
    st.text(max_size=12),
    st.lists(st.integers(-5, 300), max_size=4).map(str),
)
_KEYS = sorted({key for name, key, _ in ALL_KEYS if name in ("default", "fm_moons")})


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    experiment=st.sampled_from(["default", "fm_moons"]),
    key=st.sampled_from(_KEYS),
    text=_TEXT,
)
def test_random_overrides_never_traceback(experiment, key, text):
    """Any ``--set key=value`` either gives a config that validates (exit 0) or one
    ``flowzoo: error:`` line naming the key (exit 2); nothing is trained (--print-config)."""
    code, out, err = _run_cli(["train", experiment, "--print-config", "--set", f"{key}={text}"])
    errors = [line for line in err.splitlines() if line.startswith("flowzoo: error:")]
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 0:
        validate_config(json.loads(out))
        assert not errors
    else:
        assert len(errors) == 1 and key in errors[0], err


def _invalid_for(spec) -> st.SearchStrategy[str]:
    """Override texts that this spec must refuse."""
    # any text is a valid plain string (data.path), so strings are tested via choices only
    options = [] if spec.kind in ("dict", "str") else [st.just("[[1]]"), st.just("{'a': 1}")]
    if spec.kind in ("int", "width"):
        options.append(st.floats(-1e6, 1e6).filter(lambda f: f != int(f)).map(repr))
    if spec.kind == "float":
        options.append(st.sampled_from(["nan", "inf", "-inf"]))
    if spec.lo is not None and spec.kind in ("int", "float", "width"):
        lo = spec.lo
        strict = spec.lo_open
        if spec.kind == "float":
            below = st.floats(max_value=lo, exclude_max=not strict, allow_nan=False)
            below = below.filter(math.isfinite)
        else:
            below = st.integers(max_value=int(lo) - (0 if strict else 1), min_value=-(2**70))
        options.append(below.map(repr))
    if spec.hi is not None and spec.kind in ("int", "float", "width"):
        hi = spec.hi
        if spec.kind == "float":
            above = st.floats(min_value=hi, exclude_min=not spec.hi_open, allow_nan=False)
            above = above.filter(math.isfinite)
        else:
            above = st.integers(min_value=int(hi) + (0 if spec.hi_open else 1), max_value=2**70)
        options.append(above.map(repr))
    if spec.choices:
        options.append(st.text(min_size=1, max_size=8).filter(lambda s: s not in spec.choices))
    return st.one_of(options)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_invalid_overrides_exit_nonzero(data):
    base = load_experiment(None)
    keys = [k for n, k, _ in ALL_KEYS if n == "default"]
    keys = sorted(k for k in keys if schema_of(base, k).kind != "str" or schema_of(base, k).choices)
    key = data.draw(st.sampled_from(keys))
    spec = schema_of(base, key)
    text = data.draw(_invalid_for(spec))
    code, _, err = _run_cli(["train", "--print-config", "--set", f"{key}={text}"])
    assert code == 2, (key, text, err)
    assert "Traceback" not in err and key in err, (key, text, err)
