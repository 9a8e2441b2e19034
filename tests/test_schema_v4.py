"""Schema v4: faces and people, the upgrade of a v3 library, and the catalog's face methods.

The v3 library is written by the v3 code itself (the commit before schema v4, taken out of
this repository's history with ``git archive`` and run in a subprocess, as
tests/test_schema_v3.py does for v2). The new code opens it: the face tables appear empty,
everything else is as it was, and nothing is encoded again. The face methods are then
proved on a real catalog with made-up faces (the face model itself is
tests/test_face_analyser.py's).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from images import write_photo_jpeg, write_text_as_jpeg
from old_code import code_before, old_migrations

from photofind.clip import load_model
from photofind.library import Catalog, CatalogError
from photofind.library.catalog import CATALOG_NAME
from photofind.library.face_records import FACES, FaceRecord
from photofind.library.library import Library
from photofind.library.migrations import SCHEMA_VERSION
from photofind.library.scanner import FileInfo, ScanResult
from photofind.library.vector_index import INDEX_NAME
from photofind.search import SearchEngine

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "resources" / "models" / "tiny-synthetic"
QUERIES = ["a red circle", "a green star"]
MODEL = "dlib-resnet-v1"


def _v3_code(into: Path) -> Path:
    """The photofind package of the last commit before schema v4, unpacked in ``into``."""
    code = code_before("_V4 = [", into, schema="v3")
    migrations = old_migrations(code)
    assert "_V4" not in migrations and "[_V1, _V2, _V3]" in migrations
    return code


V3_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from photofind.clip import load_model
    from photofind.library.library import Library
    from photofind.search import SearchEngine

    lib, photos, model, out, queries = sys.argv[1:6]
    a = load_model(model, provider="cpu")
    library = Library.open(lib)
    library.add_folder(photos)
    library.scan()
    library.index_pending(a, batch_size=4)
    engine = SearchEngine(library, a)
    import photofind.library.migrations as migrations
    json.dump({
        "code": migrations.__file__,
        "status": library.status(),
        "searches": {
            q: [(r.photo_id, r.score) for r in engine.search(q, k=6, cutoff=False)]
            for q in json.loads(queries)
        },
    }, open(out, "w"))
    library.close()
    """
)


class CountingModel:
    def __init__(self, model):
        self._model = model
        self.encoded = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_pixels(self, pixels):
        self.encoded += len(pixels)
        return self._model.encode_pixels(pixels)


def test_a_v3_library_upgrades_with_empty_face_tables_and_nothing_encoded_again(tmp_path):
    code = _v3_code(tmp_path / "code")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(9):
        write_photo_jpeg(photos / f"p{i}.jpg", width=120, height=90, seed=i)
    write_text_as_jpeg(photos / "notes.jpg")
    out = tmp_path / "v3.json"
    env = {**os.environ, "PYTHONPATH": str(code), "PHOTOFIND_HOME": str(tmp_path / "home")}
    args = [str(tmp_path / "lib"), str(photos), str(TINY), str(out), json.dumps(QUERIES)]
    done = subprocess.run(
        [sys.executable, "-c", V3_SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert Path(report["code"]).is_relative_to(code)  # the v3 code ran, not this one
    conn = sqlite3.connect(tmp_path / "lib" / CATALOG_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()
    index_bytes = (tmp_path / "lib" / INDEX_NAME).read_bytes()

    model = CountingModel(load_model(TINY, provider="cpu"))
    with Library.open(tmp_path / "lib") as library:
        conn = library.catalog._conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"faces", "people", "face_rejections", "vectors", "analyses"} <= tables
        assert conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == 0
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert (tmp_path / "lib" / INDEX_NAME).read_bytes() == index_bytes
        status = library.status()
        for key in ("indexed", "failed", "pending", "model"):
            assert status[key] == report["status"][key], key
        assert (status["indexed"], status["failed"]) == (9, 1)
        engine = SearchEngine(library, model)
        for query, expected in report["searches"].items():
            got = [(r.photo_id, r.score) for r in engine.search(query, k=6, cutoff=False)]
            assert [i for i, _ in got] == [i for i, _ in expected], query
            np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-6)
        assert library.index_pending(model).indexed == 0
        assert model.encoded == 0
        # Every photo waits for the face pass, which has never run.
        assert library.catalog.analysis_counts(FACES, MODEL)["pending"] == 9


# -- the face methods, on made-up faces ------------------------------------------------------


def _face(seed: int, *, near: np.ndarray | None = None) -> FaceRecord:
    rng = np.random.default_rng(seed)
    embedding = rng.normal(size=128).astype(np.float32) * 0.1
    if near is not None:
        embedding = near + rng.normal(size=128).astype(np.float32) * 0.001
    return FaceRecord(
        (10 + seed, 20, 50, 60),
        1.0 + seed / 100,
        np.arange(10, dtype=np.float32).reshape(5, 2),
        embedding,
        b"\xff\xd8thumb",
    )


@pytest.fixture
def catalog(tmp_path):
    with Catalog.open(tmp_path / "lib") as catalog:
        folder = catalog.add_folder(tmp_path / "p")
        path = tmp_path / "p"
        added = [FileInfo(folder.id, str(path / f"{i}.jpg"), 1000 + i, i, "h") for i in range(4)]
        catalog.apply_scan(ScanResult(added=added))
        catalog.begin_analyser(FACES, MODEL)
        yield catalog


def _ids(catalog):
    return [p.id for p in catalog.photos()]


def test_faces_and_their_state_are_written_together_and_replaced_not_doubled(catalog):
    a, b, c, _ = _ids(catalog)
    written = catalog.record_faces(MODEL, [(a, [_face(1), _face(2)]), (b, [])], [(c, "c: bad")])
    assert written == [a, b, c]
    faces = catalog.faces(a)
    assert [f.box for f in faces] == [(11, 20, 50, 60), (12, 20, 50, 60)]
    assert all(f.person_id is None and f.assigned_by is None for f in faces)
    assert catalog.analysis(a, FACES)[0] == "done" and catalog.analysis(b, FACES)[0] == "done"
    assert catalog.analysis(c, FACES)[:2] == ("failed", "c: bad")
    assert catalog.analysis_counts(FACES) == {"done": 2, "failed": 1, "pending": 1}
    state = catalog.face_state()
    assert state.embeddings.shape == (2, 128) and state.embeddings.dtype == np.float32
    np.testing.assert_array_equal(state.embeddings[0], _face(1).embedding)
    assert catalog.face_thumb(faces[0].id) == b"\xff\xd8thumb"
    # A second pass over the same item replaces its faces.
    catalog.record_faces(MODEL, [(a, [_face(3)])])
    assert [f.box for f in catalog.faces(a)] == [(13, 20, 50, 60)]
    # A removed item's faces go with it.
    catalog.remove_photos([a])
    assert catalog.faces() == []


def _grouped(catalog):
    """Two unnamed people: faces 0-2 (photos a, b) and 3-4 (photos c, d)."""
    a, b, c, d = _ids(catalog)
    base = _face(1).embedding
    catalog.record_faces(
        MODEL,
        [(a, [_face(1), _face(2)]), (b, [_face(3, near=base)]), (c, [_face(4)]), (d, [_face(5)])],
    )
    face_ids = [f.id for f in catalog.faces()]
    first, second = catalog.apply_grouping({}, [face_ids[:3], face_ids[3:]])
    return first, second, face_ids


def test_people_are_listed_with_counts_and_an_example_and_named(catalog):
    first, second, face_ids = _grouped(catalog)
    people = catalog.people()
    assert [(p.id, p.name, p.face_count, p.photo_count) for p in people] == [
        (first, None, 3, 2),
        (second, None, 2, 2),
    ]
    assert people[0].example_face_id == face_ids[2]  # the highest score
    assert people[0].example_path.endswith("1.jpg")
    catalog.name_person(first, "  Anna ")
    assert catalog.person_by_name("Anna").id == first
    assert {f.assigned_by for f in catalog.faces() if f.person_id == first} == {"user"}
    assert {f.assigned_by for f in catalog.faces() if f.person_id == second} == {"auto"}
    with pytest.raises(CatalogError, match="already named 'Anna'; merge"):
        catalog.name_person(second, "Anna")
    with pytest.raises(CatalogError, match="must not be empty"):
        catalog.name_person(second, " ")
    with pytest.raises(CatalogError, match="no person with id 999"):
        catalog.name_person(999, "Bo")
    assert [p.id for p in catalog.photos_of(first)] == _ids(catalog)[:2]
    catalog.hide_person(second)
    assert [p.id for p in catalog.people()] == [first]
    assert len(catalog.people(include_hidden=True)) == 2


def test_a_grouping_never_moves_the_users_faces_and_drops_empty_unnamed_people(catalog):
    first, second, face_ids = _grouped(catalog)
    catalog.name_person(first, "Anna")
    # The machine tries to move every face to nobody: only the unnamed group's move.
    catalog.apply_grouping(dict.fromkeys(face_ids))
    assert [f.person_id for f in catalog.faces()] == [first] * 3 + [None] * 2
    assert [p.id for p in catalog.people(include_hidden=True)] == [first]


def test_merge_is_explicit_and_keeps_a_name(catalog):
    first, second, face_ids = _grouped(catalog)
    catalog.name_person(second, "Bo")
    catalog.merge_people(first, second)
    (person,) = catalog.people()
    assert (person.id, person.name, person.face_count) == (first, "Bo", 5)
    assert {f.assigned_by for f in catalog.faces()} == {"user"}
    with pytest.raises(CatalogError, match="with itself"):
        catalog.merge_people(first, first)
    with pytest.raises(CatalogError, match=f"no person with id {second}"):
        catalog.merge_people(first, second)


def test_not_this_person_is_remembered_and_a_move_undoes_it(catalog):
    first, second, face_ids = _grouped(catalog)
    assert catalog.reject_face(face_ids[0]) == first
    assert catalog.faces()[0].person_id is None
    assert catalog.face_state().rejected == {face_ids[0]: {first}}
    assert catalog.reject_face(face_ids[0]) is None  # already on nobody
    catalog.move_face(face_ids[0], second)
    assert (catalog.faces()[0].person_id, catalog.faces()[0].assigned_by) == (second, "user")
    assert catalog.face_state().rejected == {face_ids[0]: {first}}  # still not the first
    catalog.move_face(face_ids[0], first)  # the user's word undoes the user's word
    assert catalog.face_state().rejected == {}
    with pytest.raises(CatalogError, match="no face with id 999"):
        catalog.reject_face(999)


def test_a_grouping_made_before_not_this_person_does_not_put_the_face_back(catalog):
    first, second, face_ids = _grouped(catalog)
    # The face pass reads the state, then the user rejects a face, then the pass writes.
    stale = {f.id: f.person_id for f in catalog.faces()}
    catalog.reject_face(face_ids[0])
    catalog.apply_grouping(stale)
    assert catalog.faces()[0].person_id is None
    assert [f.person_id for f in catalog.faces()[1:]] == [stale[i] for i in face_ids[1:]]


def test_forgetting_faces_deletes_every_face_person_and_state(catalog):
    _grouped(catalog)
    catalog.forget_faces()
    assert catalog.faces(model_id=MODEL) == [] and catalog.people(model_id=MODEL) == []
    assert catalog.analyser_model(FACES) is None
    assert catalog.analysis_counts(FACES, MODEL)["done"] == 0
