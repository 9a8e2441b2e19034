"""export.hf_convert: transformers CLIP, SigLIP and ALIGN checkpoints -> format-2 packages.

The checkpoints are small random ones built here (tests/hf_models.py: each family with its own
kind of tokenizer and image processor, written by save_pretrained); the conversion runs
through the real ``python -m export convert-hf`` entry point, and its graphs are compared with
torch (cosine >= 0.9999) on inputs other than the ones traced.
"""

from __future__ import annotations

import json

import hf_models
import numpy as np
import pytest

from export import ExportError
from export.__main__ import main as export_main
from export.hf_convert import (
    MIN_COSINE,
    check_hf_package,
    load_pretrained,
    preprocessing_from_processor,
)
from photofind.clip.package import sha256_file

FAMILIES = ("clip", "siglip", "align")


@pytest.fixture(scope="module", params=FAMILIES)
def converted(request, tmp_path_factory):
    family = request.param
    folder = hf_models.build(family, tmp_path_factory.mktemp(f"hf-{family}"))
    out = tmp_path_factory.mktemp(f"pkg-{family}") / "package"
    assert export_main(["convert-hf", "--model", str(folder), "--out", str(out), "--check"]) == 0
    return family, folder, out, json.loads((out / "model.json").read_text(encoding="utf-8"))


def test_the_graphs_match_torch(converted):
    family, folder, out, _ = converted
    result = check_hf_package(load_pretrained(folder), out)
    print(family, result)
    assert result["visual_min_cosine"] >= MIN_COSINE
    assert result["textual_min_cosine"] >= MIN_COSINE
    assert result["tokenizer_json_ids_match"]


def test_the_package_is_format_2_with_every_file_hashed(converted):
    family, _, out, manifest = converted
    assert manifest["format"] == 2
    assert set(manifest["files"]) == {"visual", "textual", "tokenizer"}
    for entry in manifest["files"].values():
        assert sha256_file(out / entry["path"]) == entry["sha256"]
    tokenizer = manifest["tokenizer"]
    assert tokenizer["kind"] == "hf" and tokenizer["file"] == manifest["files"]["tokenizer"]["path"]
    expected_inputs = ["input_ids", "attention_mask"] if family == "align" else ["input_ids"]
    assert tokenizer["inputs"] == expected_inputs
    assert (
        tokenizer["context_length"]
        == manifest["context_length"]
        == {
            "clip": 77,
            "siglip": 16,
            "align": 32,
        }[family]
    )
    assert (
        manifest["arch"]
        == {"clip": "CLIPModel", "siglip": "SiglipModel", "align": "AlignModel"}[family]
    )
    assert manifest["extra"]["normalized"] is True
    # SigLIP reads its last position: its ids must run at the full length.
    assert manifest["extra"]["textual_dynamic_length"] is (family != "siglip")


def test_the_runtime_side_tokenizer_and_graphs_give_unit_vectors(converted):
    """What a runtime does with the package alone: tokenizer.json, pad, run the graph."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    family, _, out, manifest = converted
    entry = manifest["tokenizer"]
    tokenizer = Tokenizer.from_file(str(out / entry["file"]))
    tokenizer.enable_truncation(max_length=entry["context_length"])
    texts = ["A Photo of a Cat", "ảnh một hình tròn màu đỏ"]
    rows = [tokenizer.encode(t).ids for t in texts]
    length = entry["context_length"] if family == "siglip" else max(map(len, rows))
    ids = np.full((len(rows), length), entry["pad_id"], dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    session = ort.InferenceSession(str(out / "textual.onnx"), providers=["CPUExecutionProvider"])
    vectors = session.run(None, {k: feeds[k] for k in entry["inputs"]})[0]
    assert vectors.shape == (2, manifest["embed_dim"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    size = manifest["image_size"]
    visual = ort.InferenceSession(str(out / "visual.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).normal(size=(3, 3, size, size)).astype(np.float32)
    images = visual.run(None, {"pixel_values": pixels})[0]
    assert images.shape == (3, manifest["embed_dim"])


def test_each_family_keeps_its_own_preprocessing(converted):
    family, _, _, manifest = converted
    if family == "clip":
        assert (manifest["resize"], manifest["interpolation"]) == ("shortest", "bicubic")
        assert manifest["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    elif family == "siglip":
        assert (manifest["resize"], manifest["interpolation"]) == ("squash", "bilinear")
        assert manifest["mean"] == manifest["std"] == pytest.approx([0.5] * 3)
    else:
        # Squash to 40, crop 32; pixels × 1/127.5 - 1 is (pixels/255 - 0.5) / 0.5.
        assert manifest["resize"] == "squash-then-crop"
        assert manifest["extra"]["preprocess"]["resize_size"] == 40
        assert manifest["image_size"] == 32
        assert manifest["mean"] == manifest["std"] == pytest.approx([0.5] * 3)
    assert manifest["tokenizer"]["lowercase"] is True  # all three lowercase their text here


def test_preprocessing_arithmetic_matches_the_processors_own():
    """(p × factor - offset - m) / s equals (p / 255 - mean) / std for every pixel value."""
    config = {
        "size": {"height": 40, "width": 40},
        "do_rescale": True,
        "rescale_factor": 1 / 127.5,
        "rescale_offset": True,
        "do_normalize": True,
        "image_mean": [0.1, 0.2, 0.3],
        "image_std": [0.9, 0.8, 0.7],
        "resample": 2,
    }
    pre = preprocessing_from_processor(config)
    p = np.arange(256, dtype=np.float64)
    for c in range(3):
        theirs = (p / 127.5 - 1 - config["image_mean"][c]) / config["image_std"][c]
        ours = (p / 255 - pre.mean[c]) / pre.std[c]
        assert np.allclose(theirs, ours)
    assert (pre.resize, pre.interpolation, pre.image_size) == ("squash", "bilinear", 40)
    with pytest.raises(ExportError, match="include_top"):
        preprocessing_from_processor({**config, "include_top": True})
    with pytest.raises(ExportError, match="not square"):
        preprocessing_from_processor({**config, "size": {"height": 40, "width": 30}})


def test_a_folder_that_is_not_a_checkpoint_is_refused_clearly(tmp_path, capsys):
    assert export_main(["convert-hf", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_another_model_type_is_refused_by_name(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)
    ).save_pretrained(tmp_path)
    assert export_main(["convert-hf", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "model type 'bert' is not one of clip, siglip, align" in capsys.readouterr().err
