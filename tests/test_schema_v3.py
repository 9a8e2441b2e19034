"""Schema v3: vectors in a table of their own, many per item, and the upgrade of a v2 library.

The v2 library is written by the v2 code itself: the commit before schema v3, taken out of
this repository's history with ``git archive`` and run in a subprocess, which indexes
generated photos with the bundled tiny model and leaves a staged model change half done.
The new code then opens it: it upgrades, keeps the saved vector index as it is (a still's
vector id is its photo id), searches give the same ids and scores, the staged change
resumes where it stopped, and nothing is encoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from images import write_photo_jpeg, write_text_as_jpeg
from old_code import code_before, old_migrations

from photofind.clip import load_model
from photofind.library import Catalog
from photofind.library.catalog import CATALOG_NAME
from photofind.library.library import Library, model_id
from photofind.library.migrations import SCHEMA_VERSION
from photofind.library.scanner import FileInfo, ScanResult
from photofind.library.vector_index import INDEX_NAME, SIDECAR_NAME, VectorIndex
from photofind.search import SearchEngine, SearchFilter

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "resources" / "models" / "tiny-synthetic"
QUERIES = ["a red circle", "a blue square on a striped background", "a green star"]


def _v2_code(into: Path) -> Path:
    """The photofind package of the last commit before schema v3, unpacked in ``into``."""
    code = code_before("_V3 = [", into, schema="v2")
    migrations = old_migrations(code)
    assert "_V3" not in migrations and "STEPS: list[list[str]] = [_V1, _V2]" in migrations
    return code


def _variant(into: Path) -> Path:
    """The bundled model under another name and image-encoder hash: a second model.

    The graph gets a doc string appended (ModelProto field 6, a length-delimited string:
    protobuf lets a later field replace an earlier one), which changes its bytes and so
    the model's id, not its weights.
    """
    shutil.copytree(TINY, into)
    visual = into / "visual.onnx"
    note = b"photofind schema v3 test: a second model"
    visual.write_bytes(visual.read_bytes() + b"\x32" + bytes([len(note)]) + note)
    manifest = json.loads((into / "model.json").read_text())
    manifest["name"] = "tiny-synthetic-b"
    manifest["files"]["visual"]["sha256"] = hashlib.sha256(visual.read_bytes()).hexdigest()
    (into / "model.json").write_text(json.dumps(manifest, indent=1))
    return into


V2_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from photofind.clip import load_model
    from photofind.library.indexer import IndexControl
    from photofind.library.library import Library
    from photofind.search import SearchEngine

    lib, photos, model_a, model_b, out, queries = sys.argv[1:7]
    a = load_model(model_a, provider="cpu")
    b = load_model(model_b, provider="cpu")
    library = Library.open(lib)
    library.add_folder(photos)
    library.scan()
    library.index_pending(a, batch_size=4)
    # A model change cut short after its first batch: half of it is in the catalog.
    control = IndexControl()
    library.begin_model_change(b)
    library.reindex_staged(b, batch_size=4, control=control,
                           progress=lambda p: p.done and control.cancel())
    engine = SearchEngine(library, a)
    searches = {
        q: [(r.photo_id, r.score) for r in engine.search(q, k=8, cutoff=False)]
        for q in json.loads(queries)
    }
    first = min(p.id for p in library.catalog.photos("indexed"))
    similar = [(r.photo_id, r.score) for r in engine.similar(first, k=8)]
    import photofind.library.migrations as migrations
    json.dump({
        "code": migrations.__file__,
        "status": library.status(),
        "staged": list(library.catalog.staged_progress()),
        "searches": searches,
        "similar": [first, similar],
        "dates": {p.id: p.capture_date for p in library.catalog.photos()},
    }, open(out, "w"))
    library.close()
    """
)


class CountingModel:
    """The real model, counting the pictures it encodes."""

    def __init__(self, model):
        self._model = model
        self.encoded = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_pixels(self, pixels):
        with self._lock:
            self.encoded += len(pixels)
        return self._model.encode_pixels(pixels)


@pytest.fixture(scope="module")
def v2_library(tmp_path_factory):
    """A library written by the v2 code, and what that code reported about it."""
    tmp = tmp_path_factory.mktemp("v2")
    code = _v2_code(tmp / "code")
    model_b = _variant(tmp / "tiny-synthetic-b")
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(14):
        write_photo_jpeg(photos / f"p{i:02d}.jpg", width=120, height=90, seed=i)
    write_text_as_jpeg(photos / "notes.jpg")  # fails: a failed photo crosses the upgrade
    out = tmp / "v2.json"
    env = {**os.environ, "PYTHONPATH": str(code), "PHOTOFIND_HOME": str(tmp / "home")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            V2_SCRIPT,
            str(tmp / "lib"),
            str(photos),
            str(TINY),
            str(model_b),
            str(out),
            json.dumps(QUERIES),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert Path(report["code"]).is_relative_to(code)  # the v2 code ran, not this one
    return tmp / "lib", model_b, report


def _copy(v2_library, tmp_path) -> Path:
    lib, _, _ = v2_library
    shutil.copytree(lib, tmp_path / "lib")
    return tmp_path / "lib"


def test_the_v2_library_is_what_the_upgrade_must_carry(v2_library):
    lib, _, report = v2_library
    conn = sqlite3.connect(lib / CATALOG_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM staged_embeddings").fetchone()[0] > 0
    finally:
        conn.close()
    status = report["status"]
    assert (status["indexed"], status["failed"], status["pending"]) == (14, 1, 0)
    done, total = report["staged"]
    assert 0 < done < total  # the change is half done


def test_a_v2_library_upgrades_searches_alike_and_nothing_is_encoded_again(v2_library, tmp_path):
    lib = _copy(v2_library, tmp_path)
    _, _, report = v2_library
    index_bytes = (lib / INDEX_NAME).read_bytes()
    sidecar = (lib / SIDECAR_NAME).read_bytes()
    a = CountingModel(load_model(TINY, provider="cpu"))
    with Library.open(lib) as library:
        conn = library.catalog._conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"vectors", "staged_vectors", "analyses"} <= tables
        assert "staged_embeddings" not in tables
        columns = {r[1] for r in conn.execute("PRAGMA table_info(photos)")}
        assert not columns & {"embedding", "model_id", "embedding_gen"}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The rebuilt tables' old pages were given back (VACUUM), not left as free pages.
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        # The saved index was trusted as it was: not rebuilt, not even saved again.
        assert (lib / INDEX_NAME).read_bytes() == index_bytes
        assert (lib / SIDECAR_NAME).read_bytes() == sidecar
        assert library.catalog.embedding_ids().tolist() == library.index.ids().tolist()
        status = library.status()
        for key in ("indexed", "failed", "pending", "offline", "model", "staged_model"):
            assert status[key] == report["status"][key], key
        assert list(library.catalog.staged_progress()) == report["staged"]
        dates = {str(p.id): p.capture_date for p in library.catalog.photos()}
        assert dates == report["dates"]

        engine = SearchEngine(library, a)
        for query, expected in report["searches"].items():
            got = [(r.photo_id, r.score) for r in engine.search(query, k=8, cutoff=False)]
            assert [i for i, _ in got] == [i for i, _ in expected], query
            np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-6)
        first, expected = report["similar"]
        got = [(r.photo_id, r.score) for r in engine.similar(first, k=8)]
        assert [i for i, _ in got] == [i for i, _ in expected]
        assert all(r.time_s is None for r in engine.search(QUERIES[0], k=3, cutoff=False))

        # Nothing to encode for the active model; the image encoder was never even opened.
        assert library.index_pending(a).indexed == 0
        assert a.encoded == 0
        assert a.sessions_open == {"textual"}


def test_the_half_done_model_change_resumes_with_only_what_was_missing(v2_library, tmp_path):
    lib = _copy(v2_library, tmp_path)
    _, model_b_dir, report = v2_library
    done, total = report["staged"]
    b = CountingModel(load_model(model_b_dir, provider="cpu"))
    with Library.open(lib) as library:
        stats = library.reindex_staged(b, batch_size=4)
        assert stats.swapped
        assert b.encoded == total - done  # the staged vectors of v2 were kept
        assert library.catalog.model_id == model_id(b)
        status = library.status()
        assert (status["indexed"], status["failed"], status["pending"]) == (14, 1, 0)
        assert library.catalog.embedding_ids().tolist() == library.index.ids().tolist()
        # Every photo's vector is B's own encoding of it, staged before the upgrade or not.
        photo = next(library.catalog.photos("indexed"))
        np.testing.assert_allclose(
            library.catalog.embedding(photo.id), b.encode_images([photo.path])[0], atol=1e-5
        )


def test_a_v2_catalog_is_refused_read_only_until_upgraded(v2_library, tmp_path):
    lib = _copy(v2_library, tmp_path)
    with pytest.raises(Exception, match="schema version 2"):
        Catalog.open(lib, readonly=True)


# ------------------------------------------------------------------ many vectors per item


def _unit(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _catalog_with(tmp_path, names):
    cat = Catalog.open(tmp_path / "lib")
    folder = cat.add_folder(tmp_path)
    added = [FileInfo(folder.id, str(tmp_path / n), 1, 1, "h") for n in names]
    applied = cat.apply_scan(ScanResult(added=added))
    cat.set_model("toy@0000000000000000")
    return cat, applied.added_ids


class _ToyModel:
    """What a search engine reads of a model whose vectors are made up by the test."""

    class info:  # noqa: N801 - ModelInfo's attribute shape
        name, dim = "toy", 16

    class spec:  # noqa: N801 - ModelSpec's attribute shape
        files = {"visual": type("PackageFile", (), {"sha256": "0" * 64})()}


class _NoCutoff:
    min_score = None
    min_library = 10**9
    sample = 0
    image_z = text_z = None


def test_an_item_holds_many_vectors_and_search_reports_its_best_frame(tmp_path):
    cat, (video, photo) = _catalog_with(tmp_path, ["clip.mp4", "still.jpg"])
    frames = [(0, _unit(1)), (1500, _unit(2)), (3000, _unit(3))]
    near_middle = _unit(2) + 0.3 * _unit(9)
    near_middle /= np.linalg.norm(near_middle)
    recorded = cat.record_vectors([(video, frames, None), (photo, [(None, near_middle)], None)])
    assert recorded.items == [video, photo]
    # The first frame takes the item's id, the other frames fresh ones; the still its own.
    assert recorded.vector_ids[0] == video and recorded.vector_ids[3] == photo
    assert len(set(recorded.vector_ids)) == 4

    # A new item's id is never a frame's: its still's vector can take it.
    folder = cat.folders()[0]
    later_file = FileInfo(folder.id, str(tmp_path / "later.jpg"), 1, 1, "h")
    (later,) = cat.apply_scan(ScanResult(added=[later_file])).added_ids
    assert later not in recorded.vector_ids
    cat.record_embeddings([(later, _unit(5), None)])

    library = Library(tmp_path / "lib", cat, VectorIndex.build(cat))
    assert sorted(library.index.ids().tolist()) == sorted([*recorded.vector_ids, later])
    engine = SearchEngine(library, _ToyModel(), policy=_NoCutoff())
    # The still first (itself), then the video once, at its middle frame's time.
    results = engine.similar(photo, k=3)
    assert [r.photo_id for r in results] == [photo, video, later]
    assert results[0].time_s is None and results[1].time_s == 1.5 and results[2].time_s is None
    # A filter on the video's type reaches all its frames, and reports the best again.
    only_videos = engine.similar(photo, k=3, filter=SearchFilter(types=("mp4",)))
    assert [(r.photo_id, r.time_s) for r in only_videos] == [(video, 1.5)]

    # Removing the video drops every frame's vector.
    dropped = cat.remove_photos([video])
    assert sorted(dropped) == sorted(recorded.vector_ids[:3])
    assert cat.embedding_count() == 2
    cat.close()
