"""``flowzoo train`` multi-process flags, SIGTERM exit status, and a real 2-process run.

The 2-process run starts two ``python -m flowzoo.cli train ... --coordinator
localhost:PORT --num-processes 2 --process-id I`` processes (two CPU devices each, gloo);
only process 0 writes ``run.json``, plots, ``summary.json`` and prints the summary.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from test_parallel import ROOT, _env, _free_port

from flowzoo import cli, train, zoo

TINY = [
    *("--set", "train.steps=6", "--set", "train.batch_size=64"),
    *("--set", "train.steps_per_call=3", "--set", "train.eval_every=3"),
    *("--set", "train.checkpoint_every=3", "--set", "data.n_train=512"),
    *("--set", "data.n_test=256", "--set", "model.num_layers=2"),
    *("--set", "model.hidden=[16]", "--set", "plot.n_samples=256"),
    *("--set", "plot.grid=20", "--no-progress"),
]


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--coordinator", "localhost:1234"], "needs all of --coordinator"),
        (["--num-processes", "2", "--process-id", "0"], "needs all of --coordinator"),
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "process_id"),
        (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"], "num_processes"),
    ],
)
def test_bad_distributed_flags_are_one_line_errors(tmp_path, capsys, flags, needle):
    rc = cli.main(["train", *flags, "--workdir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("flowzoo: error: ") and needle in err[0]


def test_sigterm_exits_143(tmp_path, capsys, monkeypatch):
    def terminated(*args, **kwargs):
        raise train.TrainingInterrupted(signal.SIGTERM, 40)

    monkeypatch.setattr(zoo, "train_and_evaluate", terminated)
    rc = cli.main(["train", *TINY, "--workdir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 128 + signal.SIGTERM
    assert "SIGTERM" in err[-1] and "step 40" in err[-1]


def test_bad_compute_dtype_and_data_parallel_override(tmp_path, capsys):
    rc = cli.main(
        ["train", *TINY, "--set", "train.compute_dtype=float16", "--workdir", str(tmp_path)]
    )
    assert rc == 2 and "train.compute_dtype" in capsys.readouterr().err
    config = zoo.apply_overrides(zoo.default_config(), ["train.data_parallel=True"])
    assert config["train"]["data_parallel"] is True


@pytest.mark.slow
def test_two_process_cli_run(tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "flowzoo.cli", "train", *TINY, "--workdir", str(tmp_path)]
    dist = ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
    procs = [
        subprocess.Popen(
            [*cmd, *dist, "--process-id", str(i)],
            env=_env(2, legacy_emitters=True),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, stderr[-4000:]
            outs.append(stdout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    run = tmp_path / "moons_realnvp"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["test_nll"] < 3.5
    assert '"test_nll"' in outs[0] and '"test_nll"' not in outs[1]  # process 0 prints
    for name in ("run.json", "samples.png", "density.png"):
        assert (run / name).is_file()
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 3, 6, 6]  # train + eval records, written once
    loaded = zoo.load_run(run)  # a multi-process checkpoint restores in one process
    assert loaded.step == 6
