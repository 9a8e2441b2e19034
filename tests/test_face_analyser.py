"""The face pass on a real library: the photos of ../shared/data/faces, indexed with the
bundled tiny CLIP model and the face analyser, grouped and named through the catalog.

The train photos (knn_examples/train: Obama, Biden and Rose Leslie twice, Alex Lacamoire
once) are indexed once per module; a test that changes the library works on a copy.
Unnamed groups are shown from 2 faces here (the default is 3), as the set has two photos
of most people.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import faces_data as data
import numpy as np
import pytest
from images import write_text_as_jpeg
from PIL import Image

pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
if not data.FACES.is_dir():
    pytest.skip(f"{data.FACES}: the shared face photos are not there", allow_module_level=True)

from photofind import people  # noqa: E402
from photofind.clip import load_model  # noqa: E402
from photofind.faces import MODEL_ID, FaceModel  # noqa: E402
from photofind.library import Catalog  # noqa: E402
from photofind.library.face_analyser import FaceAnalyser  # noqa: E402
from photofind.library.face_records import FACES  # noqa: E402
from photofind.library.library import Library  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "resources" / "models" / "tiny-synthetic"
KNN = data.FACES / "knn_examples"
regroup = functools.partial(people.regroup, min_faces=2)


@pytest.fixture(scope="module")
def tiny():
    return load_model(TINY, provider="cpu")


@pytest.fixture(scope="module")
def face_model():
    return FaceModel()


def analyser(face_model, cls=FaceAnalyser, **kw):
    return cls(face_model, after_pass=regroup, **kw)


@pytest.fixture(scope="module")
def train_library(tmp_path_factory, tiny, face_model):
    """A closed library of the train photos, CLIP and faces done; and the analyser."""
    root = tmp_path_factory.mktemp("train") / "lib"
    faces = analyser(face_model)
    with Library.open(root) as library:
        library.add_folder(KNN / "train")
        library.scan()
        stats = library.index_pending(tiny, analysers=[faces], batch_size=4)
        assert (stats.indexed, stats.failed) == (7, 0)
    return root, faces


@pytest.fixture
def library(train_library, tmp_path):
    root, _ = train_library
    shutil.copytree(root, tmp_path / "lib")
    with Library.open(tmp_path / "lib") as library:
        yield library


def _relative(path: str) -> str:
    return os.path.relpath(path, data.FACES)


def _people(catalog) -> dict:
    """person id -> (name, sorted photos of its faces, relative to the shared folder)."""
    return {
        p.id: (p.name, sorted(_relative(ph.path) for ph in catalog.photos_of(p.id)))
        for p in catalog.people(include_hidden=True)
    }


def _person_of(catalog, relative: str) -> int:
    return next(pid for pid, (_, photos) in _people(catalog).items() if relative in photos)


def _add_test_photos(library, tiny, face_model):
    library.add_folder(KNN / "test")
    library.scan()
    faces = analyser(face_model)
    library.index_pending(tiny, analysers=[faces], batch_size=4)
    return faces


def _faces_at(catalog, relative):
    photo = catalog.photo_by_path(data.FACES / relative)
    return sorted(catalog.faces(photo.id), key=lambda f: f.box[0])


def test_every_face_is_stored_with_its_box_in_the_photos_pixels(train_library, face_model):
    root, _ = train_library
    with Catalog.open(root, readonly=True) as catalog:
        assert catalog.analysis_counts(FACES, MODEL_ID) == {"done": 7, "failed": 0, "pending": 0}
        assert catalog.analyser_model(FACES) == MODEL_ID
        state = catalog.face_state()
        assert state.embeddings.shape == (7, 128)
        embeddings = dict(zip(state.ids.tolist(), state.embeddings))
        for relative in data.TRAIN:
            (stored,) = _faces_at(catalog, relative)
            (direct,) = face_model.find(data.load(relative))
            left, top, right, bottom = direct.box
            x, y, w, h = stored.box
            # The pass may see the photo at another size: the box agrees within 2%, the
            # embedding far within the 0.6 of one person.
            size = max(right - left, bottom - top)
            assert np.allclose((x, y, x + w, y + h), direct.box, atol=0.02 * size), relative
            assert np.linalg.norm(embeddings[stored.id] - direct.embedding) < 0.1, relative
            thumb = Image.open(io.BytesIO(catalog.face_thumb(stored.id)))
            assert (thumb.format, thumb.size) == ("JPEG", (128, 128))


def test_the_train_photos_group_into_their_people_unnamed(train_library):
    root, _ = train_library
    with Catalog.open(root, readonly=True) as catalog:
        groups = sorted(_people(catalog).values(), key=lambda g: g[1])
        assert groups == [
            (None, ["knn_examples/train/biden/biden.jpg", "knn_examples/train/biden/biden2.jpg"]),
            (None, ["knn_examples/train/obama/obama.jpg", "knn_examples/train/obama/obama2.jpg"]),
            (
                None,
                [
                    "knn_examples/train/rose_leslie/img1.jpg",
                    "knn_examples/train/rose_leslie/img2.jpg",
                ],
            ),
        ]
        (alex,) = _faces_at(catalog, "knn_examples/train/alex_lacamoire/img1.jpg")
        assert alex.person_id is None  # seen once: in no group shown


def test_new_photos_join_the_named_person_and_the_unnamed_groups_keep_their_ids(
    library, tiny, face_model
):
    catalog = library.catalog
    obama = _person_of(catalog, "knn_examples/train/obama/obama.jpg")
    biden = _person_of(catalog, "knn_examples/train/biden/biden.jpg")
    rose = _person_of(catalog, "knn_examples/train/rose_leslie/img1.jpg")
    catalog.name_person(obama, "Obama")
    catalog.hide_person(rose)
    _add_test_photos(library, tiny, face_model)
    found = _people(catalog)
    assert catalog.person(rose).hidden  # the group kept its id, so its flag
    assert found[obama] == (
        "Obama",
        [
            "knn_examples/test/obama1.jpg",
            "knn_examples/test/obama_and_biden.jpg",
            "knn_examples/train/obama/obama.jpg",
            "knn_examples/train/obama/obama2.jpg",
        ],
    )
    # The new faces are the machine's guess, the named ones the user's word.
    (new,) = _faces_at(catalog, "knn_examples/test/obama1.jpg")
    assert (new.person_id, new.assigned_by) == (obama, "auto")
    assert {f.assigned_by for f in _faces_at(catalog, "knn_examples/train/obama/obama.jpg")} == {
        "user"
    }
    # Unnamed groups grow and keep their ids; the faces seen twice now form groups.
    assert "knn_examples/test/obama_and_biden.jpg" in found[biden][1]
    assert "knn_examples/test/kit_with_rose.jpg" in found[rose][1]
    biden_face, obama_face, girl = _faces_at(catalog, "knn_examples/test/obama_and_biden.jpg")
    assert (biden_face.person_id, obama_face.person_id, girl.person_id) == (biden, obama, None)
    rest = sorted(v for k, v in found.items() if k not in (obama, biden, rose))
    assert rest == [
        (
            None,
            ["knn_examples/test/alex_lacamoire1.jpg", "knn_examples/train/alex_lacamoire/img1.jpg"],
        ),
        (None, ["knn_examples/test/johnsnow_test1.jpg", "knn_examples/test/kit_with_rose.jpg"]),
    ]
    assert catalog.analysis_counts(FACES) == {"done": 12, "failed": 0, "pending": 0}


def test_merged_people_stay_one_person_across_passes(library, tiny, face_model):
    catalog = library.catalog
    biden = _person_of(catalog, "knn_examples/train/biden/biden.jpg")
    rose = _person_of(catalog, "knn_examples/train/rose_leslie/img1.jpg")
    # Wrong, but the user's word: nothing splits it again.
    catalog.merge_people(biden, rose)
    catalog.name_person(biden, "Them")
    _add_test_photos(library, tiny, face_model)
    name, photos = _people(catalog)[biden]
    assert name == "Them" and rose not in _people(catalog)
    assert {
        "knn_examples/train/biden/biden.jpg",
        "knn_examples/train/rose_leslie/img1.jpg",
        "knn_examples/test/kit_with_rose.jpg",  # the k-NN names by either's faces
        "knn_examples/test/obama_and_biden.jpg",
    } <= set(photos)


def test_a_named_person_is_never_merged_with_a_look_alike_group(library, tiny, face_model):
    catalog = library.catalog
    obama = _person_of(catalog, "knn_examples/train/obama/obama.jpg")
    biden = _person_of(catalog, "knn_examples/train/biden/biden.jpg")
    catalog.name_person(obama, "Obama")
    catalog.name_person(biden, "Biden")
    _add_test_photos(library, tiny, face_model)
    found = _people(catalog)
    assert found[obama][0] == "Obama" and found[biden][0] == "Biden"
    assert not set(found[obama][1]) & {
        "knn_examples/train/biden/biden.jpg",
        "knn_examples/train/biden/biden2.jpg",
    }


def test_not_this_person_keeps_the_face_off_them_for_good(library, tiny, face_model):
    catalog = library.catalog
    obama = _person_of(catalog, "knn_examples/train/obama/obama.jpg")
    catalog.name_person(obama, "Obama")
    _add_test_photos(library, tiny, face_model)
    (face,) = _faces_at(catalog, "knn_examples/test/obama1.jpg")
    assert face.person_id == obama
    assert catalog.reject_face(face.id) == obama
    # Another pass (nothing to analyse; the grouping runs again): the k-NN would name it
    # Obama, but the user said no.
    faces = analyser(face_model)
    assert library.index_pending(tiny, analysers=[faces]).indexed == 0
    assert faces.analysed == []
    (face,) = _faces_at(catalog, "knn_examples/test/obama1.jpg")
    assert face.person_id != obama
    assert "knn_examples/test/obama1.jpg" not in _people(catalog)[obama][1]
    # Put back by the user, it stays.
    catalog.move_face(face.id, obama)
    regroup(catalog)
    assert _faces_at(catalog, "knn_examples/test/obama1.jpg")[0].person_id == obama


class DyingAnalyser(FaceAnalyser):
    """Stops the run (as a crash would) once ``after`` photos are analysed."""

    def __init__(self, face_model, *, after: int, **kw):
        super().__init__(face_model, **kw)
        self.after = after

    def analyse(self, items, inputs):
        if len(self.analysed) >= self.after:
            raise RuntimeError("the face pass died")
        return super().analyse(items, inputs)


def _face_counts(catalog) -> dict:
    counts: dict[str, int] = {}
    for face in catalog.faces(model_id=MODEL_ID):
        relative = _relative(catalog.photo(face.item_id).path)
        counts[relative] = counts.get(relative, 0) + 1
    return counts


EXPECTED_TEST_FACES = {
    "knn_examples/test/obama1.jpg": 1,
    "knn_examples/test/alex_lacamoire1.jpg": 1,
    "knn_examples/test/johnsnow_test1.jpg": 1,
    "knn_examples/test/kit_with_rose.jpg": 2,
    "knn_examples/test/obama_and_biden.jpg": 3,
}


def test_a_face_pass_cut_short_resumes_with_only_what_is_missing(library, tiny, face_model):
    library.add_folder(KNN / "test")
    library.scan()
    dying = analyser(face_model, DyingAnalyser, after=2)
    with pytest.raises(RuntimeError, match="died"):
        library.index_pending(tiny, analysers=[dying], batch_size=1)
    catalog = library.catalog
    assert catalog.analysis_counts(FACES)["done"] == 7 + 2
    rest = analyser(face_model)
    library.index_pending(tiny, analysers=[rest], batch_size=1)
    assert len(rest.analysed) == 3 and not set(rest.analysed) & set(dying.analysed)
    counts = _face_counts(catalog)
    assert {k: v for k, v in counts.items() if "/test/" in k} == EXPECTED_TEST_FACES


KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[2])
from test_face_analyser import analyser
from photofind.clip import load_model
from photofind.faces import FaceModel
from photofind.library.library import Library

library = Library.open(sys.argv[1])
library.index_pending(load_model(sys.argv[3], provider="cpu"),
                      analysers=[analyser(FaceModel())], batch_size=1)
"""


def _faces_done(lib) -> int:
    """Committed face states, read the way a second process would (read-only)."""
    try:
        with Catalog.open(lib, readonly=True) as catalog:
            return catalog.analysis_counts(FACES, MODEL_ID)["done"]
    except Exception:  # noqa: BLE001 - mid-write
        return 0


def test_a_sigkilled_face_pass_encodes_nothing_twice(library, tiny, face_model):
    library.add_folder(KNN / "test")
    library.scan()
    root = library.root
    library.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(root), os.path.dirname(__file__), str(TINY)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and _faces_done(root) < 7 + 2:
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Library.open(root) as again:
        done = again.catalog.analysis_counts(FACES)["done"]
        assert 7 + 2 <= done < 12, "the pass ended before the kill"
        rest = analyser(face_model)
        again.index_pending(tiny, analysers=[rest], batch_size=1)
        assert len(rest.analysed) == 12 - done
        counts = _face_counts(again.catalog)
        assert {k: v for k, v in counts.items() if "/test/" in k} == EXPECTED_TEST_FACES
        assert again.catalog.analysis_counts(FACES) == {"done": 12, "failed": 0, "pending": 0}


@pytest.mark.parametrize("in_decode_threads", [True, False], ids=["decode-threads", "pipeline"])
def test_a_broken_photo_records_a_face_failure_and_the_rest_go_on(
    tmp_path, tiny, face_model, in_decode_threads
):
    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy(data.FACES / "biden.jpg", photos / "biden.jpg")
    write_text_as_jpeg(photos / "broken.jpg")
    Image.new("RGB", (1, 1)).save(photos / "dot.png")
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(photos)
        library.scan()
        faces = analyser(face_model, in_decode_threads=in_decode_threads)
        stats = library.index_pending(tiny, analysers=[faces])
        assert (stats.indexed, stats.failed) == (2, 1)
        catalog = library.catalog
        broken = catalog.photo_by_path(photos / "broken.jpg")
        status, error, _ = catalog.analysis(broken.id, FACES)
        assert status == "failed" and "broken.jpg" in error
        dot = catalog.photo_by_path(photos / "dot.png")
        assert catalog.analysis(dot.id, FACES)[0] == "done" and catalog.faces(dot.id) == []
        biden = catalog.photo_by_path(photos / "biden.jpg")
        (face,) = catalog.faces(biden.id)
        (direct,) = face_model.find(data.load("biden.jpg"))
        x, y, w, h = face.box
        assert np.allclose((x, y, x + w, y + h), direct.box, atol=0.02 * w)
        assert catalog.analysis_counts(FACES) == {"done": 2, "failed": 1, "pending": 0}
