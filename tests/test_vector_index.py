"""The HNSW vector index on real hnswlib files, checked against a real catalog."""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import numpy as np
import pytest

from photofind.atomic import atomic_path
from photofind.library import Catalog, HnswParams, VectorIndex
from photofind.library.catalog import CATALOG_NAME
from photofind.library.scanner import FileInfo, ScanResult
from photofind.library.vector_index import INDEX_NAME, SIDECAR_NAME

DIM = 32
LOGGER = "photofind.library.vector_index"


def unit_rows(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill(cat: Catalog, n: int, seed: int = 0, start: int = 0) -> tuple[list[int], np.ndarray]:
    folder = cat.add_folder(os.path.join(os.fspath(cat.path.parent), "photos"))
    scan = ScanResult(
        added=[
            FileInfo(folder.id, os.path.join(folder.path, f"{start + i}.jpg"), i, i, None)
            for i in range(n)
        ]
    )
    ids = cat.apply_scan(scan).added_ids
    vectors = unit_rows(n, seed)
    cat.set_model("test-model")
    cat.record_embeddings(zip(ids, vectors, [None] * n))
    return ids, vectors


def exact(vectors_by_id: dict[int, np.ndarray], q: np.ndarray, k: int) -> list[int]:
    ids = np.array(list(vectors_by_id))
    scores = np.stack(list(vectors_by_id.values())) @ q
    return ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def lib(tmp_path):
    with Catalog.open(tmp_path) as cat:
        yield tmp_path, cat


def assert_agrees_with_catalog(idx: VectorIndex, cat: Catalog) -> None:
    np.testing.assert_array_equal(idx.ids(), cat.embedding_ids())
    for ids, vectors in cat.embeddings():
        np.testing.assert_allclose(idx.get_vectors(ids), vectors, atol=1e-6)


def test_build_save_and_load_without_rebuild(lib, caplog):
    tmp_path, cat = lib
    ids, vectors = fill(cat, 500)
    idx = VectorIndex.open(tmp_path, cat)  # first open: builds and saves
    assert len(idx) == 500 and (tmp_path / INDEX_NAME).is_file()
    meta = json.loads((tmp_path / SIDECAR_NAME).read_text())
    assert meta["count"] == 500 and meta["generation"] == cat.generation
    assert meta["model_id"] == "test-model" and meta["dim"] == DIM
    assert meta["file_size"] == (tmp_path / INDEX_NAME).stat().st_size
    found, scores = idx.query(vectors[7], k=5)
    assert found[0] == ids[7] and scores[0] == pytest.approx(1.0, abs=1e-5)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        again = VectorIndex.open(tmp_path, cat)
    assert caplog.records == []  # loaded as is: no rebuild, no catch-up
    np.testing.assert_array_equal(again.query(vectors[7], k=5)[0], found)
    assert_agrees_with_catalog(again, cat)
    # no temporary files left behind by the atomic saves
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("crash in the middle")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncate", "truncated"),
        ("garbage", "checksum"),
        ("empty", "truncated"),
        ("no-sidecar", "vectors.json is missing"),
        ("bad-sidecar", "vectors.json is unreadable"),
        ("no-index", "vectors.hnsw is missing"),
    ],
)
def test_damaged_index_is_rebuilt_with_a_warning(lib, caplog, damage, reason):
    tmp_path, cat = lib
    fill(cat, 300)
    VectorIndex.open(tmp_path, cat)
    index_file, sidecar = tmp_path / INDEX_NAME, tmp_path / SIDECAR_NAME
    size = index_file.stat().st_size
    if damage == "truncate":
        with open(index_file, "r+b") as f:
            f.truncate(size // 2)
    elif damage == "garbage":
        # Same size, so only the checksum can tell; hnswlib never sees these bytes.
        index_file.write_bytes(np.random.default_rng(1).bytes(size))
    elif damage == "empty":
        index_file.write_bytes(b"")
    elif damage == "no-sidecar":
        sidecar.unlink()
    elif damage == "bad-sidecar":
        sidecar.write_text('{"format": 1, "sha256": ')
    elif damage == "no-index":
        index_file.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        idx = VectorIndex.open(tmp_path, cat)
    (message,) = warnings_of(caplog)
    assert reason in message and "rebuilding" in message
    assert_agrees_with_catalog(idx, cat)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        VectorIndex.open(tmp_path, cat)  # the rebuilt index was saved, and is good
    assert warnings_of(caplog) == []


def test_index_out_of_step_with_catalog_is_rebuilt(lib, caplog):
    tmp_path, cat = lib
    ids, _ = fill(cat, 200)
    VectorIndex.open(tmp_path, cat)
    # A change the generation does not show (say, a catalog restored from a backup).
    conn = sqlite3.connect(tmp_path / CATALOG_NAME)
    conn.execute("DELETE FROM photos WHERE id IN (?, ?)", (ids[0], ids[1]))
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        idx = VectorIndex.open(tmp_path, cat)
    (message,) = warnings_of(caplog)
    assert "holds 200 vectors, the catalog 198: out of step" in message
    assert len(idx) == 198 and ids[0] not in idx


def test_sidecar_count_disagreeing_with_file_is_rebuilt(lib, caplog):
    tmp_path, cat = lib
    fill(cat, 100)
    VectorIndex.open(tmp_path, cat)
    sidecar = tmp_path / SIDECAR_NAME
    meta = json.loads(sidecar.read_text())
    meta["count"] = 99
    sidecar.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        idx = VectorIndex.open(tmp_path, cat)
    assert "its sidecar says 99" in warnings_of(caplog)[0]
    assert len(idx) == 100


def test_lagging_index_catches_up_without_rebuild(lib, caplog):
    tmp_path, cat = lib
    ids, _ = fill(cat, 300)
    VectorIndex.open(tmp_path, cat)
    # The writer goes on after the last save, then "crashes": new, changed, removed rows.
    new_ids, _ = fill(cat, 50, seed=5, start=1000)
    cat.record_embeddings(zip(ids[:10], unit_rows(10, seed=9), [None] * 10))
    cat.remove_photos(ids[10:20])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        idx = VectorIndex.open(tmp_path, cat)
    assert warnings_of(caplog) == []
    assert any("catching up" in r.getMessage() for r in caplog.records)
    assert len(idx) == 340
    assert_agrees_with_catalog(idx, cat)
    assert idx.generation == cat.generation


def test_model_change_rebuilds_empty(lib, caplog):
    tmp_path, cat = lib
    fill(cat, 50)
    VectorIndex.open(tmp_path, cat)
    cat.set_model("another-model")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        idx = VectorIndex.open(tmp_path, cat)
    assert "model 'test-model'" in warnings_of(caplog)[0]
    assert len(idx) == 0 and idx.query(unit_rows(1)[0], k=3)[0].size == 0


def test_readonly_process_repairs_in_memory_only(lib, caplog):
    tmp_path, cat = lib
    fill(cat, 80)
    VectorIndex.open(tmp_path, cat)
    (tmp_path / INDEX_NAME).write_bytes(b"\0" * 100)
    with Catalog.open(tmp_path, readonly=True) as reader, caplog.at_level(logging.WARNING):
        idx = VectorIndex.open(tmp_path, reader)
    assert len(idx) == 80
    assert (tmp_path / INDEX_NAME).read_bytes() == b"\0" * 100


def test_deleted_slots_are_reused_and_ids_can_return():
    idx = VectorIndex(DIM, model_id="m")
    vectors = unit_rows(200, seed=1)
    idx.add(np.arange(100), vectors[:100])
    assert idx.remove(np.arange(0, 30)) == 30
    assert idx.remove([0, 5, 12345]) == 0  # already gone / never there
    assert len(idx) == 70
    slots = idx._index.get_current_count()
    idx.add(np.arange(100, 130), vectors[100:130])  # exactly fills the vacant slots
    assert idx._index.get_current_count() == slots == 100
    assert len(idx) == 100

    # partial reuse: 10 vacant slots, 3 new photos
    idx.remove(np.arange(40, 50))
    idx.add(np.arange(130, 133), vectors[130:133])
    assert idx._index.get_current_count() == 100
    # a removed id comes back (content re-encoded): its own slot, its new vector
    idx.add([45], vectors[199:200])
    assert 45 in idx and len(idx) == 94
    found, scores = idx.query(vectors[199], k=1)
    assert found.tolist() == [45] and scores[0] == pytest.approx(1.0, abs=1e-5)
    # the bookkeeping matches hnswlib's own label table
    live = set(idx.ids().tolist())
    assert live == set(range(30, 40)) | set(range(50, 133)) | {45}
    assert live <= set(idx._index.get_ids_list())
    for label in range(0, 30):
        assert label not in idx.query(vectors[label], k=10)[0]


def test_update_in_place_and_geometric_growth():
    idx = VectorIndex(DIM, model_id="m")
    vectors = unit_rows(3000, seed=2)
    capacity = idx.capacity
    idx.add(np.arange(capacity + 1), vectors[: capacity + 1])
    assert idx.capacity >= int(capacity * 1.5)
    idx.add(np.arange(capacity + 1, 3000), vectors[capacity + 1 :])
    assert len(idx) == 3000 and idx.capacity < 3000 * 2
    idx.add([7, 7], vectors[[8, 9]])  # replaced in place, the last one wins
    assert len(idx) == 3000 and idx._index.get_current_count() == 3000
    np.testing.assert_allclose(idx.get_vectors([7])[0], vectors[9], atol=1e-6)


def test_filtered_queries_return_k_best_allowed():
    n, k = 4000, 10
    idx = VectorIndex(DIM, model_id="m", params=HnswParams(M=16, ef_construction=200, ef=64))
    vectors = unit_rows(n, seed=3)
    idx.add(np.arange(n), vectors)
    q = unit_rows(1, seed=99)[0]
    by_id = dict(enumerate(vectors))

    evens, _ = idx.query(q, k=k, filter=lambda label: label % 2 == 0)
    assert len(evens) == k and all(label % 2 == 0 for label in evens)
    truth = exact({i: v for i, v in by_id.items() if i % 2 == 0}, q, k)
    assert len(set(evens.tolist()) & set(truth)) >= 9

    big = set(range(0, n, 3))  # a large allowed set goes through the graph
    found, _ = idx.query(q, k=k, filter=big)
    assert len(found) == k and set(found.tolist()) <= big

    small = [5, 17, 3001, 99999]  # a small one is searched exactly; unknown ids ignored
    found, scores = idx.query(q, k=k, filter=small)
    assert sorted(found.tolist()) == [5, 17, 3001]
    assert found.tolist() == exact({i: by_id[i] for i in (5, 17, 3001)}, q, 3)
    assert np.all(np.diff(scores) <= 0)

    rare, _ = idx.query(q, k=k, filter=lambda label: label in (11, 22))
    assert sorted(rare.tolist()) == [11, 22]
    assert idx.query(q, k=k, filter=lambda label: False)[0].size == 0


def test_query_more_than_available():
    idx = VectorIndex(DIM, model_id="m")
    idx.add([1, 2, 3], unit_rows(3))
    assert sorted(idx.query(unit_rows(1, seed=4)[0], k=10)[0].tolist()) == [1, 2, 3]


def test_writer_thread_and_queries_share_one_index(lib):
    """The pipeline's writer adds and saves while the GUI thread queries."""
    import threading

    tmp_path, cat = lib
    ids, vectors = fill(cat, 2000, seed=7)
    idx = VectorIndex(DIM, model_id="test-model")
    errors = []

    def writer():
        try:
            for start in range(0, 2000, 100):
                idx.add(ids[start : start + 100], vectors[start : start + 100])
                if start % 500 == 0:
                    idx.remove(ids[start : start + 10])
            idx.save(tmp_path, cat.generation)
        except Exception as exc:  # handed back to the test thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        found, scores = idx.query(vectors[0], k=5)
        assert len(found) == len(scores) <= 5
    thread.join()
    assert errors == []
    assert len(idx) == 2000 - 40
    cat.remove_photos([ids[s + i] for s in range(0, 2000, 500) for i in range(10)])
    assert len(VectorIndex.open(tmp_path, cat)) == 1960


def test_searches_during_saves_and_concurrent_saves_stay_correct(lib, caplog):
    """The lock covers only hnswlib's write: a query between saves sees the whole index,
    and saves racing each other never pair one's index file with the other's sidecar."""
    import threading

    tmp_path, cat = lib
    ids, vectors = fill(cat, 1500, seed=3)
    idx = VectorIndex.open(tmp_path, cat)
    expected = [idx.query(vectors[i], k=5)[0].tolist() for i in range(0, 1500, 150)]
    errors = []

    def saver():
        try:
            for _ in range(5):
                idx.save(tmp_path)
        except Exception as exc:  # handed back to the test thread
            errors.append(exc)

    savers = [threading.Thread(target=saver) for _ in range(2)]
    for thread in savers:
        thread.start()
    while any(thread.is_alive() for thread in savers):
        got = [idx.query(vectors[i], k=5)[0].tolist() for i in range(0, 1500, 150)]
        assert got == expected
    for thread in savers:
        thread.join()
    assert errors == []
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reopened = VectorIndex.open(tmp_path, cat)
    assert warnings_of(caplog) == []  # file and sidecar from the same save
    assert reopened.generation == cat.generation
    assert_agrees_with_catalog(reopened, cat)
