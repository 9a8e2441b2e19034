"""The catalog on real SQLite files: schema, migrations, paths, the pipeline's calls, locking."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from photofind.errors import PhotofindError
from photofind.library import Catalog, CatalogError, LibraryLockedError
from photofind.library.catalog import CATALOG_NAME
from photofind.library.migrations import SCHEMA_VERSION, migrate
from photofind.library.scanner import FailedFile, FileInfo, ScanResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ODD_NAMES = [
    "plain.jpg",
    "with space .jpg",
    "émoji 🎂 birthday.jpg",
    "日本語の写真.png",
    "tab\tand\nnewline.jpg",
    "'quote\" and ; drop table.jpg",
]
if sys.platform.startswith("linux"):
    ODD_NAMES.append(os.fsdecode(b"latin1-\xe9t\xe9-\xff.jpg"))  # not valid UTF-8


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def add_photos(cat: Catalog, folder, names) -> list[int]:
    scan = ScanResult(
        added=[
            FileInfo(folder.id, os.path.join(folder.path, n), 100 + i, 1000 + i, f"h{i}")
            for i, n in enumerate(names)
        ]
    )
    return cat.apply_scan(scan).added_ids


@pytest.fixture
def cat(tmp_path):
    with Catalog.open(tmp_path / "lib") as c:
        yield c


def test_fresh_catalog_is_migrated_and_configured(tmp_path):
    with Catalog.open(tmp_path) as cat:
        conn = cat._conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"meta", "folders", "photos"} <= tables
        assert cat.model_id is None and cat.generation == 0
        # Idempotent: running the migrations again applies nothing.
        assert migrate(conn) == 0
    with Catalog.open(tmp_path) as cat:
        assert cat._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migration_from_empty_database_file(tmp_path):
    sqlite3.connect(tmp_path / CATALOG_NAME).close()  # a zero-byte/empty db at version 0
    conn = sqlite3.connect(tmp_path / CATALOG_NAME, isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    assert migrate(conn) == 0
    conn.close()
    with Catalog.open(tmp_path) as cat:
        assert cat.counts() == {"indexed": 0, "pending": 0, "failed": 0, "offline": 0}


def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    conn = sqlite3.connect(tmp_path / CATALOG_NAME, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(PhotofindError, match="newer than this photofind"):
        Catalog.open(tmp_path)
    # the failed open released its writer lock: the same error again, not "locked"
    with pytest.raises(PhotofindError, match="newer than this photofind"):
        Catalog.open(tmp_path)


def test_garbage_catalog_file_gives_catalog_error(tmp_path):
    (tmp_path / CATALOG_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match=CATALOG_NAME):
        Catalog.open(tmp_path)


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_file_names_round_trip_exactly(cat, tmp_path, name):
    folder = cat.add_folder(tmp_path / "photos ✨")
    (photo_id,) = add_photos(cat, folder, [name])
    expected = os.path.join(folder.path, name)
    photo = cat.photo(photo_id)
    assert photo.path == expected
    assert os.fsencode(photo.path) == os.fsencode(expected)
    assert cat.photo_by_path(expected).id == photo_id
    assert [p.path for p in cat.photos()] == [expected]
    assert list(cat.known_files(folder.id)) == [expected]
    assert [f.path for f in cat.folders()] == [folder.path]


def test_known_files_read_in_chunks_are_the_folders_files(cat, tmp_path):
    import gc

    a, b = cat.add_folder(tmp_path / "a"), cat.add_folder(tmp_path / "b")
    ids_a = add_photos(cat, a, [f"{i}.jpg" for i in range(7)])
    add_photos(cat, b, ["other.jpg"])
    known = cat.known_files(a.id, chunk=3)  # three chunks, the last one short
    paths = [os.path.join(a.path, f"{i}.jpg") for i in range(7)]
    assert list(known) == paths and len(known) == 7
    assert [k.id for k in known.values()] == ids_a
    first = known[paths[0]]
    assert (first.folder_id, first.path, first.status) == (a.id, paths[0], "pending")
    assert known.get(os.path.join(b.path, "other.jpg")) is None
    assert os.path.join(b.path, "other.jpg") not in known
    # Its rows are no work for the garbage collector once it has looked at them.
    gc.collect()
    assert not gc.is_tracked(known._rows)


def test_photos_by_id_reads_many_at_once_and_skips_removed_ones(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    ids = add_photos(cat, folder, [f"p{i}.jpg" for i in range(7)])
    cat.apply_scan(ScanResult(removed=[ids[3]]))
    asked = [ids[5], ids[3], ids[0], ids[5], 10**9]  # a duplicate, a removed and an unknown id
    found = cat.photos_by_id(asked, chunk=2)
    assert sorted(found) == sorted([ids[0], ids[5]])
    assert all(found[i] == cat.photo(i) for i in found)
    assert cat.photos_by_id([]) == {}


def test_folders_add_is_idempotent_and_remove_cascades(cat, tmp_path):
    a = cat.add_folder(tmp_path / "a")
    assert cat.add_folder(tmp_path / "a") == a
    b = cat.add_folder(tmp_path / "b")
    ids_a = add_photos(cat, a, ["1.jpg", "2.jpg"])
    add_photos(cat, b, ["3.jpg"])
    cat.set_model("m1")
    cat.record_embeddings([(ids_a[0], unit(0), None)])
    assert cat.remove_folder(a) == [ids_a[0]]
    assert [f.path for f in cat.folders()] == [b.path]
    assert [os.path.basename(p.path) for p in cat.photos()] == ["3.jpg"]
    with pytest.raises(CatalogError, match="not a folder"):
        cat.remove_folder(tmp_path / "a")


def test_pipeline_cycle_pending_record_failure_counts(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    ids = add_photos(cat, folder, [f"{i}.jpg" for i in range(10)])
    with pytest.raises(CatalogError, match="set_model"):
        cat.record_embeddings([(ids[0], unit(0), None)])
    assert cat.set_model("tiny@abc") is True
    assert cat.set_model("tiny@abc") is False

    first = cat.pending(4)
    assert [p.id for p in first] == ids[:4]
    assert [p.id for p in cat.pending(4, after_id=first[-1].id)] == ids[4:8]

    gen0 = cat.generation
    written, gen = cat.record_embeddings(
        [(i, unit(i), "2021-06-01T12:00:00" if i == ids[0] else None) for i in ids[:6]]
    )
    assert written == ids[:6] and gen == gen0 + 1 == cat.generation
    cat.record_failure(ids[6], "truncated JPEG: image file is truncated")
    assert cat.counts() == {"indexed": 6, "pending": 3, "failed": 1, "offline": 0}
    assert cat.photo(ids[6]).error == "truncated JPEG: image file is truncated"
    assert cat.photo(ids[0]).capture_date == "2021-06-01T12:00:00"
    assert cat.photo(ids[0]).model_id == "tiny@abc"
    assert [p.id for p in cat.pending(100)] == ids[7:]
    assert cat.dim == 8
    np.testing.assert_array_equal(cat.embedding(ids[2]), unit(ids[2]))

    chunks = list(cat.embeddings(chunk=4))
    assert [len(c[0]) for c in chunks] == [4, 2]
    all_ids = np.concatenate([c[0] for c in chunks])
    np.testing.assert_array_equal(all_ids, ids[:6])
    assert chunks[0][1].dtype == np.float32 and chunks[0][1].shape == (4, 8)
    np.testing.assert_array_equal(cat.embedding_ids(), ids[:6])

    # Only what came after a given generation: what a lagging index misses.
    cat.record_embeddings([(ids[7], unit(7), None)])
    (since,) = cat.embeddings(since_generation=gen)
    assert since[0].tolist() == [ids[7]]


def test_bad_vectors_abort_the_whole_batch(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    ids = add_photos(cat, folder, ["a.jpg", "b.jpg"])
    cat.set_model("m")
    with pytest.raises(CatalogError, match="not normalised"):
        cat.record_embeddings([(ids[0], unit(0), None), (ids[1], unit(1) * 2, None)])
    assert cat.counts()["indexed"] == 0
    cat.record_embeddings([(ids[0], unit(0), None)])
    with pytest.raises(CatalogError, match="dimension 8"):
        cat.record_embeddings([(ids[1], unit(1, dim=16), None)])


def test_embeddings_of_removed_photos_are_skipped(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    ids = add_photos(cat, folder, ["a.jpg", "b.jpg"])
    cat.set_model("m")
    assert cat.remove_photos([ids[0]]) == []
    written, _ = cat.record_embeddings([(ids[0], unit(0), None), (ids[1], unit(1), None)])
    assert written == [ids[1]]


def test_model_change_clears_every_vector_never_mixes(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    ids = add_photos(cat, folder, ["a.jpg", "b.jpg", "c.jpg"])
    cat.set_model("model-A")
    cat.record_embeddings([(ids[0], unit(0), None), (ids[1], unit(1), None)])
    cat.record_failure(ids[2], "broken")
    gen = cat.generation
    assert cat.set_model("model-B") is True
    assert cat.model_id == "model-B"
    assert cat.generation > gen
    assert cat.counts() == {"indexed": 0, "pending": 2, "failed": 1, "offline": 0}
    assert cat.embedding_count() == 0 and cat.embedding(ids[0]) is None
    assert cat.dim is None
    cat.record_embeddings([(ids[0], unit(5, dim=16), None)])  # new model, new dimension
    assert cat.dim == 16


def test_move_keeps_the_embedding(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    (pid,) = add_photos(cat, folder, ["old name.jpg"])
    cat.set_model("m")
    cat.record_embeddings([(pid, unit(3), None)])
    new = os.path.join(folder.path, "sub", "new 名前.jpg")
    cat.move_photo(pid, new)
    assert cat.photo(pid).path == new and cat.photo(pid).status == "indexed"
    np.testing.assert_array_equal(cat.embedding(pid), unit(3))
    with pytest.raises(CatalogError, match="no photo"):
        cat.move_photo(10_000, new)


def test_apply_scan_updates_failures_offline_and_restore(cat, tmp_path):
    folder = cat.add_folder(tmp_path)
    ids = add_photos(cat, folder, ["a.jpg", "b.jpg", "c.jpg"])
    cat.set_model("m")
    cat.record_embeddings([(ids[0], unit(0), None), (ids[1], unit(1), None)])
    changed = FileInfo(folder.id, os.path.join(folder.path, "a.jpg"), 999, 5, "new")
    applied = cat.apply_scan(
        ScanResult(
            updated=[(ids[0], changed)],
            removed=[ids[1]],
            failed=[FailedFile(folder.id, os.path.join(folder.path, "d.jpg"), "broken link")],
        )
    )
    assert sorted(applied.dropped_ids) == ids[:2]
    assert cat.photo(ids[0]).status == "pending" and cat.embedding(ids[0]) is None
    assert cat.photo(ids[1]) is None
    failed = cat.photo_by_path(os.path.join(folder.path, "d.jpg"))
    assert failed.status == "failed" and failed.error == "broken link"

    broken = cat.apply_scan(
        ScanResult(failed=[FailedFile(folder.id, os.path.join(folder.path, "c.jpg"), "gone")])
    )
    assert broken.dropped_ids == [] and cat.photo(ids[2]).status == "failed"
    cat.record_embeddings([(ids[0], unit(0), None)])
    gen = cat.generation
    was_fine = cat.apply_scan(
        ScanResult(failed=[FailedFile(folder.id, os.path.join(folder.path, "a.jpg"), "gone")])
    )
    assert was_fine.dropped_ids == [ids[0]] and was_fine.generation == gen + 1
    assert cat.embedding(ids[0]) is None
    cat.apply_scan(ScanResult(updated=[(ids[0], changed)], restored=[]))
    cat.apply_scan(ScanResult(updated=[(ids[2], changed)]))
    cat.record_embeddings([(ids[0], unit(0), None)])
    cat.apply_scan(ScanResult(offline_folders=[folder.id]))
    assert cat.counts()["offline"] == 3
    assert cat.embedding_count() == 1  # an unplugged drive keeps its vectors
    cat.apply_scan(ScanResult(restored=[ids[0], ids[2], failed.id]))
    assert cat.photo(ids[0]).status == "indexed"
    assert cat.photo(ids[2]).status == "pending"
    assert cat.photo(failed.id).status == "failed"


def test_readonly_open(tmp_path):
    with pytest.raises(CatalogError, match="no photofind library"):
        Catalog.open(tmp_path / "nothing", readonly=True)
    with Catalog.open(tmp_path) as cat:
        folder = cat.add_folder(tmp_path / "p")
        add_photos(cat, folder, ["x.jpg"])
        with Catalog.open(tmp_path, readonly=True) as reader:
            assert reader.counts()["pending"] == 1
            with pytest.raises(CatalogError, match="read-only"):
                reader.add_folder(tmp_path / "q")
            add_photos(cat, folder, ["y.jpg"])  # the writer goes on while a reader is open
            assert reader.counts()["pending"] == 2


def test_second_writer_in_this_process_is_refused(tmp_path):
    with Catalog.open(tmp_path), pytest.raises(LibraryLockedError, match=f"pid {os.getpid()}"):
        Catalog.open(tmp_path)
    with Catalog.open(tmp_path):  # released on close
        pass


CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from photofind.library import Catalog, LibraryLockedError
    try:
        Catalog.open({lib!r})
        print("OPENED")
    except LibraryLockedError as exc:
        print("LOCKED", exc.pid, exc)
    with Catalog.open({lib!r}, readonly=True) as reader:
        print("READER", reader.counts()["pending"])
    """
)


def test_second_writer_process_gets_clear_error_while_reader_works(tmp_path):
    lib = str(tmp_path / "lib")
    with Catalog.open(lib) as cat:
        add_photos(cat, cat.add_folder(tmp_path), ["a.jpg", "b.jpg"])
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(root=ROOT, lib=lib)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.splitlines()
    assert out[0].startswith(f"LOCKED {os.getpid()} library {lib} is being written by another")
    assert f"photofind process (pid {os.getpid()})" in out[0]
    assert out[1] == "READER 2"


HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from photofind.library import Catalog
    cat = Catalog.open({lib!r})
    print("HOLDING", flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_lock_of_a_killed_writer_is_released(tmp_path):
    lib = str(tmp_path / "lib")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(root=ROOT, lib=lib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "HOLDING"
        with pytest.raises(LibraryLockedError, match=f"pid {proc.pid}"):
            Catalog.open(lib)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdin.close()
        proc.stdout.close()
    with Catalog.open(lib) as cat:
        assert cat.counts()["pending"] == 0
