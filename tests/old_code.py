"""The photofind package of an older commit, taken out of this repository's history.

The schema upgrade tests have a library written by the code of the schema before: the last
commit before the one that added the next schema's steps to migrations.py, unpacked with
``git archive`` and run in a subprocess with it on ``PYTHONPATH``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = "photofind/library/migrations.py"


def code_before(added: str, into: Path, *, schema: str, file: str = MIGRATIONS) -> Path:
    """The photofind package of the last commit before ``added`` (a string such as
    ``"_V4 = ["``) first appeared in ``file`` (migrations.py), unpacked in ``into``, which
    is returned; ``schema`` names that code for the skip message. The caller checks that
    the unpacked ``file`` is the one it expects."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip(f"needs this repository's git history (the {schema} code comes from it)")
    introduced = subprocess.run(
        ["git", "-C", str(REPO), "log", "--format=%H", "-S", added, "--", file],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    # Before the commit that adds the next schema is made (a working tree), HEAD is still
    # the code of this one.
    revision = f"{introduced[-1]}^" if introduced else "HEAD"
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "photofind"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into


def old_migrations(code: Path) -> str:
    """The text of migrations.py in code unpacked by :func:`code_before`."""
    return (code / MIGRATIONS).read_text()
