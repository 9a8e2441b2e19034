"""dlib's faces on real photos (../shared/data/faces): found, embedded, named and grouped.

The photos are the face_recognition project's examples, laid beside the repository as
shared/ (CI copies it there too). Every photo is analysed once per module.
"""

from __future__ import annotations

import faces_data as data
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")

if not data.FACES.is_dir():
    pytest.skip(f"{data.FACES}: the shared face photos are not there", allow_module_level=True)

from photofind import people  # noqa: E402
from photofind.errors import ImageError, ModelError  # noqa: E402
from photofind.faces import MIN_FACE, FaceModel, model_file  # noqa: E402
from photofind.faces import models as face_models  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return FaceModel()


@pytest.fixture(scope="module")
def found(model):
    """Faces of every labelled photo, each distinct file analysed once."""
    by_content: dict[bytes, list] = {}
    out = {}
    for relative in data.IDENTITIES:
        key = (data.FACES / relative).read_bytes()
        if key not in by_content:
            by_content[key] = model.find(data.load(relative))
        out[relative] = by_content[key]
    return out


@pytest.fixture(scope="module")
def labelled(found):
    """(photo, face, identity) of every named face, each photo once."""
    return data.labelled({p: found[p] for p in data.unique_photos()})


def _train(found):
    faces = data.labelled({p: found[p] for p in data.TRAIN})
    return np.stack([f.embedding for _, f, _ in faces]), [name for _, _, name in faces]


def _left_to_right(faces):
    return sorted(faces, key=lambda f: f.box[0])


def test_obama_and_biden_are_found_with_the_girl_beside_them(found):
    faces = _left_to_right(found["knn_examples/test/obama_and_biden.jpg"])
    # Biden, Obama, and a girl at the bottom right, half turned away (the weakest score).
    assert len(faces) == 3
    assert faces[2].score == min(f.score for f in faces)
    biden, obama = faces[0], faces[1]
    assert biden.box[2] <= obama.box[0]  # side by side, not one face found twice
    assert min(biden.size, obama.size) >= 150  # in the 2,000 px photo's own pixels


def test_two_people_are_found_one_in_each_half(found):
    faces = _left_to_right(found["two_people.jpg"])
    assert len(faces) == 2
    width = data.load("two_people.jpg").shape[1]
    assert faces[0].box[2] < width / 2 < faces[1].box[0]


def test_a_face_has_box_landmarks_embedding_and_a_thumbnail_of_itself(model, found):
    image = data.load("obama.jpg")
    (face,) = found["obama.jpg"]
    left, top, right, bottom = face.box
    assert 0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]
    assert face.size == min(right - left, bottom - top) >= MIN_FACE
    assert face.score > 0
    assert face.landmarks.shape == (5, 2)
    # The eye corners and the nose lie inside the detector's box, widened by a tenth.
    pad = 0.1 * face.size
    assert np.all(face.landmarks[:, 0] >= left - pad) and np.all(
        face.landmarks[:, 0] <= right + pad
    )
    assert np.all(face.landmarks[:, 1] >= top - pad) and np.all(
        face.landmarks[:, 1] <= bottom + pad
    )
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
    assert face.thumbnail.shape == (128, 128, 3) and face.thumbnail.dtype == np.uint8
    # The thumbnail shows that face: found again in it, it is the same person.
    (again,) = model.find(face.thumbnail_image())
    assert np.linalg.norm(again.embedding - face.embedding) < people.THRESHOLD


def test_photos_of_one_person_are_closer_than_0_6_and_of_two_people_farther(labelled):
    embeddings = np.stack([f.embedding for _, f, _ in labelled])
    names = np.array([name for _, _, name in labelled])
    dist = people.distances(embeddings, embeddings)
    same = names[:, None] == names[None, :]
    off_diagonal = ~np.eye(len(names), dtype=bool)
    # Measured (bench_faces.py): same person 0.53 at most, two people 0.69 at least.
    assert dist[same & off_diagonal].max() < people.THRESHOLD
    assert dist[~same].min() > people.THRESHOLD
    assert len(set(names)) == 6 and same[off_diagonal].sum() > 0


def test_knn_names_the_test_photos_from_the_train_photos(found):
    named, names = _train(found)

    def who(relative):
        faces = _left_to_right(found[relative])
        return people.assign(np.stack([f.embedding for f in faces]), named, names)

    assert who("knn_examples/test/obama1.jpg") == ["obama"]
    assert who("knn_examples/test/alex_lacamoire1.jpg") == ["alex"]
    assert who("knn_examples/test/obama_and_biden.jpg") == ["biden", "obama", None]
    # Kit Harington has no train photo: unknown, not the nearest name.
    assert who("knn_examples/test/kit_with_rose.jpg") == ["rose", None]
    assert who("knn_examples/test/johnsnow_test1.jpg") == [None]


def test_not_this_person_takes_a_name_off_one_face_and_k_nn_looks_further(found):
    named, names = _train(found)
    faces = _left_to_right(found["knn_examples/test/obama_and_biden.jpg"])
    embeddings = np.stack([f.embedding for f in faces[:2]])
    assert people.assign(embeddings, named, names) == ["biden", "obama"]
    # "Not Obama" for the second face: no other person is within 0.6, so unknown.
    assert people.assign(embeddings, named, names, not_these=[(), {"obama"}]) == ["biden", None]
    grouping = people.group_faces(
        np.concatenate([named, embeddings]),
        names + [None, None],
        not_these={len(names) + 1: {"obama"}},
    )
    assert grouping.names[len(names) :] == ["biden", None]


def test_a_face_between_two_named_people_stays_unknown(labelled):
    """Siblings: when the nearest named faces disagree, no name is guessed."""
    obama = [f.embedding for p, f, n in labelled if n == "obama"]
    named = np.stack(obama[:2])
    assert people.assign(obama[2], named, ["anna", "bea"]) == [None]
    assert people.assign(obama[2], named, ["anna", "anna"]) == ["anna"]
    assert people.assign(obama[2], named, ["anna", "anna"], k=1) == ["anna"]


def test_chinese_whispers_groups_the_train_photos_by_person(found):
    embeddings, names = _train(found)
    labels = people.chinese_whispers(embeddings)
    # Every identity its own cluster (BCubed F1 1.0 measured); a merge of two people
    # would drop precision below 1, a split recall: both are caught.
    assert data.bcubed(names, labels)["f1"] == 1.0
    assert len(set(labels.tolist())) == len(set(names)) == 4


def test_chinese_whispers_on_every_labelled_face_merges_nobody(labelled):
    embeddings = np.stack([f.embedding for _, f, _ in labelled])
    names = [name for _, _, name in labelled]
    score = data.bcubed(names, people.chinese_whispers(embeddings))
    # Measured at 0.5: precision 1.0, F1 0.970 (one of Obama's ten faces, the oldest photo,
    # in a group of its own). Never two people in one group; at most such a split.
    assert score["precision"] == 1.0
    assert score["f1"] >= 0.95
    shuffled = np.random.default_rng(0).permutation(len(names))
    again = people.chinese_whispers(embeddings[shuffled])
    assert data.bcubed([names[i] for i in shuffled], again) == score


def test_dbscan_finds_dense_runs_and_leaves_a_lone_point_as_noise():
    points = np.array([[0.0], [0.4], [0.8], [3.0], [3.3], [10.0]])
    assert people.dbscan(points, eps=0.5, min_samples=2).tolist() == [0, 0, 0, 1, 1, -1]
    assert people.dbscan(points, eps=0.5, min_samples=3).tolist() == [0, 0, 0, -1, -1, -1]
    assert people.dbscan(points, eps=0.5, min_samples=1).tolist() == [0, 0, 0, 1, 1, 2]


def test_one_close_pair_between_two_groups_fuses_them_in_dbscan_not_in_chinese_whispers():
    """Why Chinese whispers: two groups of six on a line, their nearest members 0.4 apart."""
    a = [0.0, 0.05, 0.1, 0.15, 0.2, 0.45]
    b = [0.85, 1.1, 1.15, 1.2, 1.25, 1.3]
    points = np.array([[x] + [0.0] * 127 for x in a + b])
    assert len(set(people.dbscan(points, eps=0.5, min_samples=2).tolist())) == 1
    assert people.chinese_whispers(points, 0.5).tolist() == [0] * 6 + [1] * 6


def test_grouping_names_what_it_can_and_shows_only_groups_of_min_faces(labelled):
    embeddings = np.stack([f.embedding for _, f, _ in labelled])
    truth = [name for _, _, name in labelled]
    # The user named one photo of Rose and one of Alex; everyone else is unnamed.
    given = [None] * len(truth)
    given[truth.index("rose")] = "Rose"
    given[truth.index("alex")] = "Alex"
    grouping = people.group_faces(embeddings, given, min_faces=3)
    for name, person in zip(grouping.names, truth):
        assert name == {"rose": "Rose", "alex": "Alex"}.get(person)
    shown = [sorted({truth[i] for i in group}) for group in grouping.groups]
    assert all(len(who) == 1 for who in shown)  # no group mixes two people
    assert all(len(group) >= 3 for group in grouping.groups)
    # Kit (2 faces) and Lin-Manuel (1) are too few to be shown; they wait ungrouped.
    assert {truth[i] for i in grouping.ungrouped} >= {"kit", "lin"}
    assert {w[0] for w in shown} == {"obama", "biden"}


def test_two_named_people_are_never_merged_even_when_they_look_alike(labelled):
    obama = np.stack([f.embedding for _, f, n in labelled if n == "obama"])
    # Two faces of one man named as two people: siblings, to the model. Every other face of
    # him is within 0.6 of both, a tie: none is named, and the group they form is shown
    # unnamed beside Anna and Bea, not folded into either.
    given = ["Anna", "Bea"] + [None] * (len(obama) - 2)
    grouping = people.group_faces(obama, given, k=3)
    assert grouping.names == given
    assert grouping.groups == [list(range(2, len(obama)))]


def test_faces_too_small_to_recognise_are_skipped(model):
    # obama_small.jpg at a quarter: an 80 x 60 picture, upsampled once, face found at 37 px.
    tiny = Image.fromarray(data.load("obama_small.jpg")).resize((80, 60), Image.LANCZOS)
    keep_all = FaceModel(min_face=0)
    (small,) = keep_all.find(tiny)
    assert small.size < MIN_FACE
    assert model.find(tiny) == []
    # The same face at 0.35 (112 x 84) is 44 px: kept.
    larger = Image.fromarray(data.load("obama_small.jpg")).resize((112, 84), Image.LANCZOS)
    assert [f.size >= MIN_FACE for f in model.find(larger)] == [True]


@pytest.mark.parametrize(
    "picture",
    [
        Image.new("RGB", (1, 1)),
        Image.new("L", (300, 200), 128),
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 150, 3), np.uint8)),
        np.zeros((0, 0, 3), np.uint8),
    ],
    ids=["1x1", "flat grey", "face-sized noise", "empty array"],
)
def test_pictures_without_faces_give_none(model, picture):
    assert model.find(picture) == []


def test_grey_scale_and_rgba_pictures_are_read_as_rgb(model, found):
    colour = Image.fromarray(data.load("obama.jpg"))
    (grey,) = model.find(colour.convert("L"))
    (rgba,) = model.find(np.asarray(colour.convert("RGBA")))
    (face,) = found["obama.jpg"]
    assert np.linalg.norm(grey.embedding - face.embedding) < 0.2
    assert np.allclose(rgba.embedding, face.embedding)


def test_a_face_at_the_border_is_clipped_to_the_picture(model):
    image = data.load("obama.jpg")
    (whole,) = model.find(image)
    # Cut the photo through the middle of the face: its box reaches past the left edge.
    cut = image[:, (whole.box[0] + whole.box[2]) // 2 - 40 :]
    for face in model.find(cut):
        assert 0 <= face.box[0] < face.box[2] <= cut.shape[1]
        assert face.thumbnail.shape == (128, 128, 3)


def test_bad_pixels_are_refused_with_the_reason(model):
    with pytest.raises(ImageError, match="8-bit"):
        model.find(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ImageError, match="shape"):
        model.find(np.zeros((50, 50, 2), np.uint8))
    with pytest.raises(ImageError, match="PIL image or a numpy array"):
        model.find("obama.jpg")


def test_a_missing_or_broken_model_file_is_named(tmp_path):
    with pytest.raises(
        ModelError, match="shape_predictor_5_face_landmarks.dat: face model file missing"
    ):
        FaceModel(tmp_path)
    real = face_models.models_folder()
    (tmp_path / face_models.LANDMARKS).write_bytes(model_file(face_models.LANDMARKS).read_bytes())
    (tmp_path / face_models.EMBEDDER).write_bytes(b"not a model")
    with pytest.raises(
        ModelError, match="dlib_face_recognition_resnet_model_v1.dat: not a dlib model"
    ):
        FaceModel(tmp_path)
    assert (real / face_models.EMBEDDER).is_file()
