"""Command-line paths that ended in silence or a dead end: each now says what happened.

The real CLI on real libraries: ``main()`` in-process, or ``python -m photofind`` where a
second process matters (a lock held, the app running).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from photofind.cli import main
from photofind.clip.package import read_manifest
from photofind.demo import DEMO_COUNT, EXAMPLE_SEARCHES
from photofind.library.library import Library
from photofind.synthetic import encode, generate


def write_photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        scene, image, _ = generate(7, i)
        path = folder / f"s{i:02d}.{scene.format}"
        path.write_bytes(encode(image, scene.format))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def lib(random_package, tmp_path_factory):
    """A library of 12 generated photos (jpg and png) in one folder, indexed by the CLI
    with ``--model``; its model installed in the library, as the app installs one."""
    root = tmp_path_factory.mktemp("dead-ends")
    photos = root / "photos"
    write_photos(photos, 12)
    library = root / "lib"
    argv = ["--library", library, "--model", random_package, "--provider", "cpu"]
    assert main([str(a) for a in [*argv, "index", "--no-progress", photos]]) == 0
    shutil.copytree(random_package, library / "models" / read_manifest(random_package).name)
    return library


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in ("--provider", "cpu", *argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def photofind(*argv, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "photofind", "--provider", "cpu", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# -- search and similar -----------------------------------------------------------------------


def test_a_folder_not_in_the_library_is_an_error_naming_it_and_the_folders(lib, capsys):
    code, out, err = run(capsys, "--library", lib, "search", "x", "--folder", "/nope")
    assert code == 2 and out == ""
    assert "--folder /nope is not in the library" in err
    assert str(lib.parent / "photos") in err  # the folders it has
    assert err.count("\n") == 1


def test_a_folder_around_or_inside_a_library_folder_is_a_filter(lib, capsys):
    code, out, err = run(capsys, "--library", lib, "search", "x", "--all", "--folder", lib.parent)
    assert code == 0 and len(out.splitlines()) == 12 and err == ""
    inside = lib.parent / "photos" / "no album like this"
    code, out, err = run(capsys, "--library", lib, "search", "x", "--folder", inside)
    assert code == 0 and out == ""
    assert err == f"photofind: nothing found: no photo matches --folder {inside}\n"


def test_a_type_not_in_the_library_says_nothing_found_and_what_there_is(lib, capsys):
    code, out, err = run(capsys, "--library", lib, "search", "x", "--type", "gif")
    assert code == 0 and out == ""
    assert err == "photofind: nothing found: no photo of type gif (the library holds jpg, png)\n"
    code, out, err = run(capsys, "--library", lib, "search", "x", "--type", "gif", "--json")
    assert code == 0 and out.strip() == "[]" and "no photo of type gif" in err


def test_a_search_that_finds_something_says_nothing_more(lib, capsys):
    code, out, err = run(capsys, "--library", lib, "search", "x", "--all", "--type", "png")
    assert code == 0 and out and err == ""


def test_similar_of_a_folder_says_it_is_a_folder(lib, capsys):
    folder = lib.parent / "photos"
    code, out, err = run(capsys, "--library", lib, "similar", folder)
    assert code == 2 and out == ""
    assert f"{folder} is a folder: similar needs one picture file" in err
    assert "no such picture" not in err


def test_an_image_query_given_a_folder_says_it_is_a_folder(lib, capsys):
    folder = lib.parent / "photos"
    for query in (f"img:{folder}", f'img:"{folder}" + at dusk', f"image:{folder}/"):
        code, out, err = run(capsys, "--library", lib, "search", query)
        assert code == 2 and out == ""
        assert "img: takes a photo file; " in err and " is a folder" in err, err
        assert str(folder) in err and "no such picture" not in err
        assert err.count("\n") == 1


# -- index and watch use the library's model ----------------------------------------------------


def test_index_without_model_uses_the_librarys(lib, capsys):
    new = write_photos(lib.parent / "photos", 1, start=40)[0]
    try:
        code, _, err = run(capsys, "--library", lib, "index", "--no-progress")
        assert code == 0, err
        assert "no model chosen" not in err
        assert "scanned: 1 new" in err and "indexed 1 photos" in err
        with Library.open(lib, readonly=True) as library:
            assert library.catalog.photo_by_path(str(new)).status == "indexed"
    finally:
        new.unlink()
        assert run(capsys, "--library", lib, "index", "--no-progress")[0] == 0


def test_watch_without_model_uses_the_librarys(lib, tmp_path):
    folder = tmp_path / "more"
    write_photos(folder, 2, start=50)
    copy = tmp_path / "lib"
    shutil.copytree(lib, copy)
    proc = subprocess.Popen(
        [sys.executable, "-m", "photofind", "--library", str(copy), "--provider", "cpu"]
        + ["watch", "--quiet", "0.2", "--settle", "0.2", str(folder)],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    indexed = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "indexed 2 photo(s)" in line:
                indexed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert indexed.wait(60), "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        reader.join(10)
        proc.stderr.close()
    assert code == 0, "".join(lines)
    assert not any("no model chosen" in line for line in lines)


def test_a_library_whose_model_is_not_here_says_which_and_how(random_package, tmp_path, capsys):
    photos = tmp_path / "photos"
    write_photos(photos, 2)
    lib = tmp_path / "lib"
    argv = ("--library", lib, "--model", random_package, "index", "--no-progress", photos)
    assert run(capsys, *argv)[0] == 0
    code, _, err = run(capsys, "--library", lib, "index", "--no-progress")
    assert code == 2
    name = read_manifest(random_package).name
    assert f"indexed with model {name!r}, which is not installed here" in err
    assert "--model" in err and err.count("\n") == 1


def test_a_new_library_without_a_model_still_says_how_to_choose_one(tmp_path, capsys):
    write_photos(tmp_path / "photos", 1)
    code, _, err = run(capsys, "--library", tmp_path / "lib", "index", tmp_path / "photos")
    assert code == 2 and "no model chosen" in err
    assert not (tmp_path / "lib").exists()  # nothing made for a command that cannot run


# -- a library another process writes ---------------------------------------------------------


def test_while_the_app_holds_the_library_writers_say_what_reads_meanwhile(lib, capsys):
    with Library.open(lib):  # the writer lock, as the app holds it
        code, out, err = run(capsys, "--library", lib, "index", "--no-progress")
        assert code == 2 and err.count("\n") == 1
        assert f"pid {os.getpid()}" in err
        assert "`photofind status`, `list`, `search`, `similar`" in err and "read-only" in err
        code, out, err = run(capsys, "--library", lib, "status")
        assert code == 0 and "indexed: 12" in out


def test_status_of_an_empty_library_points_at_the_demo(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    with Library.open(tmp_path / "demo"):
        pass  # a demo library exists beside the (empty) user library
    code, _, err = run(capsys, "--library", tmp_path, "status")
    assert code == 2
    assert f"the demo library is {tmp_path / 'demo'}" in err
    assert f"`photofind --library {tmp_path / 'demo'} ...`" in err


# -- the demo -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_home(random_package, tmp_path_factory):
    """A built demo library (``home/demo``), made by ``--demo status`` once."""
    home = tmp_path_factory.mktemp("demo-home")
    done = photofind("--library", home, "--model", random_package, "--demo", "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"demo library {home / 'demo'}: {DEMO_COUNT} photos")
    assert done.stderr == f"building the demo library in {home / 'demo'} (once) ...\n"
    return home


def test_demo_with_a_command_reads_a_demo_the_app_holds(demo_home, random_package):
    with Library.open(demo_home / "demo"):  # the app has the demo open
        done = photofind("--library", demo_home, "--model", random_package, "--demo", "status")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # built already: not built again, no lock needed
    for text in EXAMPLE_SEARCHES:
        assert f'search "{text}"' in done.stdout


def run_app_until_it_watches(home: Path, *argv) -> tuple[str, str]:
    """``python -m photofind ARGV`` (the app, offscreen, logging under ``home``) until its
    log file says the watcher runs (so a model was loaded and indexing began); then it is
    terminated. Its stdout and stderr."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PHOTOFIND_HOME": str(home)}
    log_file = home / "logs" / "photofind.log"
    before = log_file.read_text() if log_file.is_file() else ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "photofind", "--provider", "cpu", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        tick = threading.Event()
        while (
            "watcher: folder"
            not in (log_file.read_text() if log_file.is_file() else "")[len(before) :]
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the app did not start watching"
            tick.wait(0.1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    return out, err


def test_the_app_opens_an_indexed_library_with_its_model(lib, tmp_path):
    copy = tmp_path / "lib"
    shutil.copytree(lib, copy)
    run_app_until_it_watches(tmp_path, "--library", copy)  # no --model, no `models use`


def test_demo_without_a_command_opens_the_app_and_prints_nothing(demo_home, random_package):
    """The README: `--demo` builds, indexes and opens the demo; only with a COMMAND does it
    print example searches. The app logs to its file, not to the terminal."""
    out, err = run_app_until_it_watches(
        demo_home, "--library", demo_home, "--model", random_package, "--demo"
    )
    assert out == ""
    assert not [line for line in err.splitlines() if line.startswith(("INFO", "DEBUG"))], err
    assert "building the demo library" not in err  # built already
