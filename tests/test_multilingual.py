"""export.captions_i18n, the Unigram tokenizer and the masked text tower of tiny-multilingual,
and a short training run of export.train_multilingual end to end."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import replace

import numpy as np
import pytest
import torch

from export import captions_i18n as i18n
from export import synth
from export.text_tower import MaskedTextTower, TextTowerConfig
from export.train_multilingual import (
    EOS_ID,
    IMAGE_TOWER,
    PAD_ID,
    MultilingualSettings,
    encode_padded,
    encode_trimmed,
    learn_tokenizer,
    tokenizer_corpus,
    train_and_export,
    training_caption,
)
from photofind.clip.model import load_model
from photofind.clip.package import sha256_file

RED_CIRCLE = synth.SynthObject("circle", "red", "small", "centre")


def _scene(*objects, background="plain", colour="grey"):
    return synth.Scene(tuple(objects), background, colour, 256, 256, "png", 0)


# ---- captions --------------------------------------------------------------------------------


def test_the_queries_in_each_language():
    assert i18n.photo_query("red", "circle", "en") == "a photo of a red circle"
    assert i18n.photo_query("orange", "star", "en") == "a photo of an orange star"
    assert i18n.photo_query("red", "circle", "vi") == "ảnh một hình tròn màu đỏ"
    assert i18n.photo_query("yellow", "star", "vi") == "ảnh một ngôi sao màu vàng"
    assert i18n.photo_query("red", "circle", "fr") == "une photo d'un cercle rouge"
    assert i18n.photo_query("white", "cross", "fr") == "une photo d'une croix blanche"
    assert i18n.query_variants("blue", "cross", "vi") == [
        "ảnh một dấu cộng màu xanh dương",
        "ảnh một hình chữ thập màu xanh lam",
    ]


def test_vietnamese_names_every_colour_and_shape_with_its_diacritics():
    names = {
        "red": "đỏ",
        "orange": "cam",
        "yellow": "vàng",
        "green": "xanh lá",
        "purple": "tím",
        "white": "trắng",
        "black": "đen",
    }
    for colour, word in names.items():
        assert word in i18n.VI_COLOURS[colour]
    assert {"xanh dương", "xanh lam"} <= set(i18n.VI_COLOURS["blue"])
    assert i18n.VI_SHAPES["circle"] == ("hình tròn",)
    assert i18n.VI_SHAPES["square"] == ("hình vuông",)
    assert i18n.VI_SHAPES["triangle"] == ("hình tam giác",)
    assert "ngôi sao" in i18n.VI_SHAPES["star"] and "trái tim" in i18n.VI_SHAPES["heart"]
    assert {"dấu cộng", "hình chữ thập"} == set(i18n.VI_SHAPES["cross"])
    # Composed (NFC) text, as a keyboard types it.
    for table in (i18n.VI_COLOURS, i18n.VI_SHAPES, i18n.VI_POSITIONS):
        for words in table.values():
            assert all(unicodedata.is_normalized("NFC", w) for w in words)


def test_vietnamese_and_french_captions_say_what_the_scene_holds():
    rng = np.random.default_rng(0)
    two = synth.SynthObject("star", "white", "large", "top left")
    scene = _scene(RED_CIRCLE, two, background="striped", colour="blue")
    for _ in range(20):
        vi = i18n.describe(scene, rng, "vi")
        assert "một hình tròn nhỏ" in vi and "đỏ" in vi and "trắng" in vi
        assert "ngôi sao lớn" in vi or "ngôi sao to" in vi
        assert "sọc" in vi and ("xanh dương" in vi or "xanh lam" in vi)
        assert " và " in vi
        fr = i18n.describe(scene, rng, "fr")
        assert "un petit cercle rouge" in fr and "une grande étoile blanche" in fr
        assert "bleu" in fr and " et " in fr
    pair = _scene(RED_CIRCLE, replace(RED_CIRCLE, position="left"))
    assert i18n.describe(pair, rng, "fr", background=False).endswith("deux petits cercles rouges")
    assert "hai hình tròn nhỏ" in i18n.describe(pair, rng, "vi", background=False)
    hearts = _scene(*(synth.SynthObject("heart", "orange", "large", p) for p in ("top", "left")))
    assert "deux grands cœurs orange" in i18n.describe(hearts, rng, "fr")


def test_captions_are_a_pure_function_of_the_generator():
    scene = synth.make_scene(synth.scene_rng(3, 4))
    for lang in i18n.LANGUAGES:
        a = i18n.captions(scene, np.random.default_rng(9), lang, 3)
        b = i18n.captions(scene, np.random.default_rng(9), lang, 3)
        assert a == b and len(set(a)) == 3
    with pytest.raises(ValueError, match="unknown language"):
        i18n.describe(scene, np.random.default_rng(0), "de")


# ---- the tokenizer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    settings = MultilingualSettings()
    scenes = [synth.make_scene(synth.scene_rng(0, i, synth.STREAM_TRAIN)) for i in range(300)]
    return learn_tokenizer(tokenizer_corpus(scenes, settings), 1000, settings.context_length)


def test_normalisation_lowercases_and_keeps_diacritics(tokenizer):
    assert tokenizer.normalizer.normalize_str("MỘT Hình Tròn Màu ĐỎ") == "một hình tròn màu đỏ"
    text = "ảnh một hình tròn màu đỏ"
    # Decomposed input (as some systems send it) gives the same pieces as composed.
    assert tokenizer.encode(unicodedata.normalize("NFD", text)).ids == tokenizer.encode(text).ids
    assert tokenizer.encode(text.upper()).ids == tokenizer.encode(text).ids
    pieces = tokenizer.encode(text).tokens
    assert pieces[0] == "<s>" and pieces[-1] == "</s>"
    assert "<unk>" not in pieces
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_every_caption_fits_the_context_unknown_free(tokenizer):
    rng = np.random.default_rng(2)
    unk = tokenizer.token_to_id("<unk>")
    for i in range(100):
        scene = synth.make_scene(synth.scene_rng(7, i))
        for lang in i18n.LANGUAGES:
            for text in i18n.captions(scene, rng, lang, 2):
                ids = tokenizer.encode(text).ids
                assert ids[-1] == EOS_ID and unk not in ids, text
                assert len(ids) < MultilingualSettings().context_length


def test_padded_rows_and_masks(tokenizer):
    ids, mask = encode_padded(tokenizer, ["a red circle", "ảnh một hình tròn màu đỏ"], 20)
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == (2, 20)
    for row in range(2):
        n = int(mask[row].sum())
        assert ids[row, n - 1] == EOS_ID and (ids[row, n:] == PAD_ID).all()
        assert (mask[row, :n] == 1).all()


# ---- the text tower --------------------------------------------------------------------------


def test_the_tower_reads_the_last_marked_position_and_ignores_padding():
    torch.manual_seed(0)
    tower = MaskedTextTower(TextTowerConfig(60, 16, 32, 2, 2, 24)).eval()
    ids = torch.randint(4, 60, (3, 16))
    mask = torch.zeros_like(ids)
    for row, n in enumerate((3, 9, 16)):
        mask[row, :n] = 1
    with torch.no_grad():
        full = tower(ids, mask)
        alone = torch.cat(
            [tower(ids[r : r + 1, :n], mask[r : r + 1, :n]) for r, n in enumerate((3, 9, 16))]
        )
        other_padding = tower(torch.where(mask.bool(), ids, 5), mask)
        trimmed = encode_trimmed(tower, ids, mask)
    assert torch.allclose(full, alone, atol=1e-5)
    assert torch.allclose(full, other_padding, atol=1e-5)
    assert torch.allclose(full, trimmed, atol=1e-5)


def test_training_captions_mix_full_and_partial_ones():
    scene = synth.make_scene(synth.scene_rng(1, 1, synth.STREAM_TRAIN))
    rng = np.random.default_rng(0)
    texts = [training_caption(scene, rng, "vi", 0.4) for _ in range(200)]
    full = [t for t in texts if "nền" in t]
    assert 0.4 < len(full) / len(texts) < 0.9
    assert len(set(texts)) > 30


# ---- a short run -----------------------------------------------------------------------------


def test_a_short_run_trains_and_writes_a_format_2_package(tmp_path):
    settings = MultilingualSettings(
        epochs=4,
        train_images=256,
        batch_size=64,
        vocab_corpus_images=100,
        layers=1,
        lr=3e-3,
    )
    logs = []
    folder = train_and_export(settings, tmp_path / "pkg", log=logs.append)
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in logs if "epoch" in line]
    assert len(losses) == 4 and losses[-1] < losses[0]
    manifest = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    assert manifest["format"] == 2 and manifest["name"] == "tiny-multilingual"
    # The runtime's own tokenizer object (photofind.clip.package), and the runtime reads it.
    assert manifest["tokenizer"] == {
        "kind": "hf",
        "file": "tokenizer",
        "context_length": settings.context_length,
        "pad": PAD_ID,
        "inputs": {"input_ids": "ids", "attention_mask": "mask"},
    }
    assert manifest["files"]["tokenizer"]["path"] == "tokenizer.json"
    model = load_model(folder, provider="cpu")
    ids, mask = model.tokenizer.batch(["ảnh một hình tròn màu đỏ"])
    assert ids.shape == mask.shape == (1, settings.context_length)
    assert ids[0, int(mask.sum()) :].tolist() == [PAD_ID] * (
        settings.context_length - int(mask.sum())
    )
    assert model.encode_texts(["ảnh một hình tròn màu đỏ"]).shape == (1, manifest["embed_dim"])
    for entry in manifest["files"].values():
        assert sha256_file(folder / entry["path"]) == entry["sha256"]
    # The locked image tower, byte for byte.
    tiny = json.loads((IMAGE_TOWER / "model.json").read_text(encoding="utf-8"))
    assert manifest["files"]["visual"]["sha256"] == tiny["files"]["visual"]["sha256"]
    assert manifest["extra"]["languages"] == ["en", "vi", "fr"]
    assert "wrote" in logs[-1] and "min cosine" in logs[-1]
