"""The shipped tiny-multilingual model finds generated shapes in English, Vietnamese and
French (issue 18, part 4's "done when"), measured without retraining it.

The held-out sets come from export.synth's public stream (the training draws its scenes from
its own stream). Encoding goes through export.multilingual_eval.open_encoder: the app's own
runtime, photofind.clip.load_model(folder, provider="cpu").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export import synth
from export.multilingual_eval import (
    LIBRARY_SEED,
    RECALL_SEED,
    attribute_precision,
    library_precision,
    open_encoder,
    recall_by_language,
    write_caption_sets,
)
from photofind.clip.package import sha256_file

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "resources" / "models" / "tiny-multilingual"
TARGET = 0.85


@pytest.fixture(scope="module")
def encoder():
    return open_encoder(PACKAGE)


def test_the_package_is_small_format_2_and_shares_tiny_synthetic_s_image_tower():
    manifest = json.loads((PACKAGE / "model.json").read_text(encoding="utf-8"))
    assert manifest["format"] == 2 and manifest["name"] == "tiny-multilingual"
    assert manifest["tokenizer"]["kind"] == "hf"
    assert manifest["tokenizer"]["inputs"] == {"input_ids": "ids", "attention_mask": "mask"}
    # Lower case comes from the tokenizer.json's own normalizer: no canonicalize.
    assert "canonicalize" not in manifest["tokenizer"]
    assert manifest["extra"]["languages"] == ["en", "vi", "fr"]
    for entry in manifest["files"].values():
        assert sha256_file(PACKAGE / entry["path"]) == entry["sha256"]
    tiny = json.loads((REPO / "resources/models/tiny-synthetic/model.json").read_text())
    assert manifest["files"]["visual"]["sha256"] == tiny["files"]["visual"]["sha256"]
    assert sum(p.stat().st_size for p in PACKAGE.iterdir()) <= 8 * 1024 * 1024


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    synth.write_dataset(folder, count=300, seed=LIBRARY_SEED)
    return folder


@pytest.fixture(scope="module")
def precision(encoder, library):
    figures = library_precision(encoder, library)
    print(json.dumps(figures, ensure_ascii=False))
    return figures


@pytest.mark.parametrize("lang", ["en", "vi"])
def test_photo_queries_reach_the_target_precision_at_10(precision, lang):
    # "a photo of a red circle" / "ảnh một hình tròn màu đỏ", every colour and shape.
    assert precision[lang]["queries"] >= 0.9 * len(synth.COLOURS) * len(synth.SHAPES)
    assert precision[lang]["mean"] >= TARGET
    # Vietnamese synonyms ("xanh lam" for "xanh dương", "hình chữ thập" for "dấu cộng") too.
    assert precision[lang]["all_synonyms"] >= TARGET - 0.05


def test_french_queries_find_the_shapes_too(precision):
    assert precision["fr"]["mean"] >= TARGET - 0.05


def test_the_measure_fails_a_model_that_ignores_the_query(encoder, library):
    """The same images with their labels shuffled: precision falls to chance (~0.05)."""
    data = json.loads((library / "captions.json").read_text(encoding="utf-8"))
    images = data["images"]
    vectors = encoder.encode_images([library / img["file_name"] for img in images])
    held = [{(o["colour"], o["shape"]) for o in img["synth"]["objects"]} for img in images]
    shuffled = [held[i] for i in np.random.default_rng(0).permutation(len(held))]
    assert np.mean(list(attribute_precision(encoder, vectors, shuffled, "vi").values())) < 0.3


def test_recall_at_k_with_each_language_s_captions(encoder, tmp_path):
    files = write_caption_sets(tmp_path, count=300, seed=RECALL_SEED)
    figures = recall_by_language(encoder, tmp_path, files)
    print(json.dumps(figures))
    # Chance for R@1 over 300 images is 1/300, for R@10 1/30. The shipped model measures
    # R@1 0.97 and R@10 1.00 in each language (500 images, `python -m export
    # eval-multilingual`); the margin is for other CPUs' rounding, not for a worse model.
    for lang in ("en", "vi", "fr"):
        for way in ("text_to_image", "image_to_text"):
            assert figures[lang][way]["R@1"] >= 0.85, (lang, way)
            assert figures[lang][way]["R@10"] >= 0.97, (lang, way)
