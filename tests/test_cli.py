"""The command line skeleton: global options, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from photofind import __version__
from photofind.cli import main


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "photofind", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"photofind {__version__}"


def test_help_lists_the_commands():
    done = run_cli("--help")
    assert done.returncode == 0
    for name in ("index", "status", "list", "folders", "gui", "eval", "embed"):
        assert name in done.stdout


def test_embed_prints_unit_vectors(random_package, tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(photo)
    code = main(
        ["--model", str(random_package), "--provider", "cpu", "embed", "--text", "a dog"]
        + ["--image", str(photo)]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["provider"] == "cpu"
    assert [("image" in i, "text" in i) for i in out["items"]] == [(True, False), (False, True)]
    for item in out["items"]:
        assert abs(np.linalg.norm(item["vector"]) - 1) < 1e-4


def test_errors_are_one_line_and_exit_2(tmp_path):
    done = run_cli("--model", tmp_path / "missing-model", "embed", "--text", "x")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("photofind: error:") and "missing-model" in lines[0]
    assert "Traceback" not in done.stderr


def test_verbose_shows_the_traceback(tmp_path):
    done = run_cli("-v", "--model", tmp_path / "missing-model", "embed", "--text", "x")
    assert done.returncode == 2
    assert "Traceback" in done.stderr


def test_no_model_says_how_to_choose_one(capsys, tmp_path):
    assert main(["--library", str(tmp_path), "embed", "--text", "x"]) == 2
    assert "--model" in capsys.readouterr().err


def test_bad_photo_is_a_clear_error(random_package, tmp_path, capsys):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    assert main(["--model", str(random_package), "embed", "--image", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "empty.jpg" in err and err.count("\n") == 1


def test_library_option_and_env(monkeypatch, tmp_path):
    from photofind.paths import library_dir

    monkeypatch.setenv("PHOTOFIND_HOME", str(tmp_path / "env"))
    assert library_dir() == tmp_path / "env"
    assert library_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("PHOTOFIND_HOME")
    assert library_dir().name == "photofind"
