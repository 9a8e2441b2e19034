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
    # The runtime's tokenizer object: "file" names the role in files.
    assert tokenizer["kind"] == "hf" and tokenizer["file"] == "tokenizer"
    assert manifest["files"]["tokenizer"]["path"] == "tokenizer.json"
    expected_inputs = {"input_ids": "ids"}
    if family == "align":
        expected_inputs["attention_mask"] = "mask"
    assert tokenizer["inputs"] == expected_inputs
    assert isinstance(tokenizer["pad"], int)
    # SigLIP's text is canonicalized (punctuation out, lower case) as open_clip does.
    assert tokenizer.get("canonicalize", False) is (family == "siglip")
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
    tokenizer = Tokenizer.from_file(str(out / manifest["files"][entry["file"]]["path"]))
    tokenizer.enable_truncation(max_length=entry["context_length"])
    texts = ["A Photo of a Cat", "ảnh một hình tròn màu đỏ"]
    rows = [tokenizer.encode(t).ids for t in texts]
    length = entry["context_length"] if family == "siglip" else max(map(len, rows))
    ids = np.full((len(rows), length), entry["pad"], dtype=np.int64)
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
        assert manifest["resize_size"] == manifest["extra"]["preprocess"]["resize_size"] == 40
        assert manifest["image_size"] == 32
        assert manifest["mean"] == manifest["std"] == pytest.approx([0.5] * 3)


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


# ---- through the app's runtime ---------------------------------------------------------------


def _photos(folder, sizes=((50, 37), (29, 45), (64, 64))):
    """Small pictures of other sizes than the towers take (so every resize step runs)."""
    from PIL import Image

    paths = []
    for i, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        pixels = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy + 40 * i) % 256], -1)
        pixels[h // 3 : h // 2, w // 4 : w // 2] = (230, 20, 40)
        path = folder / f"photo{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _cosines(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_the_app_runtime_runs_the_package_as_torch_does(converted, tmp_path):
    """photofind.clip.load_model on the package: its tokenizer gives the checkpoint's ids
    (SigLIP's after canonicalize, padded to the full context), its preprocessing the image
    processor's pixels, and both towers torch's vectors (cosine >= 0.9999)."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    from export.hf_convert import HFImageTower, HFTextTower
    from photofind.clip.hf_tokenizer import clean
    from photofind.clip.model import load_model

    family, folder, out, manifest = converted
    hf = load_pretrained(folder)
    model = load_model(out, provider="cpu", check=True)
    texts = ["A Photo of a Cat!", "two dogs, playing in the snow.", "ảnh một hình tròn màu đỏ"]
    cleaned = [clean(t, family == "siglip") for t in texts]
    batch = hf.tokenizer(
        cleaned,
        padding="max_length",
        truncation=True,
        max_length=hf.context_length,
        return_tensors="pt",
    )
    ids, mask = model.tokenizer.batch(texts)
    assert ids.tolist() == batch["input_ids"].tolist()
    assert mask.tolist() == batch["attention_mask"].tolist()
    assert ids.shape == (len(texts), manifest["context_length"])  # SigLIP: the full length
    if family == "siglip":
        assert cleaned[0] == "a photo of a cat"
    with torch.no_grad():
        want = HFTextTower(hf.model, family).eval()(*(batch[n] for n in hf.inputs)).numpy()
    got = model.encode_texts(texts)
    assert _cosines(want, got).min() >= MIN_COSINE, _cosines(want, got)

    # "shortest" is OpenAI's (torchvision's) crop, whose offset rounds an odd margin where
    # transformers' CLIPImageProcessor floors it: a one-pixel shift, so CLIP gets pictures
    # with even margins; the squash families get odd ones too.
    sizes = ((48, 32), (32, 54), (64, 64)) if family == "clip" else ((50, 37), (29, 45), (64, 64))
    paths = _photos(tmp_path, sizes)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    pictures = [Image.open(p).convert("RGB") for p in paths]
    pixels = processor(images=pictures, return_tensors="pt")["pixel_values"].to(torch.float32)
    ours = np.stack([model.preprocess(p, fast=False) for p in paths])
    assert ours.shape == tuple(pixels.shape)
    # The same resize, crop and arithmetic: the same pixels (float32 rounding apart).
    np.testing.assert_allclose(ours, pixels.numpy(), atol=1e-5)
    with torch.no_grad():
        want = HFImageTower(hf.model).eval()(pixels).numpy()
    got = model.encode_images(paths, fast=False)
    assert _cosines(want, got).min() >= MIN_COSINE, _cosines(want, got)


@pytest.mark.parametrize("resample", [0, 2, 3])
@pytest.mark.parametrize(("side", "crop"), [(40, 32), (45, 32), (33, 32), (32, 32)])
def test_squash_then_crop_is_the_efficientnet_processor_s_arithmetic(
    tmp_path, side, crop, resample
):
    """ALIGN's image processor (EfficientNet's: squash to ``size``, centre crop, rescale)
    and the runtime's squash-then-crop give the same pixels, odd margins included (the
    processor's crop offset is floor((R - S) / 2), torchvision's a rounding)."""
    from PIL import Image
    from transformers.models.efficientnet.image_processing_pil_efficientnet import (
        EfficientNetImageProcessorPil,
    )

    from photofind.clip.package import ModelSpec, PackageFile
    from photofind.clip.resize import preprocess_for

    settings = {
        "size": {"height": side, "width": side},
        "crop_size": {"height": crop, "width": crop},
        "do_center_crop": True,
        "include_top": False,
        "rescale_offset": True,
        "rescale_factor": 1 / 127.5,
        "do_normalize": False,
        "resample": resample,
    }
    pre = preprocessing_from_processor(settings)
    assert pre.resize == ("squash-then-crop" if side != crop else "squash")
    spec = ModelSpec(
        name="align",
        embed_dim=8,
        image_size=pre.image_size,
        context_length=8,
        vocab_size=0,
        files={"visual": PackageFile("v.onnx", "0" * 64)},
        mean=pre.mean,
        std=pre.std,
        resize=pre.resize,
        interpolation=pre.interpolation,
        resize_size=pre.resize_size if pre.resize == "squash-then-crop" else 0,
    )
    processor = EfficientNetImageProcessorPil(**settings)
    for path in _photos(tmp_path, sizes=((50, 37), (29, 45), (97, 61))):
        theirs = processor(images=[Image.open(path).convert("RGB")], return_tensors="np")
        ours = preprocess_for(path, spec, fast=False)
        np.testing.assert_allclose(ours, theirs["pixel_values"][0], atol=1e-5)


def test_squash_then_crop_needs_its_resize_size(tmp_path):
    from photofind.clip.package import read_manifest
    from photofind.errors import ModelError

    manifest = {
        "format": 2,
        "name": "x",
        "embed_dim": 8,
        "image_size": 32,
        "context_length": 8,
        "resize": "squash-then-crop",
        "tokenizer": {"kind": "hf"},
        "files": {
            role: {"path": f"{role}.bin", "sha256": "0" * 64}
            for role in ("visual", "textual", "tokenizer")
        },
    }
    (tmp_path / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelError, match="resize_size"):
        read_manifest(tmp_path)
    manifest["resize_size"] = 31
    (tmp_path / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelError, match="resize_size' should be 32"):
        read_manifest(tmp_path)
    manifest["resize_size"] = 36
    (tmp_path / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert read_manifest(tmp_path).resize_size == 36
