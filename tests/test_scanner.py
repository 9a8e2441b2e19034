"""The scanner on real folder trees: links, loops, hidden and system folders, renames."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from photofind.library import Catalog, scan
from photofind.library.hashing import CHUNK, partial_hash

posix_only = pytest.mark.skipif(os.name != "posix", reason="symlinks and modes are POSIX here")


def write(path, content: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return os.fspath(path)


def photo_bytes(seed: int, size: int = 3000) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def cat(tmp_path):
    with Catalog.open(tmp_path / "library") as c:
        c.set_model("m")
        yield c


def index_all(cat: Catalog) -> None:
    """Stand-in for the pipeline: give every pending photo a vector."""
    batch = [(p.id, unit(p.id), None) for p in cat.pending(10_000)]
    if batch:
        cat.record_embeddings(batch)


def names(items, root) -> set[str]:
    return {os.path.relpath(i.path, root) for i in items}


@posix_only
def test_first_scan_walks_links_once_and_skips_hidden_and_system(cat, tmp_path):
    root = tmp_path / "photos"
    outside = tmp_path / "elsewhere"
    write(root / "a.jpg", photo_bytes(1))
    write(root / "sub" / "b.PNG", photo_bytes(2))
    write(root / "sub" / "deeper" / "c.webp", photo_bytes(3))
    write(root / "notes.txt", b"not a photo")
    write(root / ".hidden.jpg", photo_bytes(4))
    for skipped in (".git", "@eaDir", ".Trash-1000", "$RECYCLE.BIN", "lost+found", ".thumbs"):
        write(root / skipped / "x.jpg", photo_bytes(5))
    write(outside / "g.jpg", photo_bytes(6))
    os.symlink(root, root / "sub" / "loop")  # back to the top: a loop
    os.symlink(root / "sub", root / "sub" / "deeper" / "up")  # another way into sub
    os.symlink(outside, root / "linked")  # a linked folder outside the tree: followed once
    os.symlink(outside, root / "linked again")
    os.symlink(root / "missing.jpg", root / "broken.jpg")
    os.symlink(root / "self.jpg", root / "self.jpg")
    folder = cat.add_folder(root)

    result = scan(cat)
    found = names(result.added, root)
    # The outside folder is entered once, through whichever link the walk meets first.
    linked = found & {"linked/g.jpg", "linked again/g.jpg"}
    assert len(linked) == 1
    assert found - linked == {"a.jpg", "sub/b.PNG", "sub/deeper/c.webp"}
    assert all(f.phash and f.folder_id == folder.id for f in result.added)
    assert {(os.path.basename(f.path), f.reason) for f in result.failed} == {
        ("broken.jpg", "broken symbolic link"),
        ("self.jpg", "symbolic link loop"),
    }
    applied = cat.apply_scan(result)
    assert len(applied.added_ids) == 4
    assert cat.counts() == {"indexed": 0, "pending": 4, "failed": 2, "offline": 0}

    again = scan(cat)
    assert not again.changed and again.unchanged == 4


@posix_only
def test_odd_names_round_trip_through_disk_scan_and_catalog(cat, tmp_path):
    root = tmp_path / "odd ✨"
    wanted = ["with space.jpg", "🎂 émoji.jpg", "日本.png"]
    if sys.platform.startswith("linux"):
        wanted.append(os.fsdecode(b"bytes-\xff\xfe.jpg"))
    for i, name in enumerate(wanted):
        write(os.path.join(root, name), photo_bytes(i))
    cat.add_folder(root)
    cat.apply_scan(scan(cat))
    stored = {os.path.basename(p.path) for p in cat.photos()}
    assert stored == set(wanted)
    for p in cat.photos():
        assert os.path.exists(p.path)  # the stored path opens the very file
    assert not scan(cat).changed


def test_changes_renames_and_moves_keep_vectors(cat, tmp_path):
    root = tmp_path / "photos"
    other = tmp_path / "other"
    for i in range(6):
        write(root / "trip" / f"{i}.jpg", photo_bytes(i, size=200_000))
    write(root / "keep.jpg", photo_bytes(10))
    write(root / "edit.jpg", photo_bytes(11))
    write(root / "gone.jpg", photo_bytes(12))
    write(root / "renamed.jpg", photo_bytes(13))
    cat.add_folder(root)
    cat.add_folder(other.mkdir() or other)
    cat.apply_scan(scan(cat))
    index_all(cat)
    before = {os.path.relpath(p.path, tmp_path): p.id for p in cat.photos()}
    vectors = {pid: cat.embedding(pid) for pid in before.values()}

    # a folder rename, a file rename, a move to another library folder, an edit, a delete
    os.rename(root / "trip", root / "trip 2023")
    os.rename(root / "renamed.jpg", root / "new name.jpg")
    shutil.move(root / "keep.jpg", other / "keep.jpg")
    with open(root / "edit.jpg", "ab") as f:
        f.write(b"more")
    os.utime(root / "edit.jpg", ns=(1, 1_000_000_000))
    os.remove(root / "gone.jpg")
    write(root / "brand new.jpg", photo_bytes(99))

    result = scan(cat)
    moved = {os.path.relpath(info.path, tmp_path): pid for pid, info in result.moved}
    assert moved == {
        **{f"photos/trip 2023/{i}.jpg": before[f"photos/trip/{i}.jpg"] for i in range(6)},
        "photos/new name.jpg": before["photos/renamed.jpg"],
        "other/keep.jpg": before["photos/keep.jpg"],
    }
    assert [pid for pid, _ in result.updated] == [before["photos/edit.jpg"]]
    assert result.removed == [before["photos/gone.jpg"]]
    assert names(result.added, tmp_path) == {"photos/brand new.jpg"}

    applied = cat.apply_scan(result)
    assert sorted(applied.dropped_ids) == sorted(
        [before["photos/edit.jpg"], before["photos/gone.jpg"]]
    )
    for path, pid in moved.items():
        photo = cat.photo(pid)
        assert photo.path == os.path.join(tmp_path, path) and photo.status == "indexed"
        np.testing.assert_array_equal(cat.embedding(pid), vectors[pid])
    assert (
        cat.photo(before["photos/keep.jpg"]).folder_id
        != cat.photo(moved["photos/new name.jpg"]).folder_id
    )
    assert cat.counts() == {"indexed": 8, "pending": 2, "failed": 0, "offline": 0}
    assert not scan(cat).changed


def test_offline_folder_keeps_its_photos_and_comes_back(cat, tmp_path):
    root = tmp_path / "usb drive"
    write(root / "a.jpg", photo_bytes(1))
    cat.add_folder(root)
    cat.apply_scan(scan(cat))
    index_all(cat)
    os.rename(root, tmp_path / "unplugged")
    result = scan(cat)
    assert result.offline_folders and not result.removed
    cat.apply_scan(result)
    assert cat.counts()["offline"] == 1 and cat.embedding_count() == 1
    os.rename(tmp_path / "unplugged", root)
    result = scan(cat)
    assert len(result.restored) == 1
    cat.apply_scan(result)
    assert cat.counts()["indexed"] == 1


def test_nested_library_folder_is_scanned_once(cat, tmp_path):
    write(tmp_path / "all" / "a.jpg", photo_bytes(1))
    write(tmp_path / "all" / "inner" / "b.jpg", photo_bytes(2))
    outer = cat.add_folder(tmp_path / "all")
    inner = cat.add_folder(tmp_path / "all" / "inner")
    result = scan(cat)
    assert {(os.path.basename(f.path), f.folder_id) for f in result.added} == {
        ("a.jpg", outer.id),
        ("b.jpg", inner.id),
    }


@posix_only
def test_unreadable_folder_is_recorded_and_its_photos_kept(cat, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading a folder")
    root = tmp_path / "photos"
    write(root / "locked" / "a.jpg", photo_bytes(1))
    write(root / "b.jpg", photo_bytes(2))
    cat.add_folder(root)
    cat.apply_scan(scan(cat))
    os.chmod(root / "locked", 0)
    try:
        result = scan(cat)
    finally:
        os.chmod(root / "locked", 0o755)
    assert [(os.path.basename(p.path), p.reason) for p in result.problems] == [
        ("locked", "permission denied")
    ]
    assert result.removed == []  # cannot tell whether a.jpg is still there: keep it


def test_partial_hash_reads_head_tail_and_size(tmp_path):
    big = bytearray(photo_bytes(1, size=5 * CHUNK))
    a = write(tmp_path / "a.bin", bytes(big))
    h = partial_hash(a)
    assert len(h) == 32 and partial_hash(a, size=len(big)) == h
    big[2 * CHUNK] ^= 0xFF  # the middle is not read
    assert partial_hash(write(tmp_path / "b.bin", bytes(big))) == h
    big[-1] ^= 0xFF  # the tail is
    assert partial_hash(write(tmp_path / "c.bin", bytes(big))) != h
    assert partial_hash(write(tmp_path / "d.bin", bytes(big) + b"x")) != h
    assert partial_hash(write(tmp_path / "e.bin", b"")) != partial_hash(
        write(tmp_path / "f.bin", b"\0")
    )
