"""The documentation's Python examples run, and the site's page references resolve.

Every ```` ```python ```` block of the hand-written pages (``docs/index.md``,
``docs/tutorials/*.md``, ``docs/concepts.md``, ...; not ``docs/api/``) is executed; a
page's blocks run in order in one namespace, so later blocks use the names earlier ones
defined. A block preceded (on the previous
non-blank line) by ``<!-- no-test -->`` is skipped: use it for signatures, pseudo-code
and plotting snippets. Tracebacks point at the Markdown file and line.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
MKDOCS_YML = DOCS.parent / "mkdocs.yml"
SKIP_MARKER = "<!-- no-test -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\n`]*)$")


def doc_pages() -> list[Path]:
    """Every page but the generated API pages: index first, then the rest in path order."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "api" not in p.relative_to(DOCS).parts)
    return sorted(pages, key=lambda p: p != DOCS / "index.md")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first code line, 0-based; code)`` of every runnable ```` ```python ```` block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        lang = opening["info"].strip().split(" ")[0].lower() if opening["info"].strip() else ""
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""
        ):
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        ]
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        if lang in ("python", "py") and previous != SKIP_MARKER:
            blocks.append((i + 1, "\n".join(body)))
        i = j + 1
    return blocks


def test_block_extraction():
    text = "\n".join(
        [
            "# t",
            "```python",
            "a = 1",
            "```",
            "<!-- no-test -->",
            "",
            "```python",
            "raise RuntimeError",
            "```",
            "```bash",
            "echo no",
            "```",
            "!!! note",
            "    ```python",
            "    b = a + 1",
            "    ```",
        ]
    )
    assert python_blocks(text) == [(2, "a = 1"), (14, "b = a + 1")]


def test_tutorials_have_examples():
    pages = sorted((DOCS / "tutorials").glob("*.md"))
    assert pages, "no tutorials found"
    for page in pages:
        assert python_blocks(page.read_text()), f"{page.name} has no runnable python block"


EXAMPLE_PAGES = [p for p in doc_pages() if python_blocks(p.read_text())]


def test_index_and_tutorials_are_tested():
    names = {str(p.relative_to(DOCS)) for p in EXAMPLE_PAGES}
    assert "index.md" in names
    assert any(n.startswith("tutorials/") for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything an example writes lands in a temporary folder
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for start, code in python_blocks(page.read_text()):
        # pad with newlines so tracebacks report the line number in the Markdown file
        exec(compile("\n" * start + code, str(page), "exec"), namespace)


def _nav_files() -> list[str]:
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", MKDOCS_YML.read_text(), flags=re.MULTILINE)


def test_nav_pages_exist():
    files = _nav_files()
    assert "index.md" in files
    missing = [f for f in files if not (DOCS / f).is_file()]
    assert not missing, f"mkdocs.yml nav lists missing pages: {missing}"


def test_api_pages_name_importable_modules():
    pages = sorted((DOCS / "api").glob("*.md"))
    assert pages
    for page in pages:
        targets = re.findall(r"^:::\s*([\w.]+)", page.read_text(), flags=re.MULTILINE)
        assert targets, f"{page.name} renders no module"
        for target in targets:
            importlib.import_module(target)


README = DOCS.parent / "README.md"


@pytest.mark.slow
def test_readme_examples_run(tmp_path, monkeypatch):
    """The README's Python blocks run as written (in order, one namespace)."""
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no runnable python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for start, code in blocks:
        exec(compile("\n" * start + code, str(README), "exec"), namespace)


def test_every_public_package_has_an_api_page():
    root = DOCS.parent / "flowzoo"
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    documented = {
        t.split(".")[1]
        for page in (DOCS / "api").glob("*.md")
        for t in re.findall(r"^:::\s*([\w.]+)", page.read_text(), flags=re.MULTILINE)
        if "." in t
    }
    assert packages <= documented | {"bench"}, sorted(packages - documented)


def test_ci_docs_build_counts_warnings():
    """CI builds the site with ``--strict`` and without ``--quiet`` (which drops warnings)."""
    ci = (DOCS.parent / ".ci" / "run").read_text()
    builds = [line for line in ci.splitlines() if "mkdocs build" in line]
    assert builds, ".ci/run does not build the docs"
    for line in builds:
        flags = line.split()
        assert "--strict" in flags, line
        assert "--quiet" not in flags and "-q" not in flags, line


def test_package_api_pages_render_members():
    """A package's API page renders the names it re-exports (``members: true``).

    Without it mkdocstrings shows only the package docstring, and every reference to one
    of its functions (``flowzoo.metrics.bits_per_dim``) has no target.
    """
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text()
        for target in re.findall(r"^:::\s*([\w.]+)", text, flags=re.MULTILINE):
            if hasattr(importlib.import_module(target), "__path__"):
                assert "members: true" in text, f"{page.name}: {target} renders no members"
