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

from photofind.cli import build_parser, main  # noqa: E402

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
