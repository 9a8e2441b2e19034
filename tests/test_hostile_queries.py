"""Hostile input at the query end: ONNX Runtime's telemetry, huge queries, silly numbers,
and file names that try to forge terminal output or inject rich text.

Each test reproduces the attack of issue 14 (items 11, 12, 15, 16, 17) against the real code:
real ONNX sessions in subprocesses with an empty home, the real tokenizer, the real CLI on a
real library, real Qt widgets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_SYNTHETIC = REPO / "resources" / "models" / "tiny-synthetic"
LAUNCHER = REPO / "resources" / "installer" / "launcher.py"

# -- 11: ONNX Runtime's telemetry -----------------------------------------------------------

# Where onnxruntime 1.31.1 puts its telemetry (measured with strace and find on an empty
# home): a device id and an events database under the user cache, a session file in $TMPDIR.
TELEMETRY_NAMES = {"deviceid", "onnxruntime.db", ".ses"}


def _sandbox_env(home: Path) -> dict[str, str]:
    """An environment built from nothing but an empty home: no inherited
    ORT_DISABLE_TELEMETRY (this test process has it, from importing photofind) and no CI
    variables (onnxruntime stays silent under CI, GITHUB_ACTIONS, ... which would make the
    control below pass for the wrong reason)."""
    dirs = {
        "HOME": home,
        "XDG_CONFIG_HOME": home / "config",
        "XDG_CACHE_HOME": home / "cache",
        "XDG_DATA_HOME": home / "data",
        "XDG_STATE_HOME": home / "state",
        "XDG_RUNTIME_DIR": home / "runtime",
        "TMPDIR": home / "tmp",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {key: str(path) for key, path in dirs.items()}
    env.update(
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        PYTHONPATH=str(REPO),
        QT_QPA_PLATFORM="offscreen",
        LANG="C.UTF-8",
    )
    return env


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def _run_in_sandbox(tmp_path: Path, argv: list[str]) -> set[Path]:
    """Run ``argv`` with an empty home; the files it left there."""
    home = tmp_path / "home"
    env = _sandbox_env(home)
    before = _files(home)
    done = subprocess.run(
        argv, env=env, cwd=home, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return _files(home) - before


def _telemetry(files: set[Path]) -> set[Path]:
    return {f for f in files if f.name in TELEMETRY_NAMES or "Microsoft" in f.parts}


# A real session of the shipped model, run through onnxruntime directly.
_RAW_SESSION = f"""
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession({str(TINY_SYNTHETIC / "textual.onnx")!r},
                         providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
ids = np.zeros([d if isinstance(d, int) else 1 for d in inp.shape],
               dtype=np.int32 if "int32" in inp.type else np.int64)
print(s.run(None, {{inp.name: ids}})[0].shape)
"""


def test_plain_onnxruntime_writes_telemetry_files_control(tmp_path):
    """The control: without photofind, onnxruntime does write them (else the tests below
    would prove nothing)."""
    written = _telemetry(_run_in_sandbox(tmp_path, [sys.executable, "-c", _RAW_SESSION]))
    names = {f.name for f in written}
    assert {"deviceid", "onnxruntime.db"} <= names, (
        f"this onnxruntime wrote no telemetry files ({written}): the tests of item 11 need "
        "a new control"
    )


_ENCODE = f"""
from photofind.clip import load_model
print(load_model({str(TINY_SYNTHETIC)!r}, provider="cpu").encode_texts(["a red circle"]).shape)
"""


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("import photofind.clip\n" + _ENCODE, id="import-photofind.clip"),
        pytest.param("import photofind.gui.app\n" + _ENCODE, id="gui-entry"),
        # The model store inspects graphs with onnxruntime before photofind.clip is loaded.
        pytest.param("import photofind.models.adapters\n" + _RAW_SESSION, id="model-store"),
    ],
)
def test_no_telemetry_file_from_photofind_sessions(tmp_path, entry):
    written = _run_in_sandbox(tmp_path, [sys.executable, "-c", entry])
    assert not _telemetry(written), written


def test_no_telemetry_file_from_the_cli(tmp_path):
    argv = [sys.executable, "-m", "photofind", "--library", str(tmp_path / "lib")]
    argv += ["--model", str(TINY_SYNTHETIC), "--provider", "cpu", "embed", "--text", "a cat"]
    written = _run_in_sandbox(tmp_path, argv)
    assert not _telemetry(written), written


def test_no_telemetry_file_from_the_bundle_launcher(tmp_path):
    """The bundle's self-test imports onnxruntime before photofind: only the launcher's own
    switch can come first there."""
    written = _run_in_sandbox(
        tmp_path, [sys.executable, str(LAUNCHER), "--bundle-selftest", "info"]
    )
    assert not _telemetry(written), written


def test_an_inherited_zero_does_not_turn_telemetry_back_on(tmp_path):
    code = "import os\nos.environ['ORT_DISABLE_TELEMETRY'] = '0'\nimport photofind\n" + _RAW_SESSION
    written = _run_in_sandbox(tmp_path, [sys.executable, "-c", code])
    assert not _telemetry(written), written
