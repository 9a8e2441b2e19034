"""The app end to end with the bundled tiny-multilingual model (issue 18): a library indexed
by tiny-synthetic changes to tiny-multilingual without encoding a photo again (the two share
their image tower, byte for byte), then answers a Vietnamese query on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from photofind.cli import main
from photofind.clip.model import load_model
from photofind.library.catalog import Catalog
from photofind.paths import bundled_models_dir
from photofind.synthetic import encode, make_scene, render, scene_rng

QUERY = "ảnh một hình tròn màu đỏ"  # "a photo of a red circle"


def _stored_vectors(lib):
    with Catalog.open(lib, readonly=True) as catalog:
        chunks = list(catalog.embeddings())
        return (
            catalog.model_id,
            np.concatenate([ids for ids, _ in chunks]),
            np.concatenate([vectors for _, vectors in chunks]),
        )


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Generated photos (the held-out public stream): 8 holding a red circle among 32 that do
    not (red squares and blue circles among them)."""
    folder = tmp_path_factory.mktemp("photos")
    red_circles, others, index = [], [], 0
    while len(red_circles) < 8 or len(others) < 32:
        scene = make_scene(scene_rng(2000, index))
        name = f"photo_{index:04d}.{scene.format}"
        has = any(o.colour == "red" and o.shape == "circle" for o in scene.objects)
        group = red_circles if has else others
        if len(group) < (8 if has else 32):
            (folder / name).write_bytes(encode(render(scene), scene.format))
            group.append(name)
        index += 1
    return folder, set(red_circles)


def test_both_bundled_models_share_the_image_tower():
    tiny = load_model(bundled_models_dir() / "tiny-synthetic", provider="cpu")
    multi = load_model(bundled_models_dir() / "tiny-multilingual", provider="cpu")
    assert tiny.image_tower_id == multi.image_tower_id


def test_a_library_switches_without_re_encoding_and_answers_vietnamese(photos, tmp_path, capsys):
    folder, red_circles = photos
    lib = tmp_path / "lib"
    base = ["--library", str(lib), "--provider", "cpu"]
    assert main([*base, "models", "use", "tiny-synthetic"]) == 0
    assert main([*base, "index", "--no-progress", str(folder)]) == 0
    before_id, before_ids, before = _stored_vectors(lib)
    assert before_id.startswith("tiny-synthetic@") and len(before_ids) == 40
    capsys.readouterr()

    assert main([*base, "models", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("tiny-synthetic", "tiny-multilingual"):
        line = next(row for row in listing.splitlines() if f" {name} " in row)
        assert "bundled" in line
    assert "* tiny-synthetic " in listing

    assert main([*base, "models", "use", "tiny-multilingual"]) == 0
    said = capsys.readouterr().out
    assert "tiny-multilingual is now the library's model" in said
    assert "shares the image tower of tiny-synthetic" in said and "re-indexes" not in said
    assert main([*base, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["model"].startswith("tiny-multilingual@") and "staged_model" not in status
    assert status["indexed"] == status["vectors_in_index"] == 40
    # The very vectors tiny-synthetic wrote, now the new model's: none was encoded again.
    after_id, after_ids, after = _stored_vectors(lib)
    assert after_id == status["model"]
    np.testing.assert_array_equal(after_ids, before_ids)
    np.testing.assert_array_equal(after, before)
    # ... and they are what tiny-multilingual's own image tower makes of the photos.
    multi = load_model(bundled_models_dir() / "tiny-multilingual", provider="cpu")
    with Catalog.open(lib, readonly=True) as catalog:
        first = catalog.embedding(int(after_ids[0]))
        path = catalog.photo(int(after_ids[0])).path
    np.testing.assert_allclose(multi.encode_images([path])[0], first, atol=1e-5)

    assert main([*base, "index", "--no-progress"]) == 0  # nothing left to encode
    assert "re-indexing" not in capsys.readouterr().err

    assert main([*base, "search", QUERY, "-n", "5", "--all", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    names = [hit["path"].rsplit("/", 1)[-1] for hit in hits]
    assert len(names) == 5
    # Red circles first: the first five all hold one (8 of the 40 photos do).
    assert set(names) <= red_circles, (names, sorted(red_circles))
