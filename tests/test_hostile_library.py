"""Hostile photos, catalogs, index files and disks (issue 14): each attack reproduced for real.

Real SQLite, real hnswlib files, generated photos. Small and read-only disks are real
file systems: a tmpfs mounted (and remounted read-only) for the test where this process
may mount, as root on Linux can. Elsewhere the disk-full scenarios run in a subprocess under
``RLIMIT_FSIZE`` (files cannot grow past the room left), and the read-only one uses a
folder without write permission, which only binds a user who is not root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from images import write_photo_jpeg

from photofind.clip.preprocess import open_photo
from photofind.errors import ImageError, PhotofindError
from photofind.library.catalog import CATALOG_NAME, LOCK_NAME, Catalog, CatalogError
from photofind.library.hashing import partial_hash
from photofind.library.hnsw_file import structure_problem
from photofind.library.library import Library
from photofind.library.lockfile import LockFileError
from photofind.library.scanner import FileInfo, ScanResult
from photofind.library.vector_index import (
    INDEX_NAME,
    SIDECAR_NAME,
    CatalogLostError,
    VectorIndex,
    VectorIndexError,
)

HERE = Path(__file__).resolve().parent
DIM = 32

# A PostScript program that never ends: Ghostscript spins on it at 100% CPU for good.
LOOPING_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n{} loop\nshowpage\n"


# -- helpers ---------------------------------------------------------------------------------


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill_catalog(catalog: Catalog, folder: Path, n: int, *, seed: int = 0) -> list[int]:
    """``n`` photos in the catalog with unit vectors (no encoder needed): their ids."""
    f = catalog.add_folder(folder)
    start = catalog.max_photo_id()
    scan = ScanResult(
        added=[
            FileInfo(f.id, str(folder / f"p{start + i:06d}.jpg"), 1000 + i, i, f"h{start + i}")
            for i in range(n)
        ]
    )
    ids = catalog.apply_scan(scan).added_ids
    if catalog.model_id is None:
        catalog.set_model("hostile-test@0123456789abcdef")
    catalog.record_embeddings(zip(ids, unit_vectors(n, seed=seed), [None] * n))
    return ids


def make_photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_photo_jpeg(folder / f"p{i}.jpg", 64, 48, seed=i) for i in range(n)]


def can_mount() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("mount")


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real tmpfs of ``size`` at ``path`` for the block; None when mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    if not can_mount():
        yield None
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(folder: Path, leave: int) -> None:
    """Write a filler file until only about ``leave`` bytes are free on ``folder``'s disk."""
    with open(folder / "filler", "wb") as f:
        while (free := shutil.disk_usage(folder).free) > leave:
            try:
                f.write(b"\0" * min(1 << 16, max(4096, free - leave)))
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break


def on_small_disk(tmp_path: Path, how: str, room: int, scenario: str) -> None:
    """Run ``scenario(folder, room, squeeze)`` (a function of this module), which calls
    ``squeeze(dir)`` when writes beyond about ``room`` more bytes must start failing:

    - ``"tmpfs"``: a small tmpfs, filled up to that (the disk is full for every file);
    - ``"rlimit"``: in a subprocess whose files may not grow past ``room`` bytes beyond the
      largest file in ``dir`` (RLIMIT_FSIZE): one big file fails while small ones still fit.
    """
    if how == "tmpfs":
        with tmpfs(tmp_path / "small", "4m") as disk:
            if disk is None:
                pytest.skip("mounting a tmpfs needs root on Linux; the rlimit case runs instead")
            globals()[scenario](disk, room, lambda _dir: fill_disk(disk, room))
        return
    if sys.platform == "win32":
        pytest.skip("RLIMIT_FSIZE is POSIX")
    folder = tmp_path / "limited"
    folder.mkdir(exist_ok=True)
    code = textwrap.dedent(
        f"""
        import os, resource, signal, sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
        import test_hostile_library as t

        def squeeze(where):
            biggest = max((p.stat().st_size for p in where.rglob("*") if p.is_file()), default=0)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
            limit = biggest + {room}
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        t.{scenario}(t.Path({str(folder)!r}), {room}, squeeze)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def run_with_deadline(fn, timeout: float, unblock=lambda: None):
    """``fn()`` on a thread; fails the test if it does not return within ``timeout`` s (then
    ``unblock()`` is called so that the stuck thread can end)."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        unblock()
        thread.join(timeout)
        pytest.fail(f"still blocked after {timeout} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


# -- 2. photos open only as the formats photofind reads: never Ghostscript -----------------


@pytest.fixture
def fake_ghostscript(tmp_path, monkeypatch):
    """A ``gs`` first on PATH that only leaves a marker file: proof of whether Pillow ran it."""
    from PIL import EpsImagePlugin

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-was-run"
    gs = bin_dir / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 1\n')
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # found again, on this PATH
    # Pillow hands gs its output file in the temporary folder: watch an empty one.
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return marker


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as gs")
def test_eps_named_jpg_is_failed_and_ghostscript_never_runs(model, tmp_path, fake_ghostscript):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    eps = photos / "photo.jpg"
    eps.write_bytes(LOOPING_EPS)
    write_photo_jpeg(photos / "real.jpg", width=96, height=64, seed=1)

    # The trap is real: Pillow left to itself runs our gs on this file.
    with pytest.raises(Exception), Image.open(eps) as img:  # noqa: B017,PT011 - gs fails
        img.load()
    assert fake_ghostscript.exists()
    fake_ghostscript.unlink()

    with Library.open(tmp_path / "lib") as library:
        library.add_folder(photos)
        library.scan()
        stats = library.index_pending(model, batch_size=4)
        assert (stats.indexed, stats.failed) == (1, 1)
        failed = library.catalog.photo_by_path(eps)
        assert failed.status == "failed"
        assert "PostScript (EPS)" in failed.error and "Ghostscript" in failed.error
        assert str(eps) in failed.error

    # Every other place a user's picture is opened: img: searches, thumbnails, the preview.
    from photofind.clip.preprocess import open_image
    from photofind.gui.preview import load_preview
    from photofind.gui.thumbnails import make_thumbnail
    from photofind.library.exif import capture_date

    for open_it in (
        open_image,
        lambda p: model.encode_images([p]),
        lambda p: make_thumbnail(str(p), tmp_path / "thumbs"),
        lambda p: load_preview(str(p), None, None),
    ):
        with pytest.raises(ImageError, match="EPS"):
            open_it(eps)
    assert capture_date(eps) is None
    assert not fake_ghostscript.exists(), fake_ghostscript.read_text()
    assert list((tmp_path / "tmpdir").iterdir()) == []


# -- 5. a photo replaced by a FIFO; a decode that never ends -------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_photo_replaced_by_fifo_after_the_scan_fails_at_once(model, tmp_path):
    photos = tmp_path / "photos"
    paths = make_photos(photos, 3)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(photos)
        library.scan()
        os.unlink(paths[1])
        os.mkfifo(paths[1])  # between the scan and the decode

        def unblock():  # a writer end lets a reader blocked in open() go on
            fd = os.open(paths[1], os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)

        # Its size and mtime are no longer the scan's: left for the next scan, never opened.
        stats = run_with_deadline(lambda: library.index_pending(model), 60, unblock)
        assert (stats.indexed, stats.failed, stats.changed) == (2, 0, 1)
        run_with_deadline(library.scan, 30, unblock)
        stats = run_with_deadline(lambda: library.index_pending(model), 60, unblock)
        photo = library.catalog.photo_by_path(paths[1])
        assert photo.status == "failed" and "not a regular file" in photo.error, photo

        # Opened anyway (a FIFO put in place with the scan's size and mtime is not possible,
        # but a race between that check and the open is): refused without blocking.
        def open_it():
            with open_photo(paths[1]):
                pass

        with pytest.raises((ImageError, OSError), match="named pipe"):
            run_with_deadline(open_it, 30, unblock)

        # The scanner's content hash (run on new files) meets the same race.
        with pytest.raises(OSError, match="named pipe"):
            run_with_deadline(lambda: partial_hash(paths[1]), 30, unblock)


class _GatedModel:
    """The real model, except that decoding ``slow`` waits for ``gate`` (a decode that
    hangs, as on a stuck network share): everything else passes through."""

    def __init__(self, model, slow: set[str], gate: threading.Event):
        self._model, self._slow, self._gate = model, slow, gate

    def preprocess(self, item, **kw):
        if os.fspath(item) in self._slow:
            self._gate.wait(120)
        return self._model.preprocess(item, **kw)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_a_photo_whose_decode_hangs_is_failed_after_the_time_limit(model, tmp_path):
    photos = tmp_path / "photos"
    paths = make_photos(photos, 6)
    gate = threading.Event()
    try:
        with Library.open(tmp_path / "lib") as library:
            library.add_folder(photos)
            library.scan()
            slow = _GatedModel(model, {str(paths[2])}, gate)
            stats = run_with_deadline(
                lambda: library.index_pending(slow, photo_time_limit_s=3.0, decode_workers=2),
                60,
                gate.set,
            )
            assert (stats.indexed, stats.failed) == (5, 1)
            photo = library.catalog.photo_by_path(paths[2])
            assert photo.status == "failed" and "took over 3 s" in photo.error
    finally:
        gate.set()


def test_every_decode_thread_stuck_ends_the_run_and_keeps_the_failures(model, tmp_path):
    from photofind.library.decode_pool import DecodeStuck

    photos = tmp_path / "photos"
    paths = make_photos(photos, 3)
    gate = threading.Event()
    try:
        with Library.open(tmp_path / "lib") as library:
            library.add_folder(photos)
            library.scan()
            slow = _GatedModel(model, {str(p) for p in paths[:2]}, gate)
            with pytest.raises(DecodeStuck, match="stuck"):
                run_with_deadline(
                    lambda: library.index_pending(slow, photo_time_limit_s=2.0, decode_workers=1),
                    60,
                    gate.set,
                )
            # The photo that overran is failed, not left pending to hang the next run; the
            # one no thread was free to begin is still pending.
            statuses = sorted(library.catalog.photo_by_path(p).status for p in paths[:2])
            assert statuses == ["failed", "pending"]
    finally:
        gate.set()


# -- 6. a library on read-only media ---------------------------------------------------------


def _make_small_library(model, root: Path, photos: Path) -> list[Path]:
    paths = make_photos(photos, 4)
    with Library.open(root) as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(model)
    return paths


def test_library_on_read_only_media_is_searchable(model, tmp_path):
    from photofind.gui.thumbnails import make_thumbnail
    from photofind.search import SearchEngine

    with tmpfs(tmp_path / "media", "16m") as media:
        root = (media or tmp_path / "media") / "lib"
        paths = _make_small_library(model, root, tmp_path / "photos")
        # Closed cleanly: SQLite folded its WAL in and removed -wal and -shm.
        assert sorted(p.name for p in root.glob(f"{CATALOG_NAME}*")) == [CATALOG_NAME]
        if media is not None:
            subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True)
            assert os.statvfs(media).f_flag & os.ST_RDONLY
        elif os.geteuid() != 0:
            root.chmod(0o555)  # a folder this user may not write binds only non-root
        else:
            pytest.skip("root without mount: no read-only file system to test on")
        try:
            with Library.open(root, readonly=True) as library:
                assert library.status()["indexed"] == 4
                vector = model.encode_images([paths[1]])[0]
                ids, _ = library.index.query(vector, 1)
                assert library.catalog.photo(int(ids[0])).path == str(paths[1])
                results = SearchEngine(library, model).search(f"img:{paths[3]}", k=1)
                assert results[0].path == str(paths[3])
            # The app's thumbnails too, though their cache there cannot be written.
            assert not make_thumbnail(str(paths[0]), root / "thumbnails").isNull()
            assert not (root / f"{CATALOG_NAME}-shm").exists()
        finally:
            if media is not None:
                subprocess.run(["mount", "-o", "remount,rw", str(media)], check=True)
            root.chmod(0o755)


# -- 15. unclear errors: a corrupt catalog opened read-only, a full disk mid-write ----------


def test_corrupt_catalog_opened_read_only_says_so(tmp_path, capsys):
    from photofind.cli import EXIT_ERROR, main

    root = tmp_path / "lib"
    root.mkdir()
    (root / CATALOG_NAME).write_bytes(b"this is no SQLite database, just junk\n" * 200)
    with pytest.raises(CatalogError, match="not a usable catalog"):
        Library.open(root, readonly=True)
    assert main(["--library", str(root), "status"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "not a usable catalog" in err and "unexpected" not in err


def scenario_full_disk_mid_transaction(folder: Path, room: int, squeeze) -> None:
    """A write transaction far bigger than the room left on the disk."""
    root = folder / "lib"
    with Catalog.open(root) as catalog:
        fill_catalog(catalog, folder / "photos", 20)
        before = catalog.counts()
        squeeze(root)
        # ~3 MB of paths: the page cache spills mid-transaction and SQLite, out of room,
        # rolls the transaction back by itself before our code sees the error.
        f = catalog.folders()[0]
        big = ScanResult(
            added=[
                FileInfo(f.id, str(folder / "photos" / f"{'x' * 200}{i:06d}.jpg"), 1, 1, "h")
                for i in range(15_000)
            ]
        )
        try:
            catalog.apply_scan(big)
        except CatalogError as exc:
            message = str(exc)
        else:
            raise AssertionError("the write fitted: the disk was not small enough")
        assert "was not saved" in message and "cannot rollback" not in message, message
        assert catalog.counts() == before  # nothing half-written, and the catalog still reads
    with Catalog.open(root, readonly=True) as catalog:
        assert catalog.counts() == before


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_full_disk_mid_write_is_one_clear_line_and_changes_nothing(tmp_path, how):
    on_small_disk(tmp_path, how, 256 * 1024, "scenario_full_disk_mid_transaction")


# -- 7. the WAL deleted, then a writer crash: never an empty catalog over the vectors ------


def test_catalog_that_lost_its_wal_is_refused_and_the_index_kept(tmp_path):
    root = tmp_path / "lib"
    # A writer that commits photos and vectors and saves the index, then dies: nothing
    # checkpointed the WAL into the catalog file.
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
        import test_hostile_library as t
        from photofind.library.library import Library
        library = Library.open({str(root)!r})
        t.fill_catalog(library.catalog, t.Path({str(tmp_path / "photos")!r}), 50)
        library.index = t.VectorIndex.build(library.catalog)
        library.index.save(library.root)
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    wal = root / f"{CATALOG_NAME}-wal"
    assert wal.stat().st_size > 0
    wal.unlink()  # deleted under a reader (a cleanup tool, a sync client)
    (root / f"{CATALOG_NAME}-shm").unlink()
    saved = {name: (root / name).read_bytes() for name in (INDEX_NAME, SIDECAR_NAME)}

    for readonly in (False, True):
        with pytest.raises(CatalogLostError, match="50 vectors") as err:
            Library.open(root, readonly=readonly)
        assert "Nothing was changed" in str(err.value) and INDEX_NAME in str(err.value)
    assert {name: (root / name).read_bytes() for name in saved} == saved

    # The catalog gone altogether: not even an empty one is made in its place.
    (root / CATALOG_NAME).unlink()
    with pytest.raises(CatalogLostError):
        Library.open(root)
    assert not (root / CATALOG_NAME).exists()
    assert {name: (root / name).read_bytes() for name in saved} == saved

    # The user's say: without the index files, the library starts over.
    for name in saved:
        (root / name).unlink()
    with Library.open(root) as library:
        assert library.status()["indexed"] == 0


def test_removing_every_photo_is_not_taken_for_a_lost_catalog(tmp_path):
    root = tmp_path / "lib"
    with Library.open(root) as library:
        fill_catalog(library.catalog, tmp_path / "photos", 10)
        library.index = VectorIndex.build(library.catalog)
        library.index.save(root)
        saved = {name: (root / name).read_bytes() for name in (INDEX_NAME, SIDECAR_NAME)}
        library.remove_folder(tmp_path / "photos")
    for name, data in saved.items():  # as if it crashed before the index was saved
        (root / name).write_bytes(data)
    with Library.open(root) as library:  # the catalog moved on since: an honest empty one
        assert len(library.index) == 0


# -- 18. catalog.lock as a link ----------------------------------------------------------------


def test_lock_file_that_is_a_symlink_or_hard_link_is_refused(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's file\n")
    (root / LOCK_NAME).symlink_to(precious)
    with pytest.raises(LockFileError, match="symbolic link"):
        Catalog.open(root)
    (root / LOCK_NAME).unlink()
    os.link(precious, root / LOCK_NAME)
    with pytest.raises(LockFileError, match="hard links"):
        Catalog.open(root)
    assert precious.read_text() == "the user's file\n"
    (root / LOCK_NAME).unlink()
    if hasattr(os, "mkfifo"):  # a pipe there neither blocks nor is written
        os.mkfifo(root / LOCK_NAME)
        with pytest.raises(LockFileError, match="not a regular file"):
            run_with_deadline(lambda: Catalog.open(root), 30)
        (root / LOCK_NAME).unlink()
    with Catalog.open(root) as catalog:
        assert catalog.counts()["indexed"] == 0
    assert stat.S_ISREG(os.lstat(root / LOCK_NAME).st_mode)


# -- 19. a damaged sidecar: the index is derived, rebuild it --------------------------------


def _tampered(meta: dict, how: str):
    if how == "a list":
        return []
    changed = dict(meta)
    if how == "huge deleted id":
        changed["deleted"] = [2**40]
    elif how == "huger deleted id":
        changed["deleted"] = [10**30]
    elif how == "negative deleted id":
        changed["deleted"] = [-1]
    elif how == "deleted id not in the index":
        changed["deleted"] = [9_999]
        changed["count"] = meta["count"] - 1
    elif how == "wrong dimension":
        changed["dim"] = 4096  # hnswlib would read the vectors with it, past its buffers
    elif how == "absurd ef":
        changed["params"] = {**meta["params"], "ef": 10**12}
    return changed


@pytest.mark.parametrize(
    "how",
    [
        "a list",
        "huge deleted id",
        "huger deleted id",
        "negative deleted id",
        "deleted id not in the index",
        "wrong dimension",
        "absurd ef",
    ],
)
def test_damaged_sidecar_rebuilds_the_index(tmp_path, how, caplog):
    root = tmp_path / "lib"
    with Catalog.open(root) as catalog:
        ids = fill_catalog(catalog, tmp_path / "photos", 40)
        VectorIndex.build(catalog).save(root)
        meta = json.loads((root / SIDECAR_NAME).read_text())
        (root / SIDECAR_NAME).write_text(json.dumps(_tampered(meta, how)))
        with caplog.at_level(logging.WARNING, logger="photofind.library.vector_index"):
            index = VectorIndex.open(root, catalog)
        assert "rebuilding" in caplog.text
        assert len(index) == 40 and index.dim == DIM
        found, _ = index.query(catalog.embedding(ids[7]), 1)
        assert found.tolist() == [ids[7]]
        # Rewritten: the next open loads it without a rebuild.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="photofind.library.vector_index"):
            assert len(VectorIndex.open(root, catalog)) == 40
        assert "rebuilding" not in caplog.text


# -- 20. the library folder inside a watched photo folder ------------------------------------


def test_library_inside_a_photo_folder_is_never_indexed(model, tmp_path):
    from photofind.library.watcher import Watcher, WatchOptions

    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo_jpeg(photos / "real.jpg", 64, 48, seed=1)
    root = photos / "photofind-library"
    thumbs = root / "thumbnails" / "ab"
    with Library.open(root) as library:
        with pytest.raises(PhotofindError, match="own library folder"):
            library.add_folder(root)
        library.add_folder(photos)
        thumbs.mkdir(parents=True)
        write_photo_jpeg(thumbs / "abcdef.jpg", 32, 24, seed=2)
        report = library.scan()
        assert [Path(f.path).name for f in report.result.added] == ["real.jpg"]

        # The watcher: a thumbnail written while it runs, then a new photo (which it must
        # see, so that the test knows it has looked).
        batches: list = []
        seen = threading.Condition()

        def on_batch(batch):
            with seen:
                batches.append(batch)
                seen.notify_all()

        fast = WatchOptions(quiet_s=0.1, max_delay_s=1.0, settle_s=0.0, health_s=0.2)
        watcher = Watcher(library, model, fast, on_batch=on_batch).start()
        try:
            write_photo_jpeg(thumbs / "fedcba.jpg", 32, 24, seed=3)
            write_photo_jpeg(photos / "new.jpg", 64, 48, seed=4)
            with seen:
                assert seen.wait_for(
                    lambda: library.catalog.photo_by_path(photos / "new.jpg") is not None, 30
                )
            watcher.request_full_reconcile("test")
            with seen:
                count = len(batches)
                assert seen.wait_for(lambda: any(b.full for b in batches[count:]), 30)
        finally:
            watcher.stop()
        assert watcher.error is None
        names = sorted(Path(p.path).name for p in library.catalog.photos())
        assert names == ["new.jpg", "real.jpg"]


# -- 21. a folder path longer than the system allows ---------------------------------------


def _deep_folder(root: Path, over: int) -> int:
    """Nest folders under ``root`` until a path is longer than ``over`` bytes, with a photo
    at the bottom (made through folder descriptors: no path is that long). Its length."""
    photo = root / "top.jpg"
    write_photo_jpeg(photo, 32, 24, seed=0)
    fd = os.open(root, os.O_RDONLY)
    length = len(os.fsencode(root))
    try:
        while length <= over:
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            deeper = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
            length += 1 + len(name)
        out = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, photo.read_bytes())
        os.close(out)
    finally:
        os.close(fd)
    return length


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's PATH_MAX")
def test_folder_path_over_path_max_is_reported_not_skipped_silently(tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    _deep_folder(photos, 4096)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(photos)
        with caplog.at_level(logging.WARNING, logger="photofind.library.library"):
            report = library.scan()
        assert [Path(f.path).name for f in report.result.added] == ["top.jpg"]
        (problem,) = report.result.problems
        assert len(os.fsencode(problem.path)) > 4096
        assert "bytes long" in problem.reason and "4,096" in problem.reason
        assert "PATH_MAX" in caplog.text


# -- 22. a full disk while the index is saved ------------------------------------------------


def scenario_full_disk_saving_the_index(folder: Path, room: int, squeeze) -> None:
    root = folder / "lib"
    root.mkdir()
    with Catalog.open(folder / "catalog") as catalog:
        fill_catalog(catalog, folder / "photos", 10)
        index = VectorIndex.build(catalog)
        index.save(root)
        saved = {name: (root / name).read_bytes() for name in (INDEX_NAME, SIDECAR_NAME)}
        fill_catalog(catalog, folder / "more", 3000, seed=1)  # ~1.4 MB of index
        index.sync(catalog)
        squeeze(root)
        # The attack: hnswlib "saves" on a full disk without a word, an empty or cut file.
        raw = root / "raw.hnsw"
        index._index.save_index(os.fspath(raw))
        assert structure_problem(raw, DIM) is not None
        raw.unlink()
        try:
            index.save(root)
        except VectorIndexError as exc:
            message = str(exc)
        else:
            raise AssertionError("the index fitted: the disk was not small enough")
        assert "cannot save the vector index" in message and "previous index" in message
        assert {name: (root / name).read_bytes() for name in saved} == saved
        assert sorted(p.name for p in root.iterdir()) == sorted(saved)  # no temporary left
        # The kept index is whole: it loads and catches up from the catalog; saving that
        # fails on the full disk too, and the library opens all the same, from memory.
        assert len(VectorIndex.open(root, catalog)) == 3010
        assert {name: (root / name).read_bytes() for name in saved} == saved


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_full_disk_while_saving_the_index_keeps_the_old_one(tmp_path, how):
    # rlimit: the index file is cut off but the small sidecar still fits, as on the disk
    # that had a few KB left, where only the structure check stops the sidecar vouching.
    on_small_disk(tmp_path, how, 200 * 1024, "scenario_full_disk_saving_the_index")


def test_index_file_structure_check_passes_hnswlib_files(tmp_path):
    import hnswlib

    for n in (0, 1, 500):
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=max(n, 1), M=8, ef_construction=20)
        if n:
            index.add_items(unit_vectors(n), np.arange(n))
        index.save_index(str(tmp_path / "x.hnsw"))
        assert structure_problem(tmp_path / "x.hnsw", DIM) is None
        assert "header" in structure_problem(tmp_path / "x.hnsw", DIM + 1)
        data = (tmp_path / "x.hnsw").read_bytes()
        (tmp_path / "x.hnsw").write_bytes(data[: len(data) - 1])
        assert structure_problem(tmp_path / "x.hnsw", DIM) is not None


# -- network file systems: no WAL there ------------------------------------------------------


def _mountinfo_with(tmp_path: Path, folder: Path, fs_type: str) -> Path:
    """This machine's mount table plus ``folder`` mounted as ``fs_type`` (a network file
    system cannot be mounted in a test: the server is another machine)."""
    real = Path("/proc/self/mountinfo")
    lines = real.read_text().splitlines() if real.exists() else []
    escaped = os.path.realpath(folder).replace(" ", "\\040")
    lines.append(
        f"999 1 0:99 / {escaped} rw,relatime shared:99 - {fs_type} server:/photos rw,vers=4.2"
    )
    table = tmp_path / "mountinfo"
    table.write_text("\n".join(lines) + "\n")
    return table


@pytest.mark.parametrize("fs_type", ["nfs4", "cifs", "fuse.sshfs"])
def test_catalog_on_a_network_file_system_uses_no_wal(tmp_path, monkeypatch, caplog, fs_type):
    from photofind.library import filesystems

    local = tmp_path / "local"
    with Catalog.open(local) as catalog:
        assert catalog.network_fs is None
        assert catalog._query("PRAGMA journal_mode")[0][0] == "wal"

    share = tmp_path / "on the share"
    with Catalog.open(share) as catalog:  # made locally in WAL mode, then moved to a share
        fill_catalog(catalog, tmp_path / "photos", 3)
    monkeypatch.setattr(filesystems, "MOUNTINFO", str(_mountinfo_with(tmp_path, share, fs_type)))
    # Still held in WAL mode by another connection: refused, not written in WAL there.
    other = sqlite3.connect(share / CATALOG_NAME)
    try:
        other.execute("SELECT COUNT(*) FROM photos").fetchall()
        with pytest.raises(CatalogError, match="still in WAL mode"):
            Catalog.open(share)
    finally:
        other.close()
    with caplog.at_level(logging.WARNING, logger="photofind.library.catalog"):
        catalog = Catalog.open(share)
    with catalog:
        assert catalog.network_fs == fs_type
        assert catalog._query("PRAGMA journal_mode")[0][0] == "delete"
        assert f"network file system ({fs_type})" in caplog.text and "WAL" in caplog.text
        fill_catalog(catalog, tmp_path / "more", 2, seed=1)
        assert not (share / f"{CATALOG_NAME}-wal").exists()
        with Catalog.open(share, readonly=True) as reader:  # readers still read beside it
            assert reader.counts()["indexed"] == 5
    # Back on a local disk (the table of this machine): WAL again.
    monkeypatch.setattr(filesystems, "MOUNTINFO", "/proc/self/mountinfo")
    with Catalog.open(share) as catalog:
        assert catalog._query("PRAGMA journal_mode")[0][0] == "wal"
