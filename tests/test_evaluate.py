"""photofind.evaluate: the COCO captions reader and the Recall@K arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from photofind.errors import PhotofindError
from photofind.evaluate import (
    DatasetError,
    first_hit_ranks,
    read_captions,
    recall_at_k,
    recall_from_ranks,
)

# ---------------------------------------------------------------------------------------------
# The reader


def _write_set(folder, images, annotations, *, make_files=True):
    folder.mkdir(parents=True, exist_ok=True)
    if make_files:
        for entry in images:
            if isinstance(entry, dict) and isinstance(entry.get("file_name"), str):
                Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / entry["file_name"])
    path = folder / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def _good_set(tmp_path):
    images = [{"id": 10, "file_name": "a.png"}, {"id": 20, "file_name": "b.png"}]
    annotations = [
        {"id": 1, "image_id": 10, "caption": "a red square"},
        {"id": 2, "image_id": 20, "caption": "a blue circle"},
        {"id": 3, "image_id": 10, "caption": " a small red square "},
    ]
    return _write_set(tmp_path, images, annotations)


def test_reads_a_good_set(tmp_path):
    data = read_captions(_good_set(tmp_path), tmp_path)
    assert data.image_ids == [10, 20]
    assert [p.name for p in data.image_paths] == ["a.png", "b.png"]
    assert data.captions == ["a red square", "a blue circle", "a small red square"]
    assert data.caption_image.tolist() == [0, 1, 0]
    assert len(data) == 2


def test_dataset_error_is_a_photofind_error():
    assert issubclass(DatasetError, PhotofindError)


def test_missing_captions_file(tmp_path):
    with pytest.raises(DatasetError, match=r"captions file .*nope\.json does not exist"):
        read_captions(tmp_path / "nope.json", tmp_path)


def test_missing_images_folder(tmp_path):
    path = _good_set(tmp_path)
    with pytest.raises(DatasetError, match=r"images folder .*elsewhere does not exist"):
        read_captions(path, tmp_path / "elsewhere")


def test_malformed_json(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"captions\.json is not valid JSON"):
        read_captions(path, tmp_path)


def test_not_coco_shaped(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="should hold a JSON object"):
        read_captions(path, tmp_path)
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="lists no images"):
        read_captions(path, tmp_path)
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}]}))
    with pytest.raises(DatasetError, match="'annotations' should be a list"):
        read_captions(path, tmp_path)


def test_missing_image_file(tmp_path):
    path = _good_set(tmp_path)
    (tmp_path / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image file\(s\) .* do not exist .*b\.png"):
        read_captions(path, tmp_path)


def test_image_without_captions(tmp_path):
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "lonely.png"}]
    path = _write_set(tmp_path, images, [{"id": 1, "image_id": 1, "caption": "x"}])
    with pytest.raises(DatasetError, match=r"1 image\(s\) have no caption: 2 \(lonely\.png\)"):
        read_captions(path, tmp_path)


def test_duplicate_image_ids(tmp_path):
    images = [{"id": 7, "file_name": "a.png"}, {"id": 7, "file_name": "b.png"}]
    path = _write_set(tmp_path, images, [{"id": 1, "image_id": 7, "caption": "x"}])
    with pytest.raises(DatasetError, match="image id 7 appears more than once"):
        read_captions(path, tmp_path)


def test_duplicate_annotation_ids(tmp_path):
    images = [{"id": 1, "file_name": "a.png"}]
    annotations = [
        {"id": 5, "image_id": 1, "caption": "x"},
        {"id": 5, "image_id": 1, "caption": "y"},
    ]
    path = _write_set(tmp_path, images, annotations)
    with pytest.raises(DatasetError, match="annotation ids appear more than once: 5"):
        read_captions(path, tmp_path)


def test_caption_of_unknown_image(tmp_path):
    images = [{"id": 1, "file_name": "a.png"}]
    annotations = [
        {"id": 1, "image_id": 1, "caption": "x"},
        {"id": 2, "image_id": 99, "caption": "y"},
    ]
    path = _write_set(tmp_path, images, annotations)
    with pytest.raises(DatasetError, match="belong to image ids not in 'images': 99"):
        read_captions(path, tmp_path)


@pytest.mark.parametrize(
    ("images", "annotations", "message"),
    [
        ([{"file_name": "a.png"}], [], r"images\[0\] has no integer 'id'"),
        ([{"id": "1", "file_name": "a.png"}], [], r"images\[0\] has no integer 'id'"),
        ([{"id": 1}], [], r"images\[0\] \(id 1\) has no 'file_name'"),
        ([{"id": 1, "file_name": "a.png"}], [{"caption": "x"}], "no integer 'image_id'"),
        ([{"id": 1, "file_name": "a.png"}], [{"image_id": 1, "caption": " "}], "empty caption"),
        ([{"id": 1, "file_name": "a.png"}], ["text"], r"annotations\[0\] should be an object"),
    ],
)
def test_malformed_entries(tmp_path, images, annotations, message):
    path = _write_set(tmp_path, images, annotations)
    with pytest.raises(DatasetError, match=message):
        read_captions(path, tmp_path)


# ---------------------------------------------------------------------------------------------
# Recall@K arithmetic


def test_first_hit_ranks_on_a_hand_made_matrix():
    # 4 queries over 5 items; the relevant item of each query is marked with a star.
    similarity = np.array(
        [
            [0.9, 0.1, 0.2, 0.3, 0.0],  # *0 is top: rank 0
            [0.5, 0.4, 0.6, 0.1, 0.2],  # *1 has 0 and 2 above it: rank 2
            [0.1, 0.2, 0.3, 0.4, 0.5],  # *2 has 3 and 4 above it: rank 2
            [0.3, 0.3, 0.3, 0.3, 0.3],  # *3 tied with all four others: ties count against
        ]
    )
    relevant = np.eye(4, 5, dtype=bool)
    assert first_hit_ranks(similarity, relevant).tolist() == [0, 2, 2, 4]


def test_first_hit_uses_the_best_of_several_relevant_items():
    similarity = np.array([[0.1, 0.8, 0.9, 0.7]])
    # Items 0 and 3 are relevant; 3 is the better one, with 1 and 2 above it.
    relevant = np.array([[True, False, False, True]])
    assert first_hit_ranks(similarity, relevant).tolist() == [2]


def test_first_hit_needs_a_relevant_item():
    with pytest.raises(ValueError, match="at least one relevant"):
        first_hit_ranks(np.zeros((1, 2)), np.zeros((1, 2), bool))


def test_recall_from_ranks():
    assert recall_from_ranks(np.array([0, 2, 2, 4, 12]), ks=(1, 3, 5, 10)) == {
        "R@1": 0.2,
        "R@3": 0.6,
        "R@5": 0.8,
        "R@10": 0.8,
    }


def test_recall_at_k_both_ways():
    # 3 images, 4 captions (image 0 has two). Unit vectors along axes make the similarity
    # matrix a hand-checkable table.
    images = np.eye(3, dtype=np.float32)
    texts = np.array(
        [
            [1.0, 0.0, 0.0],  # caption 0 of image 0: exactly image 0 -> rank 0
            [0.0, 0.6, 0.8],  # caption 1 of image 0: image 0 scores 0, the others above
            [0.0, 0.8, 0.6],  # caption of image 1: image 1 top
            [0.0, 0.8, 0.6],  # caption of image 2: image 1 above image 2 -> rank 1
        ],
        dtype=np.float32,
    )
    owner = np.array([0, 0, 1, 2])
    figures = recall_at_k(images, texts, owner, ks=(1, 2, 3))
    # text->image ranks: 0, 2, 0, 1
    assert figures["text_to_image"] == {"R@1": 0.5, "R@2": 0.75, "R@3": 1.0}
    # image->text: image 0's best caption is caption 0 (1.0): rank 0. Image 1 scores 0.6,
    # 0.8, 0.8 on captions 1..3; its own caption 2 ties with caption 3: rank 1. Image 2
    # scores 0.8 on caption 1 above its own caption 3 (0.6), tied with caption 2: rank 2.
    assert figures["image_to_text"] == {"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0}


def test_recall_chunks_give_the_same_figures(monkeypatch):
    import photofind.evaluate as evaluate_module

    rng = np.random.default_rng(0)
    images = rng.normal(size=(40, 8)).astype(np.float32)
    texts = rng.normal(size=(90, 8)).astype(np.float32)
    owner = rng.integers(0, 40, 90)
    owner[:40] = np.arange(40)
    whole = recall_at_k(images, texts, owner)
    calls = []
    monkeypatch.setattr(evaluate_module, "_CHUNK", 7)
    chunked = recall_at_k(images, texts, owner, progress=lambda *a: calls.append(a))
    assert chunked == whole
    assert calls[-1] == ("ranking", 130, 130)
