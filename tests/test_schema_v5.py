"""Schema v5: an item's kind and a video's duration, and the upgrade of a v4 library.

The v4 library is written by the v4 code itself (the commit before schema v5, taken out of
this repository's history, run in a subprocess, as tests/test_schema_v4.py does for v3).
The new code opens it: every item is a photo (v4 read no other kind), nothing is encoded
again, the vector index file is untouched and searches give what they gave; a video the v4
code passed over is then found by the next scan and indexed by its frames.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from images import write_photo_jpeg, write_text_as_jpeg
from old_code import code_before, old_migrations
from test_schema_v4 import V3_SCRIPT as V4_SCRIPT  # the same run, on the v4 code
from test_schema_v4 import CountingModel
from videos import CUT_RED_BLUE, write_video

from photofind.clip import load_model
from photofind.library.catalog import CATALOG_NAME
from photofind.library.library import Library
from photofind.library.migrations import SCHEMA_VERSION
from photofind.library.vector_index import INDEX_NAME
from photofind.search import SearchEngine

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "resources" / "models" / "tiny-synthetic"
QUERIES = ["a red circle", "a blue square"]


def _v4_code(into: Path) -> Path:
    code = code_before("_V5 = [", into, schema="v4")
    migrations = old_migrations(code)
    assert "_V5" not in migrations and "[_V1, _V2, _V3, _V4]" in migrations
    return code


def test_a_v4_library_upgrades_to_v5_with_nothing_encoded_again(tmp_path):
    code = _v4_code(tmp_path / "code")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(9):
        write_photo_jpeg(photos / f"p{i}.jpg", width=120, height=90, seed=i)
    write_text_as_jpeg(photos / "notes.jpg")
    write_video(photos / "clip.mp4", CUT_RED_BLUE)  # v4 has no video kind: not scanned
    out = tmp_path / "v4.json"
    env = {**os.environ, "PYTHONPATH": str(code), "PHOTOFIND_HOME": str(tmp_path / "home")}
    args = [str(tmp_path / "lib"), str(photos), str(TINY), str(out), json.dumps(QUERIES)]
    done = subprocess.run(
        [sys.executable, "-c", V4_SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert Path(report["code"]).is_relative_to(code)  # the v4 code ran, not this one
    conn = sqlite3.connect(tmp_path / "lib" / CATALOG_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    assert conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 10
    conn.close()
    index_bytes = (tmp_path / "lib" / INDEX_NAME).read_bytes()

    model = CountingModel(load_model(TINY, provider="cpu"))
    with Library.open(tmp_path / "lib") as library:
        conn = library.catalog._conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
        columns = {r[1] for r in conn.execute("PRAGMA table_info(photos)")}
        assert {"kind", "duration_ms"} <= columns
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert (tmp_path / "lib" / INDEX_NAME).read_bytes() == index_bytes
        items = list(library.catalog.photos())
        assert {(p.kind, p.duration_ms) for p in items} == {("photo", None)}
        status = library.status()
        for key in ("indexed", "failed", "pending", "model"):
            assert status[key] == report["status"][key], key
        engine = SearchEngine(library, model)
        for query, expected in report["searches"].items():
            got = [(r.photo_id, r.score) for r in engine.search(query, k=6, cutoff=False)]
            assert [i for i, _ in got] == [i for i, _ in expected], query
            np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-6)
        assert library.index_pending(model).indexed == 0
        assert model.encoded == 0

        # The video the v4 code passed over: found now, and only its frames are encoded.
        library.scan()
        assert library.index_pending(model).indexed == 1
        assert model.encoded == 2
        video = library.catalog.photo_by_path(str(photos / "clip.mp4"))
        assert (video.kind, video.status) == ("video", "indexed")
        hit = engine.search("a blue square", k=1, cutoff=False)[0]
        assert (hit.photo_id, hit.time_s) == (video.id, 3.0)
