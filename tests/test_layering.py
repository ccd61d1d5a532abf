"""The package layers of ``docs/concepts.md``, enforced on the source with ``ast``.

A module may import from its own package or from packages in lower layers, never from a
higher layer; within one layer imports are allowed only while the package graph stays
acyclic. Inside every package the modules import each other without a circle, and no module
imports another package's private module or name (``flowzoo.X._y`` is ``X``'s own business);
every ``import`` statement counts, those inside function bodies too. Tests import only
public names, except the private helpers on :data:`PRIVATE_IN_TESTS`. ``import flowzoo``
loads neither diffrax nor orbax (checked in a fresh process).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1] / "flowzoo"
TESTS = Path(__file__).resolve().parent
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
"""The built-in experiments (top level of the repository): they may use any layer, through
public names only."""

LAYERS: list[set[str]] = [
    {"_types", "_numerics", "_compile", "malloc", "prng"},
    {"nets", "integrate", "distributions", "bijectors", "metrics", "data"},
    {"paths"},
    {"samplers"},
    {"flows", "cnf", "flow_matching", "score"},
    {"train", "checkpoint", "plots"},
    {"zoo"},
    {"bench"},
    {"cli"},
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
    return _find_cycle({pkg: {t for t in targets if t in RANK} for pkg, targets in graph.items()})


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                path = [*stack, node]
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, node])):
                return cycle
        state[node] = 2
        return None

    for pkg in sorted(edges):
        if pkg not in state and (cycle := visit(pkg, [])):
            return cycle
    return None


class _Import(NamedTuple):
    """One flowzoo module (``name is None``) or one name from a flowzoo module."""

    module: str  # dotted, e.g. "flowzoo.zoo._run"
    name: str | None
    line: int

    @property
    def dotted(self) -> str:
        return self.module if self.name is None else f"{self.module}.{self.name}"


def _module(path: Path, root: Path = ROOT) -> str:
    """The dotted name of the module at ``path`` (a package's ``__init__.py``: the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(dotted: str, root: Path = ROOT) -> bool:
    return root.parent.joinpath(*dotted.split("."), "__init__.py").is_file()


def _is_module(dotted: str, root: Path = ROOT) -> bool:
    return (
        _is_package(dotted, root)
        or root.parent.joinpath(*dotted.split(".")).with_suffix(".py").is_file()
    )


def _imports(path: Path, root: Path = ROOT) -> list[_Import]:
    """Every flowzoo module or name the file ``path`` imports, relative or absolute, from
    every ``import`` statement (function bodies included). ``from P import n`` imports the
    module ``P.n`` where that module exists, else the name ``n`` of ``P``."""
    out: list[_Import] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [
                _Import(a.name, None, node.lineno)
                for a in node.names
                if a.name.split(".")[0] == root.name
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only inside the package tree
                here = _module(path, root).split(".")
                package = here if path.name == "__init__.py" else here[:-1]
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != root.name:
                continue
            for a in node.names:
                sub = f"{module}.{a.name}"
                found = _is_module(sub, root)
                out.append(
                    _Import(sub if found else module, None if found else a.name, node.lineno)
                )
    return out


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _private_owner(imp: _Import, root: Path = ROOT) -> str | None:
    """The package a private module or name belongs to (``flowzoo.zoo`` for
    ``flowzoo.zoo._run`` and everything in it), or ``None`` for a public import."""
    parts = imp.module.split(".")
    for i, part in enumerate(parts[1:], 1):
        if _private(part):
            return ".".join(parts[:i])
    if imp.name is not None and _private(imp.name):
        return imp.module if _is_package(imp.module, root) else ".".join(parts[:-1])
    return None


def _private_imports(root: Path = ROOT) -> list[str]:
    """Imports of another package's private module or name, as ``file:line imports ...``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = _module(path, root)
        for imp in _imports(path, root):
            owner = _private_owner(imp, root)
            if owner is not None and here != owner and not here.startswith(owner + "."):
                where = path.relative_to(root.parent)
                bad.append(f"{where}:{imp.line} imports {imp.dotted}, private to {owner}")
    return bad


def _node_path(dotted: str, root: Path) -> list[str]:
    parts = dotted.split(".")
    return [*parts, "__init__"] if _is_package(dotted, root) else parts


def _module_graphs(root: Path = ROOT) -> dict[str, dict[str, dict[str, set[str]]]]:
    """``graphs[package][a][b] = {"file:line", ...}``: module ``a`` directly inside
    ``package`` (a module, a subpackage, or ``__init__`` for the package's own
    ``__init__.py``) imports module ``b`` of the same package (or something inside it)."""
    graphs: dict[str, dict[str, dict[str, set[str]]]] = {}
    for path in sorted(root.rglob("*.py")):
        src = _node_path(_module(path, root), root)
        for imp in _imports(path, root):
            dst = _node_path(imp.module, root)
            k = 0
            while k < min(len(src), len(dst)) and src[k] == dst[k]:
                k += 1
            if k == len(src) or k == len(dst):
                continue  # the module itself
            edges = graphs.setdefault(".".join(src[:k]), {}).setdefault(src[k], {})
            edges.setdefault(dst[k], set()).add(f"{path.relative_to(root.parent)}:{imp.line}")
    return graphs


def _module_cycles(root: Path = ROOT) -> list[str]:
    """One import cycle per package whose modules import each other in a circle, with the
    file and line of each import on it."""
    found = []
    for package, graph in sorted(_module_graphs(root).items()):
        cycle = _find_cycle({a: set(targets) for a, targets in graph.items()})
        if cycle is not None:
            where = [min(graph[a][b]) for a, b in pairwise(cycle)]
            found.append(f"{package}: {' -> '.join(cycle)} ({', '.join(where)})")
    return found


PRIVATE_IN_TESTS: dict[str, str] = {
    "flowzoo.bijectors._spline._knots": "the spline's knots, checked against its values",
    "flowzoo.bijectors._spline._derivatives": "the spline's knot derivatives, likewise",
    "flowzoo.bijectors._base": "the stack's Layers threshold, patched to test both layouts",
    "flowzoo.nets._unet._SelfAttention": "the UNet's attention block, tested on its own",
    "flowzoo.nets._unet._ResBlock": "the UNet's residual block, tested on its own",
    "flowzoo.flow_matching._assignment": "each host solver alone, and patched away (fallback)",
    "flowzoo.flow_matching._pipeline": "the prefetcher, patched to see its pool closed",
    "flowzoo.train._fit": "the step maker fit looks up, patched to interrupt a run",
    "flowzoo.zoo._run": "the summary, patched to fail; the resumable keys; the fit wrapper",
    "flowzoo.zoo._quality": "the classifier's training, patched to test its cache",
    "flowzoo.bench._peers": "the torch peers' fields against the exact ones (need torch)",
}
"""The private modules and names tests may import, each with its reason (a private helper
tested directly, or patched); every other test imports public names only."""


def _private_in_tests(tests: Path = TESTS, root: Path = ROOT) -> tuple[list[str], set[str]]:
    """Private flowzoo imports in ``tests`` off the allow-list, and the allow-list entries
    in use."""
    bad, used = [], set()
    for path in sorted(tests.rglob("*.py")):
        for imp in _imports(path, root):
            if _private_owner(imp, root) is None:
                continue
            if imp.dotted in PRIVATE_IN_TESTS:
                used.add(imp.dotted)
            else:
                bad.append(f"{path.relative_to(tests.parent)}:{imp.line} imports {imp.dotted}")
    return bad, used


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


def test_no_import_cycle_between_modules_inside_a_package():
    cycles = _module_cycles()
    assert not cycles, "modules that import each other in a circle:\n" + "\n".join(cycles)


def test_no_import_of_another_packages_private_module():
    bad = _private_imports()
    assert not bad, "import the public name from the package instead:\n" + "\n".join(bad)


def test_tests_import_only_public_names_except_the_allow_list():
    bad, used = _private_in_tests()
    assert not bad, (
        "tests import private flowzoo modules or names (make the name public, or add it "
        "to PRIVATE_IN_TESTS with its reason):\n" + "\n".join(bad)
    )
    unused = sorted(set(PRIVATE_IN_TESTS) - used)
    assert not unused, f"PRIVATE_IN_TESTS entries no test imports: {unused}"


def test_experiments_import_only_public_names():
    bad, allowed = _private_in_tests(EXPERIMENTS)
    private = bad + sorted(allowed)
    assert not private, "experiments import private flowzoo names:\n" + "\n".join(private)


def test_checker_finds_module_cycles_and_private_imports(tmp_path):
    """The module checks fail on a synthetic tree: a circle through an import inside a
    function, one through a package's ``__init__``, private modules and names imported
    from another package (relative and absolute), and in tests."""
    root = tmp_path / "flowzoo"
    files = {
        "__init__.py": "",
        "_types.py": "",
        "cli.py": "from ._types import Key\nfrom .zoo._a import a\n",  # private module
        "data/__init__.py": "_hidden = 1\n",
        "zoo/__init__.py": "from ._a import a\n",
        "zoo/_a.py": "from ._b import b\nfrom ._b import _helper\n",  # own package: fine
        "zoo/_b.py": "def f():\n    from . import _a\n",  # the circle, in a function
        "flows/__init__.py": "from ._x import x\n",
        "flows/_x.py": "def x():\n    from flowzoo.flows import y\n",  # through __init__
        "bench/__init__.py": "",
        "bench/_l.py": "import flowzoo.zoo._b\nfrom flowzoo.data import _hidden\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert _module_cycles(root) == [
        "flowzoo.flows: __init__ -> _x -> __init__ "
        "(flowzoo/flows/__init__.py:1, flowzoo/flows/_x.py:2)",
        "flowzoo.zoo: _a -> _b -> _a (flowzoo/zoo/_a.py:1, flowzoo/zoo/_b.py:2)",
    ]
    assert _private_imports(root) == [
        "flowzoo/bench/_l.py:1 imports flowzoo.zoo._b, private to flowzoo.zoo",
        "flowzoo/bench/_l.py:2 imports flowzoo.data._hidden, private to flowzoo.data",
        "flowzoo/cli.py:2 imports flowzoo.zoo._a.a, private to flowzoo.zoo",
    ]
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text(
        "from flowzoo.zoo import a\n"
        "def test():\n    from flowzoo.zoo import _a\n"
        "from flowzoo.nets._unet import _ResBlock\n"  # on the allow-list
    )
    bad, used = _private_in_tests(tests, root)
    assert bad == ["tests/test_x.py:3 imports flowzoo.zoo._a"]
    assert used == {"flowzoo.nets._unet._ResBlock"}


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


@pytest.mark.slow
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
