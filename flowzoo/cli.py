"""The ``flowzoo`` command: parses arguments and calls library functions.

``flowzoo train [EXPERIMENT] [--set key=value ...] [--coordinator HOST:PORT --num-processes N
--process-id I]``, ``flowzoo sample RUN_DIR -n N --out F``,
``flowzoo eval RUN_DIR --data F``, ``flowzoo list``, ``flowzoo bench samplers [--targets ...]
[--samplers ...] [--nfe 16,128,...] [--out DIR] [--quick] [--seeds 0,1,2]``. Bad input ends with a one-line
``flowzoo: error: ...`` on stderr and exit status 2 (1 for a failed training run or an
unexpected error, whose full traceback goes to a log file named in that line; set
``FLOWZOO_TRACEBACK=1`` to see it raised instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from . import malloc

SEED_MAX = 2**63 - 1
_COMPILING = ("train", "sample", "eval", "bench", "fid-stats")
"""The commands that compile models: the ``flowzoo`` command starts them on the memory
allocator ``FLOWZOO_MALLOC`` chooses (see :mod:`flowzoo.malloc`)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's default prints usage too)
        raise _UsageError(message)


class _UsageError(Exception):
    pass


class _BenchParser(_Parser):
    """The ``flowzoo bench`` subcommands' parser: the help of ``samplers --quick`` and
    ``--n`` states the settings of :mod:`flowzoo.bench`, read when the help is shown (so
    other commands do not pay for importing it)."""

    def format_help(self) -> str:
        from .bench import QUICK_NFE, QUICK_SETTINGS, QUICK_TARGETS, Settings

        quick = QUICK_SETTINGS
        helps = {
            "quick": f"targets {','.join(QUICK_TARGETS)}, NFE {','.join(map(str, QUICK_NFE))}, "
            f"n={quick.n}, repeats={quick.repeats}" + ("" if quick.warmup else ", no warm-up"),
            "n": f"samples per cell (default {Settings().n}, --quick {quick.n})",
        }
        for action in self._actions:
            action.help = helps.get(action.dest, action.help)
        return super().format_help()


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flowzoo", description="Train, sample and evaluate flowzoo models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train an experiment (default: RealNVP on two moons)",
        description="Train an experiment, evaluate it on held-out data and write a run "
        "directory. An experiment is a Python file whose get_config() returns the config: "
        "naming one runs its code (also with --print-config). A name is looked up in "
        "./experiments/ first, then in flowzoo's experiments/; the file used is printed.",
    )
    t.add_argument(
        "experiment",
        nargs="?",
        default=None,
        help="name in ./experiments/ or flowzoo's experiments/, or a path to a .py file "
        "defining get_config() (Python code that is executed); omit for the default",
    )
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=500 (repeatable)",
    )
    t.add_argument("--name", default=None, help="run name (default: the config's name)")
    t.add_argument("--workdir", default="runs", help="parent directory of runs (default: runs)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument(
        "--fid-weights",
        metavar="PATH",
        default=None,
        help="converted FID Inception weights (flowzoo fid-weights convert): runs on a data "
        "set read from files report FID (default: $FLOWZOO_FID_WEIGHTS; without: skipped)",
    )
    t.add_argument(
        "--init",
        choices=("pretrained",),
        default=None,
        help="fine-tune from the shipped weights of EXPERIMENT (new optimizer state; run name "
        "EXPERIMENT_finetune unless --name is given)",
    )
    t.add_argument(
        "--dry-run",
        action="store_true",
        help="build the model and compile one train step without data or training; print "
        "its parameter count, FLOPs and memory (JSON) and exit",
    )
    d = t.add_argument_group(
        "multi-process (multi-host) training",
        "run the same command once per process; all processes train one data-parallel model",
    )
    d.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    d.add_argument("--num-processes", type=int, metavar="N", help="total number of processes")
    d.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")

    run_help = (
        "a run directory, or the name of a pretrained model (`flowzoo list`; ./runs/NAME "
        "takes precedence, pretrained:NAME always means the shipped weights)"
    )
    s = sub.add_parser("sample", help="draw samples from a trained run or a pretrained model")
    s.add_argument("run_dir", metavar="RUN", help=run_help)
    s.add_argument("-n", type=int, default=1000, help="number of samples")
    s.add_argument("--out", required=True, help="output .npy file (a directory gets samples.npy)")
    s.add_argument("--seed", type=int, default=0, help=f"0 .. {SEED_MAX}")
    s.add_argument("--temperature", type=float, default=1.0, help="finite, > 0 (default 1)")

    e = sub.add_parser(
        "eval",
        help="mean negative log-likelihood of data under a trained run; image runs: sample "
        "quality (FD, legibility, class histogram, and the real-image floor)",
    )
    e.add_argument("run_dir", metavar="RUN", help=run_help)
    e.add_argument(
        "--data",
        default=None,
        help=".npy/.npz array of shape (n, *event) (vector runs, default: the run's held-out "
        "split; image runs: 'test' for the held-out split's bits/dim; 'none': no likelihood)",
    )
    e.add_argument("--key", default=None, help="array name inside a .npz")
    e.add_argument(
        "--samples",
        type=int,
        default=None,
        help="image runs: generated images scored for sample quality (default 1000; 0: none)",
    )
    e.add_argument("--seed", type=int, default=0, help=f"sampling seed, 0 .. {SEED_MAX}")
    e.add_argument(
        "--fid-weights",
        metavar="PATH",
        default=None,
        help="converted FID Inception weights (default: $FLOWZOO_FID_WEIGHTS): runs on a data "
        "set read from files (cifar10, ...) report FID against its training split",
    )
    e.add_argument(
        "--fid-samples",
        type=int,
        default=None,
        metavar="N",
        help="samples for FID (default: the run's plot.fid_samples, 10,000; papers report "
        "50,000; 0: no FID)",
    )

    sub.add_parser("list", help="list available experiments")

    pl = sub.add_parser("plot", help="training and evaluation curves of a run (PNG)")
    pl.add_argument("run_dir")
    pl.add_argument("--out", default=None, help="output .png (default: RUN_DIR/curves.png)")

    fw = sub.add_parser("fid-weights", help="the FID Inception weights")
    fwsub = fw.add_subparsers(dest="fid_weights_command", required=True, parser_class=_Parser)
    fc = fwsub.add_parser(
        "convert",
        help="convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth to safetensors "
        "(needs torch, once)",
    )
    fc.add_argument("path", help="the downloaded .pth file")
    fc.add_argument("--out", default=None, help="output file (default: PATH with .safetensors)")

    fs = sub.add_parser("fid-stats", help="FID reference statistics of a data set split (cached)")
    fs.add_argument("dataset", help="a data set name (flowzoo.data.DATASETS), e.g. cifar10")
    fs.add_argument("--path", required=True, help="the data set's file or folder")
    fs.add_argument("--split", choices=("train", "test"), default="train")
    fs.add_argument(
        "--fid-weights", default=None, help="converted weights (default: $FLOWZOO_FID_WEIGHTS)"
    )
    fs.add_argument("--num-images", type=int, default=None, help="first N images (default: all)")
    fs.add_argument("--batch-size", type=int, default=100, help="images per Inception call")

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command", required=True, parser_class=_BenchParser)
    bs = bsub.add_parser(
        "samplers", help="every sampler on targets with ground truth: results, leaderboard, plots"
    )
    bs.add_argument("--targets", type=_names, default=None, help="comma-separated (default: all)")
    bs.add_argument("--samplers", type=_names, default=None, help="comma-separated (default: all)")
    bs.add_argument(
        "--nfe",
        type=_ints,
        default=None,
        help="NFE budgets for every target, e.g. 16,128,1024 (default: each target's three)",
    )
    bs.add_argument("--out", default="bench/samplers", help="output directory")
    bs.add_argument("--quick", action="store_true")  # help: _BenchParser
    bs.add_argument(
        "--seeds",
        type=_ints,
        default=None,
        help=f"comma-separated seeds, each 0 .. {SEED_MAX} (default 0,1,2: mean ± sd over them)",
    )
    bs.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    bs.add_argument("--n", type=int, default=None)  # help: _BenchParser
    bs.add_argument(
        "--runs",
        type=_names,
        default=None,
        help="comma-separated run directories of trained models (cfm, score_sde, ncsn), or "
        "pretrained:NAME, to add as learned targets (without --targets: only these)",
    )
    bs.add_argument(
        "--reference",
        choices=("data", "solve"),
        default="data",
        help="learned targets' reference: held-out data, or the model's own ODE solved by "
        "Tsit5 at rtol=atol=1e-5",
    )
    bs.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= SEED_MAX:
        raise _UsageError(f"--seed must be an integer in [0, {SEED_MAX}], got {seed}")


def _output_file(out: str, default_name: str, suffix: str) -> Path:
    """Where ``--out`` writes: a directory (existing, or written with a trailing ``/``) gets
    ``default_name``; a missing ``suffix`` is added, and said so."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        return path / default_name
    if path.suffix != suffix:
        fixed = path.with_name(path.name + suffix)
        print(f"flowzoo: note: writing {fixed} ({suffix} added to --out {out})", file=sys.stderr)
        return fixed
    return path


def _bench(args) -> int:
    from .bench import run_benchmark

    if args.seed is not None and args.seeds is not None:
        raise _UsageError("give --seed or --seeds, not both")
    seeds = [args.seed] if args.seed is not None else args.seeds
    for seed in seeds or []:
        _check_seed(seed)
    run_benchmark(
        args.out,
        targets=args.targets,
        samplers=args.samplers,
        nfe=args.nfe,
        seeds=seeds,
        quick=args.quick,
        progress=not args.no_progress,
        runs=args.runs,
        reference=args.reference,
        n=args.n,
    )
    print(f"flowzoo: wrote results.json, leaderboard.md and plots to {args.out}", file=sys.stderr)
    return 0


def _train(args) -> int:
    from .zoo import (
        apply_overrides,
        load_experiment,
        resolve_experiment,
        train_and_evaluate,
        validate_config,
    )

    source = resolve_experiment(args.experiment)
    if source.path is not None:
        print(f"flowzoo: experiment {args.experiment}: running {source.path}", file=sys.stderr)
    if source.shadows is not None:
        print(
            f"flowzoo: note: {source.path} shadows the built-in experiment {source.shadows}",
            file=sys.stderr,
        )
    config = apply_overrides(load_experiment(args.experiment), args.overrides)
    init = None
    if args.init == "pretrained":
        init = _pretrained_init(config)
        config["name"] = f"{config['name']}_finetune"
    if args.name:
        config["name"] = args.name
    validate_config(config)
    distributed = _distributed(args)
    if args.print_config:
        print(json.dumps(config, indent=2))
        return 0
    if args.dry_run:
        return _dry_run(config)
    workdir = Path(args.workdir) / config["name"]
    print(f"flowzoo: training {config['name']} -> {workdir}", file=sys.stderr)
    summary = train_and_evaluate(
        config,
        workdir,
        progress=not args.no_progress,
        distributed=distributed,
        fid_weights=args.fid_weights,
        init=init,
    )
    if distributed is None or distributed.process_id == 0:
        print(json.dumps(summary, indent=2))
    return 0


def _pretrained_init(config):
    """The shipped weights of the experiment ``config`` names, to fine-tune from."""
    from .zoo import pretrained_names, pretrained_parts

    name = config["name"]
    if name not in pretrained_names():
        have = ", ".join(pretrained_names()) or "none"
        raise _UsageError(
            f"--init pretrained: no pretrained weights for {name!r} (shipped: {have})"
        )
    print(f"flowzoo: fine-tuning from the pretrained weights of {name}", file=sys.stderr)
    return pretrained_parts(name)


def _dry_run(config) -> int:
    from .zoo import dry_run

    report = dry_run(config)
    gib = 2.0**30
    flops = report["flops"]
    print(f"parameters: {report['parameters']:,}")
    print(
        f"step FLOPs: {flops:.4g} ({flops / report['batch_size']:.4g} per example; matrix "
        "products and convolutions, forward and backward)"
    )
    if report["peak_bytes"] is not None:
        print(
            f"peak memory: {report['peak_bytes'] / gib:.3f} GiB (temporaries "
            f"{report['temp_bytes'] / gib:.3f} GiB) on one {report['backend']} device"
        )
    print(f"compile: {report['compile_seconds']:.1f} s")
    print(json.dumps(report, indent=2))
    return 0


def _distributed(args):
    """The ``Distributed`` spec of ``--coordinator/--num-processes/--process-id`` (or None)."""
    from .train import Distributed

    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise _UsageError(
            "multi-process training needs all of --coordinator HOST:PORT, "
            "--num-processes N and --process-id I"
        )
    from .train import check_distributed

    return check_distributed(Distributed(args.coordinator, args.num_processes, args.process_id))


def _sample(args) -> int:
    import jax
    import numpy as np

    if args.n < 1:
        raise _UsageError(f"-n must be >= 1, got {args.n}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise _UsageError(f"--temperature must be a finite number > 0, got {args.temperature}")
    _check_seed(args.seed)
    out = _output_file(args.out, "samples.npy", ".npy")
    run = _open_run(args.run_dir)
    x = run.sample(jax.random.key(args.seed), args.n, args.temperature)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)))
        print(f"flowzoo: warning: {bad} of {len(x)} samples are not finite", file=sys.stderr)
    _write_atomic(out, lambda f: np.save(f, x))
    print(
        f"flowzoo: wrote {x.shape[0]} samples of shape {tuple(x.shape[1:])} to {out}",
        file=sys.stderr,
    )
    return 0


def _eval(args) -> int:
    import jax

    from .data import DATASETS, IMAGE_LEVELS
    from .metrics import fid_weights_path
    from .train import json_safe
    from .zoo import QUALITY_SAMPLES, image_classifier, image_quality, load_data

    _check_seed(args.seed)
    if args.samples is not None and args.samples != 0 and args.samples < 2:
        raise _UsageError(f"--samples must be 0 or >= 2, got {args.samples}")
    if args.fid_samples is not None and args.fid_samples != 0 and args.fid_samples < 2:
        raise _UsageError(f"--fid-samples must be 0 or >= 2, got {args.fid_samples}")
    run = _open_run(args.run_dir)
    dataset = str(run.config["data"]["name"]).lower()
    images = dataset in IMAGE_LEVELS
    n_quality = (QUALITY_SAMPLES if args.samples is None else args.samples) if images else 0
    if not images and args.samples:
        raise _UsageError("--samples applies to image runs only")
    with_fid = dataset in DATASETS
    if not with_fid and (args.fid_weights is not None or args.fid_samples):
        raise _UsageError(
            f"FID applies to runs on a data set read from files ({', '.join(DATASETS)}); "
            f"this run trained on {dataset!r}"
        )
    n_fid = int(run.config["plot"]["fid_samples"] if args.fid_samples is None else args.fid_samples)
    # the weights are checked before the (long) likelihood pass
    fid_weights = fid_weights_path(args.fid_weights) if with_fid and n_fid else None
    result = {"step": run.step}
    if args.data == "test" or (args.data is None and not images):
        if run.model.distribution is None:
            raise _UsageError(f"model {run.config['model']['name']!r} has no likelihood")
        result.update(_nll_figures(run, load_data(run.config)[1]))
    elif args.data not in (None, "none"):  # "none": no likelihood
        result.update(_data_nll(run, args.data, args.key))
    if n_quality:
        samples = run.sample(jax.random.key(args.seed), n_quality)
        result["quality"] = image_quality(image_classifier(dataset), samples)
    if with_fid and n_fid:
        result.update(run.fid(jax.random.key(args.seed), n_fid, fid_weights))
    print(json.dumps(json_safe(result), allow_nan=False))
    return 0


def _open_run(spec: str):
    """The run ``spec`` names (:func:`flowzoo.zoo.open_run`), saying which when both exist."""
    from .zoo import open_run

    found = open_run(spec)
    if found.notice:
        print(f"flowzoo: note: {found.notice}", file=sys.stderr)
    return found.run


def _data_nll(run, path: str, key: str | None) -> dict:
    """Mean NLL of the array at ``path`` under ``run`` (raw and standardised units)."""
    from .data import check_batch, load_array

    x = load_array(path, key)
    check_batch(x, tuple(run.standardizer.shift.shape), path)
    return _nll_figures(run, x)


def _nll_figures(run, x) -> dict:
    """Mean NLL of raw-unit ``x`` under ``run`` (raw and standardised units)."""
    import numpy as np

    from .data import standardizer_log_det

    lp = run.log_prob(x)
    nll = float(-np.mean(lp))
    if not math.isfinite(nll):
        bad = int(np.sum(~np.isfinite(lp)))
        print(
            f"flowzoo: note: the NLL is not finite ({nll}; {bad} of {len(lp)} log-densities "
            "are not finite): written as null",
            file=sys.stderr,
        )
    out = {
        "n": int(x.shape[0]),
        "nll": nll,
        "nll_standardized": nll + float(standardizer_log_det(run.standardizer)),
    }
    if x.ndim == 4:  # images: the dequantisation bound in bits per dimension
        out["bpd"] = nll / (math.prod(x.shape[1:]) * math.log(2))
    return out


def _write_atomic(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as err:
        raise _UsageError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _plot(args) -> int:
    from .plots import plot_curves, read_metrics

    run_dir = Path(args.run_dir)
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        raise _UsageError(f"{run_dir} has no metrics.jsonl; is it a flowzoo run directory?")
    out = _output_file(args.out, "curves.png", ".png") if args.out else run_dir / "curves.png"
    records = read_metrics(log)
    names: list[str] = []  # matplotlib writes PNG to the open file (its default format)
    _write_atomic(out, lambda f: names.extend(plot_curves(f, records, title=run_dir.name)))
    print(
        f"flowzoo: wrote {', '.join(names)} curves ({len(records)} records) to {out}",
        file=sys.stderr,
    )
    return 0


def _fid_weights(args) -> int:
    from .metrics import convert_fid_weights

    try:
        out, published = convert_fid_weights(args.path, args.out)
    except ImportError as err:
        raise _UsageError(str(err)) from None
    note = "the published file" if published else "NOT the published file's SHA-256"
    print(
        f"flowzoo: wrote {out} ({note}); use it with --fid-weights {out} or "
        f"FLOWZOO_FID_WEIGHTS={out}",
        file=sys.stderr,
    )
    return 0


def _fid_stats(args) -> int:
    from .data import dataset_fid_statistics, fid_statistics_file

    kwargs = {"split": args.split, "num_images": args.num_images}
    file = fid_statistics_file(args.dataset, args.path, args.fid_weights, **kwargs)
    cached = file.is_file()
    mu, _ = dataset_fid_statistics(
        args.dataset, args.path, args.fid_weights, batch_size=args.batch_size, **kwargs
    )
    verb = "found" if cached else "wrote"
    print(f"flowzoo: {verb} {file} ({mu.shape[0]} features)", file=sys.stderr)
    print(file)
    return 0


def _list(args) -> int:
    from .zoo import available_experiments, pretrained_names

    shipped = set(pretrained_names())
    for name in available_experiments():
        print(f"{name:<26} pretrained" if name in shipped else name)
    if shipped:
        print(
            "(pretrained: weights ship with flowzoo; `flowzoo sample NAME`, `flowzoo eval NAME`, "
            "`flowzoo train NAME --init pretrained`)",
            file=sys.stderr,
        )
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}"  # not the raw "[Errno 13] ..." form
    return text or type(err).__name__


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """Warnings as one ``flowzoo: warning:`` line (no source line)."""
    return f"flowzoo: warning: {' '.join(str(message).split())}\n"


def _crash_log(err: BaseException) -> Path | None:
    """Write the traceback of an unexpected error to a log file; returns its path."""
    name = f"flowzoo-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path = Path(tempfile.gettempdir()) / name
    try:
        path.write_text(
            f"flowzoo {' '.join(sys.argv[1:])}\n\n"
            + "".join(traceback.format_exception(type(err), err, err.__traceback__))
        )
    except OSError:
        return None
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowzoo`` command; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv is None and sys.argv[1:2] and sys.argv[1] in _COMPILING:
        try:  # the allocator of FLOWZOO_MALLOC (flowzoo.malloc); returns unless it re-executes
            malloc.relaunch(["-m", "flowzoo.cli", *sys.argv[1:]])
        except ValueError as err:
            print(f"flowzoo: error: {err}", file=sys.stderr)
            return 2
    try:
        return _main(argv)
    except Exception as err:  # a bug or an unforeseen failure: one line, traceback to a file
        if os.environ.get("FLOWZOO_TRACEBACK"):
            raise
        log = _crash_log(err)
        where = f"full traceback in {log}" if log else "set FLOWZOO_TRACEBACK=1 for the traceback"
        print(
            f"flowzoo: error: unexpected {type(err).__name__}: {_one_line(err)[:500]} ({where})",
            file=sys.stderr,
        )
        return 1


def _main(argv: list[str] | None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataError
    from .train import DistributedError, NonFiniteError, RunLockedError
    from .zoo import ConfigError, EvaluationError

    warnings.formatwarning = _warning_line
    try:
        args = _parser().parse_args(argv)
        commands = {"train": _train, "sample": _sample, "eval": _eval, "list": _list, "plot": _plot}
        commands.update({"fid-weights": _fid_weights, "fid-stats": _fid_stats})
        return {**commands, "bench": _bench}[args.command](args)
    except SystemExit as err:  # --help
        return int(err.code or 0)
    except (
        _UsageError,
        ConfigError,
        DataError,
        CheckpointError,
        DistributedError,
        RunLockedError,
        ValueError,
        OSError,
    ) as err:
        print(f"flowzoo: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (NonFiniteError, EvaluationError) as err:
        print(f"flowzoo: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        import signal

        signum = getattr(err, "signum", signal.SIGINT)
        if signum != signal.SIGINT:  # TrainingInterrupted by SIGTERM: 128 + 15
            print(f"flowzoo: {err}", file=sys.stderr)
            return 128 + int(signum)
        print(
            "flowzoo: interrupted (a started run saved a checkpoint to resume from)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
