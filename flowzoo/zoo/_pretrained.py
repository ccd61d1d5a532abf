"""Pretrained weights shipped inside the package, their model cards, and finding a model by
name.

``flowzoo/zoo/pretrained/NAME.safetensors`` holds what :func:`pretrained` needs to sample
and evaluate experiment ``NAME`` without training: the params it samples with (the EMA
params where the recipe keeps them), a guide's params where it samples with one, and in the
file's JSON header the run's config, event shape and data standardiser (dequantisation
networks and every other learned piece are part of the params). ``NAME.json`` is its model
card: the experiment, config, data and split, the command and commit that trained it, the
training time and machine, the figures it reproduces, and the weight file's SHA-256, which
:func:`pretrained` checks before reading a byte of it (:mod:`._weights`).

:func:`export_pretrained` writes both from a run directory; ``benchmarks/pretrained.py``
measures every card's figures and exports the shipped files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._registry import guidance_of
from ._run import PARAMS_FORMAT, Run, RunParts, guided_run, load_run, load_run_parts, model_of_info
from ._spec import ConfigError
from ._weights import WeightsError, fill_tree, read_weights, save_weights, tree_tensors

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
"""Where the shipped weight files and model cards live (package data)."""

PREFIX = "pretrained:"
"""``pretrained:NAME`` always means the shipped weights, even where ``./runs/NAME`` exists."""


def pretrained_names(directory: str | os.PathLike | None = None) -> list[str]:
    """The experiments with shipped weights (those with a model card), sorted."""
    root = Path(directory) if directory is not None else PRETRAINED_DIR
    return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []


def model_card(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model card of shipped model ``name`` (a dict; see the module docstring).

    Raises:
      WeightsError: no shipped model of that name, or its card is unreadable.
    """
    root = Path(directory) if directory is not None else PRETRAINED_DIR
    path = root / f"{name}.json"
    if not path.is_file():
        have = ", ".join(pretrained_names(root)) or "none"
        raise WeightsError(f"no pretrained model named {name!r} (shipped: {have})")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"model card {path} is unreadable ({err})") from err


def _template(model, event_shape) -> Any:
    dummy = jnp.zeros((2, *event_shape), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), dummy)


def _check_format(header: dict[str, Any], path: Path) -> None:
    found = header.get("params_format")
    if found != PARAMS_FORMAT:
        raise WeightsError(
            f"{path} was written for params format {found}; this flowzoo reads format "
            f"{PARAMS_FORMAT}: use the flowzoo version that wrote it, or export the run again"
        )


class Pretrained(NamedTuple):
    """A shipped model as stored: its card, the unguided main model and, for a guided model,
    the guide's params (:func:`pretrained` returns the :class:`Run` they make)."""

    card: dict[str, Any]
    main: RunParts
    guide_params: Any  # None without a guide


def pretrained_parts(name: str, directory: str | os.PathLike | None = None) -> Pretrained:
    """Read and check shipped model ``name`` (checksum, params format, tensor shapes)."""
    root = Path(directory) if directory is not None else PRETRAINED_DIR
    card = model_card(name, root)
    path = root / card["file"]
    tensors, header = read_weights(path, card["sha256"])
    _check_format(header, path)
    info = header["run"]
    config, event_shape, s, model = model_of_info(info, path)
    params = fill_tree(_template(model, event_shape), tensors, "params", path)
    main = RunParts(info, config, model, params, s, int(header["step"]))
    guide = None
    if guidance_of(config) is not None:
        if "guide" not in header:
            raise WeightsError(f"{path} samples with a guide but holds none")
        g_config, g_shape, _, g_model = model_of_info(header["guide"], path)
        guide = fill_tree(_template(g_model, g_shape), tensors, "guide", path)
    return Pretrained(card, main, guide)


def pretrained(name: str, directory: str | os.PathLike | None = None) -> Run:
    """The shipped model ``name`` as a :class:`Run` (what :func:`load_run` returns for its
    run directory): sample it, evaluate its likelihood, use it as a bench target.

    Raises:
      WeightsError: no such model, a weight file whose checksum differs from its card's,
        one written for another params format, or tensors that do not fit the model.
    """
    found = pretrained_parts(name, directory)
    main = found.main
    if found.guide_params is None:
        return Run(main.config, main.model, main.params, main.standardizer, main.step)
    return guided_run(main.config, tuple(main.info["event_shape"]), main, found.guide_params)


def export_pretrained(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    card: dict[str, Any],
    *,
    name: str | None = None,
    dtype: str = "float32",
) -> Path:
    """Write ``out_dir/NAME.safetensors`` and its model card ``out_dir/NAME.json`` from the
    newest checkpoint of ``run_dir`` (and of ``run_dir/guide`` for a guided run).

    ``card``: the card's fields (experiment, command, commit, training, figures, ...); the
    file name, its SHA-256 and size, the dtype on disk, the params format and the run's
    config are added. ``dtype``: ``"float32"``, or ``"float16"`` where the card's figures
    are unchanged by it. Returns the card's path.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    main = load_run_parts(run_dir)
    name = name or main.config["name"]
    header = {"run": main.info, "step": main.step, "params_format": PARAMS_FORMAT}
    tensors = tree_tensors(main.params, "params", dtype)
    if guidance_of(main.config) is not None:
        guide = load_run_parts(run_dir / "guide")
        header["guide"] = guide.info
        tensors.update(tree_tensors(guide.params, "guide", dtype))
    weights = out_dir / f"{name}.safetensors"
    sha = save_weights(weights, tensors, header)
    full = {
        **card,
        "name": name,
        "file": weights.name,
        "sha256": sha,
        "bytes": weights.stat().st_size,
        "dtype": dtype,
        "step": main.step,
        "params_format": PARAMS_FORMAT,
        "parameters": int(sum(t.size for t in tensors.values())),
        "config": main.info["config"],
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(full, indent=2) + "\n")
    os.replace(tmp, path)
    return path


class Opened(NamedTuple):
    """What :func:`open_run` found: the run, where from, and a notice for the user (or None)."""

    run: Run
    source: str  # a run directory's path, or "pretrained:NAME"
    notice: str | None


def open_run(spec: str, runs_dir: str | os.PathLike = "runs") -> Opened:
    """The model ``spec`` names, for ``flowzoo sample``, ``eval`` and ``bench --runs``.

    ``spec`` is a run directory; ``pretrained:NAME`` (the shipped weights); or a bare
    ``NAME`` of a shipped model, which means ``runs_dir/NAME`` where that run exists (with a
    notice naming both) and the shipped weights otherwise.

    Raises:
      ConfigError: ``spec`` is neither a run directory nor a shipped model.
      WeightsError: the shipped weights fail their checks (:func:`pretrained`).
    """
    if spec.startswith(PREFIX):
        name = spec[len(PREFIX) :]
        return Opened(pretrained(name), spec, None)
    path = Path(spec)
    if path.is_dir():
        return Opened(load_run(path), str(path), None)
    if os.sep in spec or "/" in spec or spec not in pretrained_names():
        if path.exists():  # a file: load_run says what is wrong with it
            return Opened(load_run(path), str(path), None)
        have = ", ".join(pretrained_names()) or "none"
        raise ConfigError(
            f"run directory {spec!r} does not exist, and no pretrained model has that name "
            f"(shipped: {have}); train one with `flowzoo train`"
        )
    local = Path(runs_dir) / spec
    if (local / "run.json").is_file():
        notice = (
            f"using the run directory {local}, which takes precedence over the pretrained "
            f"weights {spec}; ask for those with {PREFIX}{spec}"
        )
        return Opened(load_run(local), str(local), notice)
    return Opened(pretrained(spec), PREFIX + spec, None)
