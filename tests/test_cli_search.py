"""`photofind search`, `similar`, `doctor` and `--demo`, on real libraries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from photofind.cli import main
from photofind.clip import load_model
from photofind.clip.package import read_manifest
from photofind.demo import ALBUMS, DEMO_COUNT, PHOTOS_DIR, build_demo_library
from photofind.library.library import Library
from photofind.synthetic import encode, generate

COUNT = 60


@pytest.fixture(scope="module")
def lib(random_package, tmp_path_factory):
    """A library of COUNT generated photos (a/ dated 2015, b/ now), indexed by the CLI."""
    root = tmp_path_factory.mktemp("cli-search")
    for i in range(COUNT):
        scene, image, _ = generate(3, i)
        folder = root / "photos" / ("a" if i < 10 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"s{i:02d}.{scene.format}"
        path.write_bytes(encode(image, scene.format))
        if folder.name == "a":
            os.utime(path, (1434000000, 1434000000))  # June 2015
    library = root / "lib"
    argv = ["--library", library, "--model", random_package, "--provider", "cpu"]
    code = main([str(a) for a in argv + ["index", "--no-progress", root / "photos"]])
    assert code == 0
    return library


def run_json(capsys, *argv):
    assert main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out)


def cli(lib, random_package, *argv):
    return ("--library", lib, "--model", random_package, "--provider", "cpu", *argv)


def test_search_json_is_a_ranked_list_of_path_and_score(lib, random_package, capsys):
    out = run_json(
        capsys, *cli(lib, random_package, "search", "a red circle", "-n", 7, "--json", "--all")
    )
    assert len(out) == 7
    assert all(set(item) == {"path", "score"} for item in out)
    scores = [item["score"] for item in out]
    assert scores == sorted(scores, reverse=True)
    assert all(Path(item["path"]).is_file() for item in out)
    page2 = run_json(
        capsys,
        *cli(
            lib, random_package, "search", "a red circle", "-n", 3, "--offset", 4, "--json", "--all"
        ),
    )
    assert page2 == out[4:7]


def test_search_text_output_and_cutoff_note(lib, random_package, capsys):
    assert (
        main([str(a) for a in cli(lib, random_package, "search", "a red circle", "-n", 3, "--all")])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    score, path = lines[0].split("  ", 1)
    assert 0 <= abs(float(score)) <= 1 and Path(path).is_file()
    # Without --all the cut-off applies (a random-weight model's photos never stand out
    # much); the note on stderr counts what it dropped.
    assert (
        main([str(a) for a in cli(lib, random_package, "search", "a red circle", "-n", COUNT)]) == 0
    )
    captured = capsys.readouterr()
    kept = len(captured.out.splitlines())
    assert kept < COUNT
    assert f"({COUNT - kept} more below the relevance cut-off" in captured.err


def test_search_filters(lib, random_package, capsys):
    a = str(lib.parent / "photos" / "a")
    out = run_json(
        capsys, *cli(lib, random_package, "search", "x", "-n", 50, "--json", "--all", "--folder", a)
    )
    assert len(out) == 10 and all(Path(i["path"]).parent == Path(a) for i in out)
    dated = run_json(
        capsys,
        *cli(lib, random_package, "search", "x", "-n", 50, "--json", "--all")
        + ("--after", "2015-06", "--before", "2015"),
    )
    assert sorted(i["path"] for i in dated) == sorted(i["path"] for i in out)
    pngs = run_json(
        capsys,
        *cli(lib, random_package, "search", "x", "-n", 50, "--json", "--all", "--type", "png"),
    )
    assert pngs and all(i["path"].endswith(".png") for i in pngs)


def test_similar_finds_the_photo_first(lib, random_package, capsys):
    photo = sorted((lib.parent / "photos" / "b").iterdir())[0]
    out = run_json(capsys, *cli(lib, random_package, "similar", photo, "-n", 4, "--json", "--all"))
    assert len(out) == 4
    assert out[0]["path"] == str(photo)
    assert out[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_search_without_model_uses_the_librarys(lib, random_package, capsys):
    name = read_manifest(random_package).name
    installed = lib / "models" / name
    shutil.copytree(random_package, installed)
    try:
        out = run_json(capsys, "--library", lib, "search", "x", "-n", 2, "--json", "--all")
        assert len(out) == 2
    finally:
        shutil.rmtree(installed)


def test_errors_are_one_line(lib, random_package, tmp_path, capsys):
    assert main([str(a) for a in cli(lib, random_package, "search", "beach +")]) == 2
    assert "ends with an operator" in capsys.readouterr().err
    assert main([str(a) for a in cli(lib, random_package, "similar", tmp_path / "no.jpg")]) == 2
    assert "no such picture" in capsys.readouterr().err
    assert main([str(a) for a in cli(lib, random_package, "search", "x", "--after", "soon")]) == 2
    assert "date 'soon' not understood" in capsys.readouterr().err
    empty = tmp_path / "empty"
    assert main(["--library", str(empty), "search", "x"]) == 2
    assert "no photofind library" in capsys.readouterr().err


def test_search_works_while_another_process_indexes(lib, random_package):
    # This process holds the writer lock (as an indexing run would); the search is another
    # process and opens the library read-only.
    with Library.open(lib):
        done = subprocess.run(
            [sys.executable, "-m", "photofind"]
            + [str(a) for a in cli(lib, random_package, "search", "x", "-n", 3, "--json", "--all")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 3


def test_doctor(lib, random_package, capsys):
    report = run_json(capsys, *cli(lib, random_package, "doctor", "--json"))
    versions = report["versions"]
    for key in ("photofind", "python", "onnxruntime", "numpy", "Pillow", "hnswlib", "PySide6"):
        assert versions[key]
    assert "CPUExecutionProvider" in report["providers"]["available"]
    assert report["providers"]["in_use"] == "cpu"
    assert report["providers"]["reason"] == "CPU requested"
    assert report["model"]["path"] == str(random_package)
    assert report["model"]["matches_library"] is True
    assert report["library"]["indexed"] == COUNT
    assert report["library"]["catalog_bytes"] > 0
    assert report["paths"]["library"] == str(lib)
    assert set(report["watch_limits"]) == {"max_user_watches", "max_user_instances"}
    assert main([str(a) for a in cli(lib, random_package, "doctor")]) == 0
    text = capsys.readouterr().out
    assert "max_user_watches" in text and "onnxruntime" in text


def test_doctor_on_a_fresh_machine(tmp_path, capsys):
    report = run_json(capsys, "--library", tmp_path / "nothing", "doctor", "--json")
    assert report["library"]["exists"] is False
    assert report["providers"]["in_use"] is None
    assert "error" in report["model"]


def test_demo_library_is_built_once(random_package, tmp_path):
    model = load_model(random_package, "cpu")
    root = build_demo_library(tmp_path / "demo", model, count=12)
    photos = sorted((root / PHOTOS_DIR).rglob("demo_*"))
    assert len(photos) == 12
    assert {p.parent.name for p in photos} == set(ALBUMS)
    stamps = {p: p.stat().st_mtime_ns for p in photos}
    with Library.open(root, readonly=True) as library:
        assert library.status()["indexed"] == 12
        generation = library.catalog.generation
    assert build_demo_library(root, model, count=12) == root
    assert {p: p.stat().st_mtime_ns for p in photos} == stamps
    with Library.open(root, readonly=True) as library:
        assert library.catalog.generation == generation  # nothing re-indexed


def test_demo_flag_builds_and_searches(random_package, tmp_path, capsys):
    # With a command, --demo builds and prints instead of opening the app.
    argv = ["--library", tmp_path, "--model", random_package, "--provider", "cpu", "--demo"]
    argv += ["status"]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert f"demo library {tmp_path / 'demo'}: {DEMO_COUNT} photos" in out
    assert 'search "a red circle"' in out
