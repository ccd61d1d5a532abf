"""The package layers of ``docs/concepts.md``, enforced on the source with ``ast``.

A module may import from its own package or from packages in lower layers, never from a
higher layer; within one layer imports are allowed only while the package graph stays
acyclic. ``import flowzoo`` loads neither diffrax nor orbax (checked in a fresh process).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "flowzoo"

LAYERS: list[set[str]] = [
    {"_types", "_numerics"},
    {"nets", "integrate", "distributions", "bijectors", "metrics", "data"},
    {"paths"},
    {"samplers"},
    {"flows", "cnf", "flow_matching", "score"},
    {"train", "checkpoint", "plots"},
    {"zoo"},
    {"bench"},
    {"cli", "experiments"},
]
"""Lowest first; the same list is the table in docs/concepts.md."""

RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
FAMILIES = {"flows", "cnf", "flow_matching", "score"}


def _package(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).parts
    return rel[0].removesuffix(".py")


def _targets(path: Path, root: Path = ROOT) -> set[str]:
    """The flowzoo top-level packages a module imports (relative or absolute)."""
    rel = list(path.relative_to(root).with_suffix("").parts)
    here = rel[:-1]  # the module's package path inside flowzoo
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                parts = base + (node.module.split(".") if node.module else [])
                names = parts[:1] if parts else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "flowzoo":
                parts = node.module.split(".")[1:]
                names = parts[:1] if parts else [a.name for a in node.names]
            else:
                names = []
            out.update(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "flowzoo" and len(parts) > 1:
                    out.add(parts[1])
    return out


def _graph(root: Path = ROOT) -> dict[str, dict[str, set[str]]]:
    """``graph[pkg][target] = {files}`` for every import between two flowzoo packages."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in root.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == root:
            continue  # the top-level namespace re-exports (lazily for the upper layers)
        pkg = _package(path, root)
        for target in _targets(path, root) - {pkg}:
            graph.setdefault(pkg, {}).setdefault(target, set()).add(str(path.relative_to(root)))
    return graph


def _upward(graph) -> list[str]:
    return [
        f"{pkg} (layer {RANK[pkg]}) imports {t} (layer {RANK[t]}) in {sorted(files)}"
        for pkg, targets in graph.items()
        for t, files in targets.items()
        if pkg in RANK and t in RANK and RANK[t] > RANK[pkg]
    ]


def _cycle(graph) -> list[str] | None:
    edges = {pkg: {t for t in targets if t in RANK} for pkg, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, node])):
                return cycle
        state[node] = 2
        return None

    for pkg in sorted(edges):
        if pkg not in state and (cycle := visit(pkg, [])):
            return cycle
    return None


def test_every_package_has_a_layer():
    packages = {_package(p) for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py"}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_import_from_a_higher_layer():
    upward = _upward(_graph())
    assert not upward, "\n".join(upward)


def test_families_never_import_train_zoo_or_cli():
    bad = [
        (pkg, t)
        for pkg, targets in _graph().items()
        if pkg in FAMILIES
        for t in targets
        if t in {"train", "zoo", "cli", "checkpoint", "bench"}
    ]
    assert not bad, bad


def test_no_cycle_between_packages():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_checker_finds_upward_imports_and_cycles(tmp_path):
    """The checkers fail on a synthetic tree: relative and absolute imports, upward and
    same-layer cycles."""
    root = tmp_path / "flowzoo"
    files = {
        "paths/_a.py": "from ..zoo import x\n",  # upward, relative
        "zoo/_b.py": "from flowzoo.paths import y\n",  # downward, absolute
        "flows/_c.py": "import flowzoo.score._d\n",  # same layer ...
        "score/_d.py": "from ..flows import c\n",  # ... and back: a cycle
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = _graph(root)
    assert graph["paths"] == {"zoo": {"paths/_a.py"}} and "paths" in graph["zoo"]
    upward = _upward(graph)
    assert len(upward) == 1 and upward[0].startswith("paths (layer 2) imports zoo")
    assert _cycle(graph) in (["flows", "score", "flows"], ["score", "flows", "score"])


HEAVY = ("diffrax", "orbax", "equinox", "matplotlib")
LAZY = ("flowzoo.train", "flowzoo.checkpoint", "flowzoo.zoo", "flowzoo.integrate")


def test_import_flowzoo_loads_no_diffrax_or_orbax():
    code = (
        "import sys, flowzoo\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {LAZY!r}]\n"
        "print(','.join(sorted(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"import flowzoo loaded: {out.stdout.strip()}"
    # and the check can fail: the lazy subpackages do load them
    code = code.replace("import sys, flowzoo", "import sys, flowzoo.zoo")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "diffrax" in out.stdout and "orbax.checkpoint" in out.stdout
