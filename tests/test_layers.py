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
        ("errors.py", "import photofind.clip", "the layers of DESIGN.md"),
        ("library/indexer.py", "import torch", "torch never runs inside the app"),
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
