"""benchmarks/run_all.py --docs-only: tables regenerated between markers from JSON (no timing).

Every benchmark module renders its own docs block (``render``) and checks its own targets
(``check``); run_all.py is the table of scripts and the loop over it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = ROOT / "benchmarks" / "run_all.py"
DOCS = ROOT / "docs" / "benchmarks.md"
PEERS = ("torch", "torchcfm", "flow_matching", "flowjax", "paramax", "blackjax", "lap", "lapjv")


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("bench_run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(load):
    return {
        "date": "2026-12-01T10:00:00+00:00",
        "git_commit": "abc1234",
        "cpu_count": 2,
        "cpu_model": "Test CPU",
        "versions": {"jax": "0.0.1", "flowzoo": "0.1.0"},
        "load_average": [load, load, load],
    }


def _summary(values):
    return {
        "median": values[len(values) // 2],
        "q1": min(values),
        "q3": max(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def test_docs_only_replaces_marked_blocks(run_all, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    cfm = {
        "benchmark": "cfm_train",
        "torch_threads": 2,
        "env": _env(0.3),
        "load_average_after": [1.1, 0.5, 0.4],
        "results": [
            {
                "batch": 256,
                "coupling": "independent",
                "compile_s": 1.25,
                "memory": {"xla_step_bytes": 3 * 2**20},
                "flowzoo_samples_per_s": 123456.0,
                "torchcfm_samples_per_s": 100000.0,
                "speedup_vs_torchcfm": 1.23456,
                "flowzoo_scan_fraction_of_xla_matmul": 0.514,
                "torchcfm_fraction_of_xla_matmul": 0.42,
                "matmul_rate": {
                    "shape": [256, 256, 256],
                    "xla_flops_per_s": 98.6e9,
                    "torch_flops_per_s": 120.2e9,
                },
            },
            {
                "batch": 256,
                "coupling": "exact_ot",
                "compile_s": 1.25,
                "memory": {"xla_step_bytes": 3 * 2**20},
                "flowzoo_samples_per_s": 30000.0,
                "flowzoo_pipelined_samples_per_s": 60000.0,
                "torchcfm_samples_per_s": 40000.0,
                "speedup_vs_torchcfm": 0.75,
            },
        ],
    }
    meta = {
        "benchmark": "ode_meta",
        "env": _env(2.5),  # taken under load: must carry the warning
        "load_average_after": [2.6, 2.0, 1.0],
        "config": {"n": 10000, "torch_threads": 2, "quick": False},
        "results": [
            {
                "method": "euler",
                "num_steps": 100,
                "flowzoo_nfe": 100,
                "meta_nfe": 100,
                "flowzoo": {"samples_per_s": 5e4},
                "jax_scan": {"samples_per_s": 5e4},
                "meta": {"samples_per_s": 2e4},
                "speedup_vs_meta": _summary([2.4, 2.5, 2.6]),
                "target": 1.5,
                "target_met": True,
                "scan_over_flowzoo": _summary([1.0, 1.0, 1.0]),
                "max_abs_diff_meta": 3e-6,
                "compile": {"total_s": _summary([0.5, 0.6, 0.7])},
                "memory": {"xla_step_bytes": 2**20},
            },
        ],
    }
    quick = {**meta, "config": {**meta["config"], "quick": True}}
    (out / "cfm_train.json").write_text(json.dumps(cfm))
    (out / "ode_meta.json").write_text(json.dumps(meta))
    (out / "ode_sampling.json").write_text(json.dumps({**quick, "benchmark": "ode_sampling"}))
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\nHand-written prose.\n\n"
        "<!-- run_all:cfm_train:begin -->\nold cfm table\n<!-- run_all:cfm_train:end -->\n\n"
        "Prose between.\n\n"
        "<!-- run_all:ode_meta:begin -->\nNot yet measured.\n<!-- run_all:ode_meta:end -->\n"
        "<!-- run_all:ode_sampling:begin -->\nkept (quick)\n<!-- run_all:ode_sampling:end -->\n"
        "<!-- run_all:langevin:begin -->\nkept (no json)\n<!-- run_all:langevin:end -->\n"
    )
    res = run_all.main(["--docs-only", "--out", str(out), "--docs-file", str(docs)])
    text = docs.read_text()

    assert res["docs"]["cfm_train"] == "updated"
    assert "Hand-written prose." in text and "Prose between." in text
    assert "old cfm table" not in text and "Not yet measured." not in text
    cfm_block = text.split("<!-- run_all:cfm_train:begin -->")[1].split("end -->")[0]
    assert "2026-12-01" in cfm_block and "0.30 at the start" in cfm_block
    assert "| 256 | independent | 123.5k |" in cfm_block and "1.23x" in cfm_block
    assert "3.0 MiB" in cfm_block and "Taken under load" not in cfm_block
    assert "| 256 | exact_ot | 30.0k | - | 40.0k | 0.75x | 60.0k | 1.50x |" in cfm_block
    assert "| 3.0 MiB | 51% | 42% |" in cfm_block  # fractions of the measured matmul rate
    assert "batch 256: XLA 99 GFLOP/s, torch 120 GFLOP/s" in cfm_block
    meta_block = text.split("<!-- run_all:ode_meta:begin -->")[1].split("end -->")[0]
    assert "Taken under load" in meta_block and "2.50 at the start" in meta_block
    assert "2.50x (2.40-2.60)" in meta_block
    assert "kept (quick)" in text and "kept (no json)" in text
    assert text.count("<!-- run_all:") == 8  # every marker kept

    # idempotent: a second pass gives the same file
    run_all.main(["--docs-only", "--out", str(out), "--docs-file", str(docs)])
    assert docs.read_text() == text


def test_load_flags_discount_the_scripts_own_load(run_all):
    quiet = {"load_before": 0.4, "load_after": 2.0, "own_load_share": 1.2, "other_cpu_cores": 0.1}
    assert run_all.common.load_flags(quiet, 1.5, 0.5) == []
    busy = {**quiet, "other_cpu_cores": 1.0}
    assert len(run_all.common.load_flags(busy, 1.5, 0.5)) == 1
    assert len(run_all.common.load_flags({**quiet, "load_before": 1.8}, 1.5, 0.5)) == 1


def test_compiled_flops_counts_a_matmul_as_2mkn():
    """The operation count behind the "fraction of matmul peak" figures: XLA's cost analysis
    of one ``(m, k) @ (k, n)`` product is ``2 m k n``, independent of the values."""
    import jax
    import jax.numpy as jnp

    spec = importlib.util.spec_from_file_location("bench_common", RUN_ALL.parent / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    if jax.default_backend() != "cpu":  # the runner's matmul-rate fractions are CPU figures
        pytest.skip(
            "XLA:GPU's cost analysis counts no flops in a cuBLAS call (H200, jaxlib 0.11.2)"
        )
    m, k, n = 48, 40, 24
    compiled = jax.jit(jnp.matmul).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
    assert common.compiled_flops(compiled) == pytest.approx(2 * m * k * n, rel=1e-6)


def test_moons_seeds_compares_with_flowjax_seed_by_seed(run_all):
    """The seed-by-seed table: mean difference and its standard error (by hand: differences
    +0.02, -0.01, 0.0, -0.03 have mean -0.005 and sample std 0.0208, SE 0.0104), the seeds
    ahead or level, the worst seed; and the quality-only caption instead of the load warning."""
    fz = [1.20, 1.15, 1.17, 1.14]
    fj = [1.18, 1.16, 1.17, 1.17]
    cell = lambda v: {"test_nll": v, "max_loss_jump_100": 0.01, "finite": True}  # noqa: E731
    d = {
        "env": _env(2.5),
        "config": {"seeds": [0, 1, 2, 3], "steps": 3000},
        "results": {
            "two_moons": {
                "tanh-1/density/uniform": [cell(v) for v in fz],
                "flowjax": [cell(v) for v in fj],
            }
        },
    }
    text = run_all.render_block("moons_seeds", 1.5, d, None)
    assert "| two_moons | `tanh-1/density/uniform` | -0.0050 ± 0.0104 | 3 of 4 | +0.020 |" in text
    assert "Quality figures only" in text and "Taken under load" not in text
    assert "Taken under load" in run_all.common.caption("coupling_train", d, None, 1.5)


def test_every_script_in_the_table_renders_its_committed_json(run_all):
    """Each entry of the table names a file in benchmarks/ whose module renders the JSON
    committed in benchmarks/results/; where the JSON stores the checks of its targets, the
    module's ``check`` finds the same ones again from the measurements."""
    assert {"coupling_train", "cfm_train", "moons_seeds"} <= set(run_all.SCRIPTS)
    for name, script in run_all.SCRIPTS.items():
        assert script.name == name and (RUN_ALL.parent / script.file).is_file(), name
        d = json.loads((RUN_ALL.parent / "results" / f"{name}.json").read_text())
        module = run_all.module(name)
        assert getattr(module, script.render)(d).count("\n|---") >= 1, name
        if "checks" in d:
            assert module.check(d) == d["checks"], name
    not_default = [
        *("unet_cores", "scaling", "scale_study", "accelerator", "malloc", "pretrained"),
        "adapters",
    ]
    assert [n for n, s in run_all.SCRIPTS.items() if not s.default] == not_default


@pytest.mark.slow
def test_docs_only_regenerates_the_committed_docs_without_the_peers(tmp_path):
    """``--docs-only`` over the committed JSON gives docs/benchmarks.md byte for byte, in a
    process where importing any peer (torch, flowjax, ...) fails: rendering imports none."""
    docs = tmp_path / "benchmarks.md"
    docs.write_bytes(DOCS.read_bytes())
    block_peers = (
        "import sys\n"
        "class NoPeers:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {PEERS!r}:\n"
        "            raise ImportError('peer imported: ' + name)\n"
        "sys.meta_path.insert(0, NoPeers())\n"
        f"sys.argv = ['run_all.py', '--docs-only', '--docs-file', {str(docs)!r}]\n"
        f"import runpy; runpy.run_path({str(RUN_ALL)!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", block_peers], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "updated" in proc.stdout
    assert docs.read_bytes() == DOCS.read_bytes()


FAKE_BENCHMARK = """
import json
import sys


def check(d):
    return [{"what": "answer", "value": d["answer"], "target": ">= 43", "met": d["answer"] >= 43}]


def render(d):
    return "| answer |\\n|---|\\n| %d |" % d["answer"]


if __name__ == "__main__":
    print("measuring nothing")
    json.dump({"answer": 42}, open(sys.argv[sys.argv.index("--out") + 1], "w"))
"""


def test_a_run_records_the_load_and_the_targets(run_all, tmp_path, monkeypatch, capsys):
    """The loop over the table, on a script that measures nothing: its arguments, log, load
    record and the targets its module checks go to run_all.json; a missed target is printed."""
    script = tmp_path / "fake_bench.py"
    script.write_text(FAKE_BENCHMARK)
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = run_all.Script("fake_bench", str(script), torch_threads=True, args=("--x",))
    monkeypatch.setattr(run_all, "SCRIPTS", {"fake_bench": fake})
    out = tmp_path / "out"
    args = ["--out", str(out), "--torch-threads", "3", "--script-args", "fake_bench=--y 1"]
    payload = run_all.main([*args, "--settle-max", "0"])  # no wait for a quiet machine
    rec = payload["scripts"]["fake_bench"]
    assert rec["returncode"] == 0 and rec["quick"] is False
    assert rec["argv"][-5:] == ["--torch-threads", "3", "--x", "--y", "1"]
    assert {"load_before", "load_after", "own_cpu_s", "other_cpu_cores", "under_load"} <= set(rec)
    assert [c["met"] for c in payload["targets"]["fake_bench"]] == [False]
    assert json.loads((out / "run_all.json").read_text())["this_run"] == ["fake_bench"]
    assert (out / "logs" / "fake_bench.log").read_text() == "measuring nothing\n"
    assert "target missed: fake_bench: answer: 42, target >= 43" in capsys.readouterr().out
