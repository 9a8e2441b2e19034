"""Package format 2: the tokenizer object, any number of hashed files, resize modes.

The bundled tiny-synthetic model (format 1, learned weights) is re-packaged here in format
2 with its BPE vocabulary written as a tokenizer.json of the ``hf`` kind, an int8-style extra
graph role and a tokenizer_config.json role: it must load and give the very same vectors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photofind.clip import load_model
from photofind.clip.package import (
    CLIP_MEAN,
    CLIP_STD,
    FORMAT_VERSION,
    read_manifest,
    sha256_file,
    verify_files,
)
from photofind.clip.preprocess import _normalise, preprocess
from photofind.clip.resize import preprocess_for
from photofind.errors import ModelError
from photofind.paths import bundled_models_dir
from tests import immich_replicas

TINY = bundled_models_dir() / "tiny-synthetic"
CAPTIONS = ["a photo of a red circle", "a small blue star on a striped background", "hearts"]


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory) -> Path:
    """tiny-synthetic in format 2: hf tokenizer.json, graphs byte-identical, extra roles."""
    folder = tmp_path_factory.mktemp("tiny-v2") / "tiny-synthetic-v2"
    shutil.copytree(TINY, folder)
    data = json.loads((folder / "model.json").read_text())
    tokenizer = immich_replicas.clip_tokenizer(
        folder / data["files"]["vocab"]["path"], data["vocab_size"]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "!"}))
    shutil.copyfile(folder / "visual.onnx", folder / "visual_int8.onnx")
    del data["vocab_size"], data["context_length"]
    files = data.pop("files")
    del files["vocab"]
    for role, rel in (
        ("tokenizer", "tokenizer.json"),
        ("tokenizer_config", "tokenizer_config.json"),
        ("visual_int8", "visual_int8.onnx"),
    ):
        files[role] = {"path": rel, "sha256": sha256_file(folder / rel), "size": 1}
    data.update(
        format=2,
        name="tiny-synthetic-v2",
        files=files,
        tokenizer={"kind": "hf", "file": "tokenizer", "context_length": 32, "pad": 0},
    )
    (folder / "model.json").write_text(json.dumps(data))
    (folder / "bpe_tiny_synthetic.txt.gz").unlink()
    return folder


def test_format_1_still_loads():
    spec = read_manifest(TINY)
    assert spec.format == 1 and spec.text.kind == "clip-bpe" and spec.text.file == "vocab"
    assert FORMAT_VERSION == 2


def test_format_2_with_an_hf_tokenizer_gives_the_same_vectors(tiny_v2):
    spec = read_manifest(tiny_v2)
    assert spec.text.kind == "hf" and spec.vocab_size == 0 and spec.context_length == 32
    assert set(spec.graphs) == {"visual", "textual", "visual_int8"}
    assert {"tokenizer", "tokenizer_config"} <= set(verify_files(tiny_v2, spec))
    old, new = load_model(TINY, provider="cpu"), load_model(tiny_v2, provider="cpu")
    np.testing.assert_array_equal(old.tokenize(CAPTIONS), new.tokenize(CAPTIONS))
    np.testing.assert_allclose(old.encode_texts(CAPTIONS), new.encode_texts(CAPTIONS), atol=1e-6)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((2, 3, 96, 96)).astype(np.float32)
    np.testing.assert_array_equal(old.encode_pixels(pixels), new.encode_pixels(pixels))
    # The graphs are the bundled ones, byte for byte.
    assert spec.files["visual"].sha256 == read_manifest(TINY).files["visual"].sha256


def test_an_extra_graph_is_hashed_like_the_rest(tiny_v2, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_v2, copy)
    with open(copy / "visual_int8.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="visual_int8.onnx is corrupt or was changed"):
        verify_files(copy, read_manifest(copy))


def _with(folder: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / "bad"
    shutil.copytree(folder, copy)
    data = json.loads((copy / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (copy / "model.json").write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tokenizer": {"kind": "sentencepiece"}}, "tokenizer.kind should be one of"),
        ({"tokenizer": {"kind": "hf", "file": "nope"}}, "tokenizer.file 'nope' is not a role"),
        (
            {"tokenizer": {"kind": "hf", "context_length": 32, "pad": 1.5}},
            "tokenizer.pad should be a token or an id",
        ),
        ({"tokenizer": {"kind": "hf", "context_length": 1}}, "context_length should be 2.."),
        ({"tokenizer": {"kind": "hf"}}, r"context_length \(or context_length\) is missing"),
        (
            {"tokenizer": {"kind": "hf", "context_length": 32, "language_prefix": {"codes": 3}}},
            "language_prefix should be",
        ),
        (
            {"tokenizer": {"kind": "hf", "context_length": 32, "inputs": {"x": "pixels"}}},
            "inputs should map graph input names",
        ),
        ({"resize": "fisheye"}, "resize 'fisheye' / interpolation 'bicubic' is not supported"),
        ({"fill": 300}, "field 'fill' should be 0..255"),
    ],
)
def test_format_2_fields_are_checked(tiny_v2, tmp_path, changes, message):
    with pytest.raises(ModelError, match=message):
        read_manifest(_with(tiny_v2, tmp_path, **changes))


def test_format_1_keeps_its_one_preprocessing(tmp_path):
    with pytest.raises(ModelError, match="format 1: resize one of"):
        read_manifest(_with(TINY, tmp_path, resize="squash"))


def test_a_pad_token_the_vocabulary_lacks_is_refused(tiny_v2, tmp_path):
    copy = _with(
        tiny_v2,
        tmp_path,
        tokenizer={"kind": "hf", "file": "tokenizer", "context_length": 32, "pad": "<pad>"},
    )
    with pytest.raises(ModelError, match="pad token '<pad>' is not in the vocabulary"):
        load_model(copy, provider="cpu")


# -- resize modes -------------------------------------------------------------------------


def _spec(resize: str, interpolation: str = "bicubic", fill: int = 0):
    from photofind.clip.package import ModelSpec

    return ModelSpec(
        name="t",
        embed_dim=8,
        image_size=32,
        context_length=8,
        vocab_size=0,
        files={},
        resize=resize,
        interpolation=interpolation,
        fill=fill,
    )


@pytest.fixture
def wide(tmp_path) -> Path:
    """60 x 30: red left third, green middle, blue right (a centre crop sees green only)."""
    pixels = np.zeros((30, 60, 3), dtype=np.uint8)
    pixels[:, :20, 0] = pixels[:, 20:40, 1] = pixels[:, 40:, 2] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    return path


def test_squash_keeps_the_whole_picture(wide):
    got = preprocess_for(wide, _spec("squash"), fast=False)
    expected = _normalise(
        Image.open(wide).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC),
        CLIP_MEAN,
        CLIP_STD,
    )
    np.testing.assert_array_equal(got, expected)
    red = (1 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert got[0, 16, 2] == pytest.approx(red, abs=0.05)  # the red third survives


def test_letterbox_pads_with_the_fill(wide):
    got = preprocess_for(wide, _spec("letterbox", fill=128), fast=False)
    grey = (128 / 255 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    np.testing.assert_allclose(got[:, :8, :], grey[:, None, None] * np.ones((3, 8, 32)), 1e-5)
    np.testing.assert_allclose(got[:, 24:, :], grey[:, None, None] * np.ones((3, 8, 32)), 1e-5)
    assert got[2, 16, 30] > 1.5  # the blue third is inside the picture


def test_shortest_with_bicubic_is_the_exact_clip_path(wide):
    got = preprocess_for(wide, _spec("shortest"), fast=False)
    expected = preprocess(Image.open(wide), 32, CLIP_MEAN, CLIP_STD)
    np.testing.assert_array_equal(got, expected)
    green = (1 - CLIP_MEAN[1]) / CLIP_STD[1]
    assert got[1, 16, 16] == pytest.approx(green, abs=0.05)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "lanczos", "box", "hamming"])
def test_other_filters_crop_the_same_centre(wide, interpolation):
    got = preprocess_for(wide, _spec("shortest", interpolation), fast=False)
    green = (1 - CLIP_MEAN[1]) / CLIP_STD[1]
    assert got[1, 16, 16] == pytest.approx(green, abs=0.05)
    assert got.shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["squash", "letterbox", "shortest"])
def test_the_fast_path_stays_close(wide, mode):
    spec = _spec(mode, "bilinear")
    fast, exact = preprocess_for(wide, spec, fast=True), preprocess_for(wide, spec, fast=False)
    assert np.abs(fast - exact).mean() < 2 / 255 / min(CLIP_STD)


# -- why CLIP's BPE keeps its own clean-up and split ---------------------------------------


def test_tokenizers_alone_differ_from_clip_where_the_docstring_says():
    """CLIP's tokenizer.json run by tokenizers alone (as Hugging Face's CLIPTokenizerFast and
    Immich run it) agrees with the reference ids on ordinary text, and differs where
    tokenizers has no step for the reference's: HTML entities, ftfy's mojibake repair."""
    from export.vocab import find_clip_vocab
    from photofind.clip.tokenizer import ClipTokenizer

    reference = ClipTokenizer(find_clip_vocab(), vocab_size=49408)  # OpenCLIP's ids (tested)
    alone = immich_replicas.clip_tokenizer()

    def ids(text):
        return alone.encode(text).ids

    for text in ["a photo of a cat", "A PHOTO of  a Cat!", "two dogs, 3 cats & a bird"]:
        assert ids(text) == reference(text)[0][: len(ids(text))].tolist()
    for text in ["fish &amp; chips", "cafÃ©"]:  # an entity; UTF-8 read as Latin-1
        assert ids(text) != reference(text)[0][: len(ids(text))].tolist()
