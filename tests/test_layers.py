"""The import-linter contracts catch the holes a review found by adding imports by hand.

Each case copies the package, adds one forbidden import and runs the real ``lint-imports``
on the copy: the contracts must break. The unmodified copy must keep them all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))

pytestmark = pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT, "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    top = tmp_path_factory.mktemp("tree")
    shutil.copytree(
        ROOT / "photofind", top / "photofind", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", top / "pyproject.toml")
    return top


def test_the_tree_as_it_is_keeps_every_contract(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("models/store.py", "import PySide6", "Qt stays in photofind.gui"),
        ("models/store.py", "import photofind.gui", "the layers of DESIGN.md"),
        ("clip/package.py", "import photofind.models", "the layers of DESIGN.md"),
        ("library/catalog.py", "import photofind.search", "the layers of DESIGN.md"),
        ("search.py", "import photofind.cli", "the layers of DESIGN.md"),
        ("cli/watch.py", "import photofind.cli.library", "the command groups of photofind.cli"),
        ("cli/context.py", "import photofind.cli.search", "the command groups of photofind.cli"),
        ("errors.py", "import photofind.clip", "the layers of DESIGN.md"),
        ("library/indexer.py", "import torch", "torch never runs inside the app"),
        ("search.py", "import export.model", "torch never runs inside the app"),
        ("faces/detector.py", "import photofind.library", "the layers of DESIGN.md"),
        ("faces/models.py", "import photofind.clip", "the layers of DESIGN.md"),
        ("people.py", "import photofind.search", "the layers of DESIGN.md"),
        ("people.py", "import PySide6", "Qt stays in photofind.gui"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree, module, line, contract):
    path = tree / "photofind" / module
    before = path.read_text()
    try:
        path.write_text(before + f"\n{line}  # noqa\n")
        result = _lint(tree)
    finally:
        path.write_text(before)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout


def test_every_module_of_photofind_has_a_layer():
    """A module left out of the layers contract would be checked by nothing."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    named = {
        name.strip() for layer in contract["layers"] for name in layer.replace(":", "|").split("|")
    }
    package = ROOT / "photofind"
    modules = {f"photofind.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"photofind.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert sorted(modules - named) == []


# -- no import circle ------------------------------------------------------------------------

# Tarjan's strongly connected components over grimp's graph of photofind's modules: a
# component of more than one module is an import circle. grimp records every import
# statement, those inside functions too (it cannot tell them apart), and so does this check:
# a deferred import that closes a circle still ties the modules together.
_CIRCLES = r"""
import json, sys
import grimp

graph = grimp.build_graph("photofind")
modules = sorted(graph.modules)
edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
index, low, stack, on_stack, circles = {}, {}, [], set(), []
sys.setrecursionlimit(10_000)

def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            component.append(w)
            if w == v:
                break
        if len(component) > 1 or v in edges[v]:
            circles.append(sorted(component))

for m in modules:
    if m not in index:
        visit(m)
print(json.dumps(sorted(circles)))
"""

# No circle is left (imports deferred into functions count too).
KNOWN_CIRCLES: list[list[str]] = []


def _circles(tree: Path) -> list[list[str]]:
    import json

    pytest.importorskip("grimp")
    result = subprocess.run(
        [sys.executable, "-c", _CIRCLES],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_import_circle_among_the_modules_of_photofind(tree):
    assert _circles(tree) == KNOWN_CIRCLES


def test_a_command_module_importing_the_cli_package_is_a_circle(tree):
    """The circle the command line had: the package imports its command modules, so a
    command module that imports the package back closes a circle."""
    path = tree / "photofind" / "cli" / "watch.py"
    before = path.read_text()
    try:
        path.write_text(before + "\nimport photofind.cli  # noqa\n")
        circles = _circles(tree)
    finally:
        path.write_text(before)
    assert ["photofind.cli", "photofind.cli.watch"] in circles


def test_every_command_module_has_a_layer_in_the_cli_contract():
    """A command module left out of the CLI's own contract could import its siblings."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c.get("containers") == ["photofind.cli"]
    )
    named = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    modules = {p.stem for p in (ROOT / "photofind" / "cli").glob("*.py") if p.stem != "__init__"}
    assert sorted(modules - named) == []
