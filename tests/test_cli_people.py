"""``photofind faces`` and ``photofind people`` on the real photos of ../shared/data/faces,
with the bundled tiny CLIP model: the face pass, the people listed, named, merged and their
photos. The train photos' library is built once per module; tests that change it copy it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faces_data as data
import pytest

pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
if not data.FACES.is_dir():
    pytest.skip(f"{data.FACES}: the shared face photos are not there", allow_module_level=True)

from PIL import Image  # noqa: E402

from photofind.cli import build_parser, main  # noqa: E402
from photofind.library.catalog import CATALOG_NAME  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "resources" / "models" / "tiny-synthetic"
KNN = data.FACES / "knn_examples"
TRAIN_GROUPS = [
    ["knn_examples/train/biden/biden.jpg", "knn_examples/train/biden/biden2.jpg"],
    ["knn_examples/train/obama/obama.jpg", "knn_examples/train/obama/obama2.jpg"],
    ["knn_examples/train/rose_leslie/img1.jpg", "knn_examples/train/rose_leslie/img2.jpg"],
]


def cli(lib, *argv) -> int:
    return main(["--library", str(lib), "--model", str(TINY), "--provider", "cpu", *argv])


def run_json(capsys, lib, *argv):
    capsys.readouterr()
    assert cli(lib, *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def _relative(path: str) -> str:
    return str(Path(path).relative_to(data.FACES))


def _photos(capsys, lib, person) -> list[str]:
    return sorted(_relative(p["path"]) for p in run_json(capsys, lib, "people", "photos", person))


@pytest.fixture(scope="module")
def train_lib(tmp_path_factory):
    lib = tmp_path_factory.mktemp("cli-people") / "lib"
    assert cli(lib, "faces", "index", str(KNN / "train"), "--min-faces", "2", "--no-progress") == 0
    return lib


@pytest.fixture
def lib(train_lib, tmp_path):
    shutil.copytree(train_lib, tmp_path / "lib")
    return tmp_path / "lib"


def test_the_commands_are_registered():
    help_text = build_parser().format_help()
    assert "faces" in help_text and "people" in help_text


def test_people_list_shows_the_groups_of_the_face_pass(train_lib, capsys):
    people = run_json(capsys, train_lib, "people", "list")
    assert [set(p) for p in people] == [
        {"id", "name", "face_count", "photos", "hidden", "example"}
    ] * 3
    assert all((p["name"], p["face_count"], p["photos"]) == (None, 2, 2) for p in people)
    groups = sorted(sorted(_photos(capsys, train_lib, str(p["id"]))) for p in people)
    assert groups == TRAIN_GROUPS
    assert all(_relative(p["example"]) in sum(TRAIN_GROUPS, []) for p in people)
    capsys.readouterr()
    assert cli(train_lib, "people", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("(unnamed)" in line and "2 faces" in line for line in lines)


def _id_of(capsys, lib, relative) -> int:
    people = run_json(capsys, lib, "people", "list")
    return next(p["id"] for p in people if relative in _photos(capsys, lib, str(p["id"])))


def test_a_named_person_finds_their_photos_and_new_ones(lib, capsys):
    obama = _id_of(capsys, lib, "knn_examples/train/obama/obama.jpg")
    assert cli(lib, "people", "name", str(obama), "Barack Obama") == 0
    assert _photos(capsys, lib, "Barack Obama") == TRAIN_GROUPS[1]
    assert cli(lib, "faces", "index", str(KNN / "test"), "--min-faces", "2", "--no-progress") == 0
    assert _photos(capsys, lib, "Barack Obama") == [
        "knn_examples/test/obama1.jpg",
        "knn_examples/test/obama_and_biden.jpg",
        *TRAIN_GROUPS[1],
    ]
    people = run_json(capsys, lib, "people", "list")
    assert people[0]["name"] == "Barack Obama" and people[0]["face_count"] == 4


def test_merge_joins_two_people(lib, capsys):
    biden = _id_of(capsys, lib, "knn_examples/train/biden/biden.jpg")
    rose = _id_of(capsys, lib, "knn_examples/train/rose_leslie/img1.jpg")
    assert cli(lib, "people", "merge", str(biden), str(rose)) == 0
    people = run_json(capsys, lib, "people", "list")
    assert [(p["id"], p["face_count"]) for p in people][0] == (biden, 4)
    assert rose not in [p["id"] for p in people]
    assert _photos(capsys, lib, str(biden)) == TRAIN_GROUPS[0] + TRAIN_GROUPS[2]


def test_index_with_faces_runs_the_face_pass_too(tmp_path, capsys):
    lib = tmp_path / "lib"
    assert cli(lib, "index", str(KNN / "test"), "--faces", "--no-progress") == 0
    assert "indexed 5 photos, 0 failed" in capsys.readouterr().err
    # Default grouping (3 faces a group): Obama is in two of these photos, nobody in three.
    assert run_json(capsys, lib, "people", "list") == []
    assert cli(lib, "faces", "index", "--no-progress", "--min-faces", "2") == 0
    err = capsys.readouterr().err
    assert "faces: 0 photos analysed" in err and "8 faces, 2 people (0 named)" in err


def test_bad_requests_are_one_line_errors(lib, tmp_path, capsys):
    capsys.readouterr()
    assert cli(lib, "people", "name", "999", "Anna") == 2
    assert "no person with id 999" in capsys.readouterr().err
    assert cli(lib, "people", "photos", "Nobody") == 2
    err = capsys.readouterr().err
    assert "no person named or numbered 'Nobody'" in err and len(err.strip().splitlines()) == 1
    some = _id_of(capsys, lib, "knn_examples/train/biden/biden.jpg")
    assert cli(lib, "people", "merge", str(some), str(some)) == 2
    assert "with itself" in capsys.readouterr().err
    assert cli(tmp_path / "none", "people", "list") == 2
    assert "no photofind library" in capsys.readouterr().err


def test_name_by_photo_names_the_one_face_and_refuses_zero_or_several(lib, tmp_path, capsys):
    obama = str(KNN / "train" / "obama" / "obama.jpg")
    assert cli(lib, "people", "name", "--photo", obama, "Barack") == 0
    assert _photos(capsys, lib, "Barack") == TRAIN_GROUPS[1]
    # A photo with several faces, and one with none, are refused with the reason.
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(KNN / "test" / "obama_and_biden.jpg", extra / "three.jpg")
    Image.new("RGB", (320, 240), (90, 140, 200)).save(extra / "sky.jpg")
    assert cli(lib, "index", str(extra), "--no-progress") == 0
    capsys.readouterr()
    assert cli(lib, "people", "name", "--photo", str(extra / "three.jpg"), "Joe") == 2
    err = capsys.readouterr().err
    assert "holds 3 faces" in err and len(err.strip().splitlines()) == 1
    assert cli(lib, "people", "name", "--photo", str(extra / "sky.jpg"), "Joe") == 2
    assert "no face was found in it" in capsys.readouterr().err
    assert cli(lib, "people", "name", "--photo", str(tmp_path / "nope.jpg"), "Joe") == 2
    assert "is not a photo of the library" in capsys.readouterr().err
    # The index ran the face pass (recognition is on by default), and the k-NN put
    # Obama's face of the new photo on the named person.
    paths = [p["path"] for p in run_json(capsys, lib, "people", "photos", "Barack")]
    assert str(extra / "three.jpg") in paths and len(paths) == 3


def test_the_index_runs_the_face_pass_and_naming_feeds_the_knn(lib, tmp_path, capsys):
    obama = str(KNN / "train" / "obama" / "obama.jpg")
    assert cli(lib, "people", "name", "--photo", obama, "Barack") == 0
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(KNN / "test" / "obama1.jpg", extra / "new.jpg")
    capsys.readouterr()
    assert cli(lib, "index", str(extra), "--no-progress") == 0
    assert "faces: " in capsys.readouterr().err
    paths = [p["path"] for p in run_json(capsys, lib, "people", "photos", "Barack")]
    assert str(extra / "new.jpg") in paths and len(paths) == 3


def test_search_by_person_keeps_their_photos_ranked_by_the_text(lib, capsys):
    biden = _id_of(capsys, lib, "knn_examples/train/biden/biden.jpg")
    assert cli(lib, "people", "name", str(biden), "Joe Biden") == 0
    found = run_json(capsys, lib, "search", "a photo", "--person", "joe biden")
    assert sorted(_relative(r["path"]) for r in found) == TRAIN_GROUPS[0]
    assert found[0]["score"] >= found[1]["score"]
    # The same as a query term, with text to rank by; and alone (newest first, all of them).
    found = run_json(capsys, lib, "search", 'person:"Joe Biden" a photo', "--all")
    assert sorted(_relative(r["path"]) for r in found) == TRAIN_GROUPS[0]
    found = run_json(capsys, lib, "search", 'person:"Joe Biden"')
    assert sorted(_relative(r["path"]) for r in found) == TRAIN_GROUPS[0]
    capsys.readouterr()
    assert cli(lib, "search", "person:Nobody beach") == 2
    err = capsys.readouterr().err
    assert "no person named 'Nobody'" in err and "Joe Biden" in err


def test_list_json_rows_hide_and_show(lib, capsys):
    people = run_json(capsys, lib, "people", "list")
    assert all(
        isinstance(p["id"], int) and p["name"] is None and p["face_count"] == p["photos"] == 2
        for p in people
    )
    some = people[0]["id"]
    assert cli(lib, "people", "hide", str(some)) == 0
    assert some not in [p["id"] for p in run_json(capsys, lib, "people", "list")]
    assert some in [p["id"] for p in run_json(capsys, lib, "people", "list", "--all")]
    assert cli(lib, "people", "hide", str(some), "--show") == 0
    assert some in [p["id"] for p in run_json(capsys, lib, "people", "list")]


def test_split_moves_faces_to_a_new_person(lib, capsys):
    biden = _id_of(capsys, lib, "knn_examples/train/biden/biden.jpg")
    rose = _id_of(capsys, lib, "knn_examples/train/rose_leslie/img1.jpg")
    assert cli(lib, "people", "merge", str(biden), str(rose)) == 0
    faces = run_json(capsys, lib, "people", "faces", str(biden))
    roses = [f["id"] for f in faces if "rose_leslie" in f["path"]]
    assert len(faces) == 4 and len(roses) == 2
    assert cli(lib, "people", "split", *map(str, roses), "--name", "Rose") == 0
    assert _photos(capsys, lib, "Rose") == TRAIN_GROUPS[2]
    assert _photos(capsys, lib, str(biden)) == TRAIN_GROUPS[0]


def _face_bytes(lib: Path) -> tuple[int, int]:
    """Faces rows, and whether a face embedding's bytes are still anywhere in the files."""
    import sqlite3

    conn = sqlite3.connect(lib / CATALOG_NAME)
    try:
        rows = conn.execute("SELECT embedding FROM faces").fetchall()
    finally:
        conn.close()
    return len(rows), rows[0][0] if rows else b""


def test_forget_and_off_delete_every_face_and_off_stops_the_pass(lib, tmp_path, capsys):
    count, embedding = _face_bytes(lib)
    assert count == 7 and len(embedding) == 512
    assert cli(lib, "people", "off") == 0
    assert "7 faces deleted" in capsys.readouterr().err
    assert _face_bytes(lib)[0] == 0
    blob = b"".join(p.read_bytes() for p in lib.rglob("*") if p.is_file())
    assert embedding not in blob, "a deleted embedding lingers in the library's files"
    assert run_json(capsys, lib, "people", "list") == []
    # Off: the index finds no faces, and the face pass refuses to run.
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(KNN / "test" / "obama1.jpg", extra / "new.jpg")
    assert cli(lib, "index", str(extra), "--no-progress") == 0
    assert _face_bytes(lib)[0] == 0
    assert cli(lib, "faces", "index", "--no-progress") == 2
    assert "face recognition is off" in capsys.readouterr().err
    assert cli(lib, "people", "on") == 0
    assert cli(lib, "index", "--no-progress") == 0
    assert _face_bytes(lib)[0] == 8
    assert cli(lib, "people", "forget") == 0
    assert _face_bytes(lib)[0] == 0
