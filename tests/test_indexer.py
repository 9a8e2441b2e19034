"""The indexing pipeline on real folders, a real catalog, a real index and a real model."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from images import (
    write_huge_png,
    write_photo_jpeg,
    write_text_as_jpeg,
    write_truncated_jpeg,
    write_zero_byte,
)

from photofind.library.indexer import IndexControl
from photofind.library.library import Library


def make_photos(folder, n, start=0, size=(160, 120)):
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_photo_jpeg(folder / f"photo {i:03d}.jpg", width=size[0], height=size[1], seed=i)
        for i in range(start, start + n)
    ]


def agree(library: Library) -> None:
    """Catalog and index hold exactly the same photos, each once."""
    ids = library.catalog.embedding_ids()
    assert sorted(library.index.ids().tolist()) == ids.tolist()
    assert len(library.index) == len(ids) == library.status()["indexed"]
    for photo_id in ids[:5]:
        np.testing.assert_allclose(
            library.index.get_vectors([photo_id])[0],
            library.catalog.embedding(int(photo_id)),
            atol=1e-6,
        )


def test_indexes_a_folder_and_search_finds_each_photo(model, tmp_path):
    photos = make_photos(tmp_path / "photos", 20)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "photos")
        library.scan()
        stats = library.index_pending(model, batch_size=8)
        assert (stats.indexed, stats.failed, stats.cancelled) == (20, 0, False)
        agree(library)
        # A photo's own vector finds the photo itself first.
        for path in photos[:3]:
            vec = model.encode_images([path])[0]
            ids, _ = library.index.query(vec, 1)
            assert library.catalog.photo(int(ids[0])).path == str(path)


def test_bad_inputs_never_stop_indexing(model, tmp_path):
    folder = tmp_path / "mixed"
    make_photos(folder, 4)
    write_truncated_jpeg(folder / "truncated.jpg")
    write_zero_byte(folder / "empty.jpg")
    write_text_as_jpeg(folder / "notes.jpg")
    write_huge_png(folder / "huge.png", 20_000, 20_000)
    os.symlink(folder / "gone.jpg", folder / "broken link.jpg")
    os.symlink(folder / "loop b.jpg", folder / "loop a.jpg")
    os.symlink(folder / "loop a.jpg", folder / "loop b.jpg")
    odd = [
        "with space.jpg",
        "emoji 📷🎉.jpg",
        "ünïcödé 写真.jpg",
    ]
    for i, name in enumerate(odd):
        shutil.copy(folder / f"photo {i:03d}.jpg", folder / name)
    raw = os.fsencode(folder) + b"/latin1-\xe9t\xe9.jpg"
    shutil.copy(folder / "photo 000.jpg", raw)
    vanishing = folder / "vanishing.jpg"
    shutil.copy(folder / "photo 001.jpg", vanishing)

    with Library.open(tmp_path / "lib") as library:
        library.add_folder(folder)
        library.scan()
        vanishing.unlink()  # deleted between the scan and the decode
        stats = library.index_pending(model, batch_size=4)
        assert stats.indexed == 4 + len(odd) + 1
        by_name = {os.path.basename(p.path): p for p in library.catalog.photos()}
        agree(library)

    failed = {name: p.error for name, p in by_name.items() if p.status == "failed"}
    expected_failed = {
        "truncated.jpg",
        "empty.jpg",
        "notes.jpg",
        "huge.png",
        "broken link.jpg",
        "loop a.jpg",
        "loop b.jpg",
        "vanishing.jpg",
    }
    assert set(failed) == expected_failed
    for name, reason in failed.items():
        assert reason and len(reason) > 8, name
    assert "megapixel" in failed["huge.png"].lower() or "pixels" in failed["huge.png"]
    assert by_name[os.fsdecode(b"latin1-\xe9t\xe9.jpg")].status == "indexed"
    for name in odd:
        assert by_name[name].status == "indexed"


def test_rerun_on_unchanged_folder_encodes_nothing(model, tmp_path):
    make_photos(tmp_path / "photos", 12)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "photos")
        library.scan()
        assert library.index_pending(model).indexed == 12
    with Library.open(tmp_path / "lib") as library:
        report = library.scan()
        assert report.result.unchanged == 12 and not report.result.changed
        stats = library.index_pending(model)
        assert (stats.indexed, stats.failed) == (0, 0)
        agree(library)


def test_renamed_folder_keeps_its_vectors(model, tmp_path):
    make_photos(tmp_path / "root" / "album", 10)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "root")
        library.scan()
        library.index_pending(model)
        before = {
            os.path.basename(p.path): library.catalog.embedding(p.id)
            for p in library.catalog.photos()
        }
        (tmp_path / "root" / "album").rename(tmp_path / "root" / "holiday 2026")
        report = library.scan()
        assert len(report.result.moved) == 10 and not report.result.added
        assert library.index_pending(model).indexed == 0
        for p in library.catalog.photos():
            assert "holiday 2026" in p.path
            np.testing.assert_array_equal(
                library.catalog.embedding(p.id), before[os.path.basename(p.path)]
            )
        agree(library)


def test_removing_a_folder_removes_its_photos_from_catalog_and_index(model, tmp_path):
    make_photos(tmp_path / "a", 5)
    make_photos(tmp_path / "b", 4, start=5)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "a")
        library.add_folder(tmp_path / "b")
        library.scan()
        library.index_pending(model)
        assert library.remove_folder(tmp_path / "a") == 5
        assert library.status()["indexed"] == 4
        agree(library)
    with Library.open(tmp_path / "lib", readonly=True) as library:
        agree(library)


def test_pause_resume_and_cancel(model, tmp_path):
    make_photos(tmp_path / "photos", 40)
    control = IndexControl()
    seen = []

    def progress(p):
        seen.append(p)
        if p.done >= 8 and not control.cancelled:
            control.cancel()

    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "photos")
        library.scan()
        stats = library.index_pending(model, batch_size=4, progress=progress, control=control)
        assert stats.cancelled and 8 <= stats.indexed < 40
        agree(library)
        assert [p.done for p in seen] == sorted(p.done for p in seen)

        # Paused from the start: nothing moves until resumed from another thread.
        indexed_before = library.status()["indexed"]
        control = IndexControl()
        control.pause()
        resumed = []

        def on_progress(p):
            resumed.append(p.done)

        runner = threading.Thread(
            target=lambda: resumed.append(
                library.index_pending(model, batch_size=4, progress=on_progress, control=control)
            )
        )
        runner.start()
        assert control.paused
        assert resumed in ([], [0])  # at most the opening report
        control.resume()
        runner.join(timeout=120)
        stats = resumed[-1]
        assert stats.indexed == 40 - indexed_before and not stats.cancelled
        assert library.status()["pending"] == 0
        agree(library)


def test_second_writer_is_refused_while_readers_work(model, tmp_path):
    make_photos(tmp_path / "photos", 3)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "photos")
        library.scan()
        library.index_pending(model)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "photofind",
                "--library",
                tmp_path / "lib",
                "folders",
                "add",
                tmp_path,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "another photofind process" in done.stderr
        status = subprocess.run(
            [sys.executable, "-m", "photofind", "--library", tmp_path / "lib", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["indexed"] == 3


def _index_command(random_package, lib, photos):
    return [
        sys.executable,
        "-m",
        "photofind",
        "--library",
        str(lib),
        "--model",
        str(random_package),
        "--provider",
        "cpu",
        "index",
        "--no-progress",
        "--batch-size",
        "4",
        str(photos),
    ]


def _indexed_count(lib) -> int:
    """Committed photos, read the way a second process would (read-only catalog)."""
    from photofind.library import Catalog

    try:
        with Catalog.open(lib, readonly=True) as catalog:
            return catalog.counts()["indexed"]
    except Exception:  # noqa: BLE001 - not created yet, or mid-creation
        return 0


def _kill_when(proc, lib, target: int) -> None:
    """SIGKILL ``proc`` once ``target`` photos are committed (or when it ends by itself)."""
    while proc.poll() is None and _indexed_count(lib) < target:
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(random_package, model, tmp_path):
    """Killed 20 times at random moments and restarted, the library ends complete.

    Every fourth kill lands at a random time after start (start-up, scan, first batch);
    the others at a random point of the indexing itself, chosen by committed count.
    """
    count = 400
    make_photos(tmp_path / "photos", count, size=(320, 240))
    lib = tmp_path / "lib"
    rng = random.Random(1)
    cmd = _index_command(random_package, lib, tmp_path / "photos")
    for i in range(20):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 4 == 0:
            try:
                proc.wait(timeout=rng.uniform(0.05, 1.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        else:
            _kill_when(proc, lib, _indexed_count(lib) + rng.randint(1, 40))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Library.open(lib) as library:
        status = library.status()
        assert (status["indexed"], status["pending"], status["failed"]) == (count, 0, 0)
        paths = [p.path for p in library.catalog.photos()]
        assert len(paths) == len(set(paths)) == count
        agree(library)


def test_a_killed_run_resumes_where_it_stopped(random_package, model, tmp_path):
    make_photos(tmp_path / "photos", 60, size=(320, 240))
    lib = tmp_path / "lib"
    cmd = _index_command(random_package, lib, tmp_path / "photos")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lib, 8)
    with Library.open(lib) as library:
        already = library.status()["indexed"]
        assert already >= 8
        agree(library)
        stats = library.index_pending(model)
        assert stats.indexed == 60 - already
        agree(library)
