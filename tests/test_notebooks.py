"""The tutorial notebooks: each ``docs/notebooks/*.py`` (jupytext percent format, the source
of truth) runs top to bottom in a fresh process, its ``assert`` lines included, and the
``.ipynb`` rendered in the docs holds the same cells (regenerate it with
``bash docs/notebooks/build.sh NAME.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("*.py"))


def test_the_six_tutorials_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert names == {
        "compose_a_flow",
        "flow_matching",
        "score_models",
        "benchmark_a_sampler",
        "data_parallel",
        "pretrained_models",
    }


@pytest.mark.slow
@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(source, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(source)],
        cwd=tmp_path,  # nothing is written next to the sources
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in notebook.cells if c.source.strip()]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_matches_its_source_and_is_executed(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"run: bash docs/notebooks/build.sh {source.name}"
    built = nbformat.read(ipynb, as_version=4)
    assert _cells(jupytext.read(source)) == _cells(built), (
        f"{ipynb.name} is out of date: bash docs/notebooks/build.sh {source.name}"
    )
    code = [c for c in built.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "the .ipynb was not executed"
