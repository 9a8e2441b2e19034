"""export.train_tiny: the contrastive loss, the learned vocabulary, the data path, a short run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from export import synth
from export.bpe_learn import learn_bpe, vocab_size_for, write_vocab
from export.model import CLIP
from export.train_tiny import (
    LOGIT_SCALE_MAX,
    TINY_CONFIG,
    TrainSettings,
    clip_logits,
    contrastive_loss,
    encode_text_trimmed,
    epoch_order,
    learning_rate,
    normalise_pixels,
    preprocess_scene,
    train_and_export,
    training_caption,
    training_scenes,
    vocabulary_corpus,
)
from photofind.clip.package import CLIP_MEAN, CLIP_STD
from photofind.clip.preprocess import load_and_preprocess
from photofind.clip.tokenizer import ClipTokenizer

# ---------------------------------------------------------------------------------------------
# The objective


def test_contrastive_loss_on_a_hand_computed_3x3_case():
    ln = math.log
    logits = torch.tensor(
        [
            [ln(4), 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, ln(2), ln(2)],
        ],
        dtype=torch.float64,
    )
    # Rows (image->text), target on the diagonal: p = 4/6, 1/3, 2/5.
    rows = (ln(6 / 4) + ln(3) + ln(5 / 2)) / 3
    # Columns (text->image): p = 4/6, 1/4, 2/4.
    columns = (ln(6 / 4) + ln(4) + ln(2)) / 3
    expected = (rows + columns) / 2
    assert expected == pytest.approx(math.log(135) / 6)
    assert contrastive_loss(logits).item() == pytest.approx(expected, rel=1e-12)


def test_perfectly_separated_logits_give_almost_zero_loss():
    logits = torch.eye(4) * 100
    assert contrastive_loss(logits).item() < 1e-30 + 1e-6


def test_clip_logits_are_scaled_cosines_with_the_scale_clamped_at_100():
    image = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    cosines = torch.tensor([[1 / math.sqrt(2), 0.0], [1 / math.sqrt(2), 1.0]])
    got = clip_logits(image, text, torch.tensor(math.log(10.0)))
    assert torch.allclose(got, 10 * cosines, atol=1e-6)
    clamped = clip_logits(image, text, torch.tensor(math.log(1000.0)))
    assert torch.allclose(clamped, 100 * cosines, atol=1e-4)
    assert math.exp(LOGIT_SCALE_MAX) == pytest.approx(100)


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate(step, 100, 1e-3, 10) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:9], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[55] == pytest.approx(0.5e-3)
    assert learning_rate(100, 100, 1e-3, 10) == pytest.approx(0.0)


def test_trimmed_text_encoding_equals_the_full_one():
    config = replace(TINY_CONFIG, vocab_size=600, text_layers=2, vision_layers=1)
    torch.manual_seed(0)
    model = CLIP(config).eval()
    ids = torch.zeros(3, config.context_length, dtype=torch.int64)
    for row, length in enumerate((3, 9, 5)):
        ids[row, 0] = 598
        ids[row, 1 : length + 1] = torch.randint(1, 500, (length,))
        ids[row, length + 1] = 599
    with torch.no_grad():
        full = model.encode_text(ids)
        trimmed = encode_text_trimmed(model, ids)
    assert torch.allclose(full, trimmed, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The learned vocabulary and the tokenizer


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    scenes = training_scenes(0, 300)
    corpus = vocabulary_corpus(scenes, 0, 0.25)
    merges = learn_bpe(corpus, 400)
    path = write_vocab(merges, tmp_path_factory.mktemp("vocab") / "bpe.txt.gz")
    tokenizer = ClipTokenizer(path, TINY_CONFIG.context_length, vocab_size_for(merges))
    return tokenizer, corpus, scenes


def test_every_attribute_word_is_one_token(learned):
    tokenizer, _, _ = learned
    words = [
        *synth.COLOURS,
        "grey",
        *synth.SHAPES,
        *synth.PLURALS.values(),
        *synth.SIZES,
        "big",
        "top",
        "bottom",
        "left",
        "right",
        "centre",
        "middle",
        "background",
        *synth.BACKGROUND_KINDS,
        "photo",
        "two",
        "three",
    ]
    for word in words:
        assert len(tokenizer.encode(word)) == 1, word


def test_tokenizer_rows_on_the_learned_vocabulary(learned):
    tokenizer, corpus, _ = learned
    ids = tokenizer(["a photo of a red circle", "a small blue star at the top left"])
    assert ids.dtype == np.int64 and ids.shape == (2, TINY_CONFIG.context_length)
    assert ids[0, 0] == tokenizer.sot_id == tokenizer.vocab_size - 2
    # SOT, six words, EOT: each word one token.
    assert ids[0, 7] == tokenizer.eot_id == tokenizer.vocab_size - 1
    assert (ids[0, 8:] == 0).all()
    assert int(ids.max()) < tokenizer.vocab_size
    assert tokenizer.decode(ids[1, 1:9]) == "a small blue star at the top left"
    for text in corpus[:200]:
        assert tokenizer.decode(tokenizer.encode(text)) == text.replace(",", " ,")


def test_longest_captions_fit_the_context(learned):
    tokenizer, _, scenes = learned
    rng = np.random.default_rng(1)
    longest = 0
    for scene in scenes:
        for text in synth.captions(scene, rng, 3) + [training_caption(scene, rng, 0.5)]:
            longest = max(longest, len(tokenizer.encode(text)))
    # SOT + tokens + EOT within the context: no caption is ever cut.
    assert longest + 2 <= TINY_CONFIG.context_length


# ---------------------------------------------------------------------------------------------
# The data path matches the runtime


def test_training_pixels_are_the_runtime_preprocessing(tmp_path):
    scenes = training_scenes(3, 6)
    assert {scene.format for scene in scenes} == {"jpg", "png"}
    for i, scene in enumerate(scenes):
        stored = preprocess_scene(scene, 64, tmp_path / f"train{i}")
        file = tmp_path / f"check{i}.{scene.format}"
        file.write_bytes(synth.encode(synth.render(scene), scene.format))
        runtime = load_and_preprocess(file, 64, CLIP_MEAN, CLIP_STD)
        trained_on = normalise_pixels(torch.from_numpy(stored[None]))[0].numpy()
        assert np.abs(trained_on - runtime).max() < 1e-5


def test_twins_differ_only_in_shapes_or_in_colour_binding():
    scenes = training_scenes(4, 200)
    shape_twins = binding_twins = 0
    for scene, twin in zip(scenes[::2], scenes[1::2]):
        assert (twin.background, twin.background_colour) == (
            scene.background,
            scene.background_colour,
        )
        assert [o.position for o in twin.objects] == [o.position for o in scene.objects]
        assert [o.size for o in twin.objects] == [o.size for o in scene.objects]
        shapes_changed = [a.shape != b.shape for a, b in zip(scene.objects, twin.objects)]
        if all(shapes_changed):
            assert [o.colour for o in twin.objects] == [o.colour for o in scene.objects]
            shape_twins += 1
        else:
            assert not any(shapes_changed)
            assert sorted(o.colour for o in twin.objects) == sorted(o.colour for o in scene.objects)
            assert [o.colour for o in twin.objects] != [o.colour for o in scene.objects]
            binding_twins += 1
    assert shape_twins > 50 and binding_twins > 10


def test_epoch_order_is_a_permutation_that_keeps_twins_together():
    order = epoch_order(11, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(11))
    pairs = order[: len(order) - 1].tolist()
    # Each even index is followed by its twin (the unpaired last scene may sit anywhere).
    for position, index in enumerate(pairs):
        if index % 2 == 0 and index != 10:
            assert order[position + 1] == index + 1


# ---------------------------------------------------------------------------------------------
# A short run learns (slow)


@pytest.mark.slow
def test_a_short_training_run_learns_and_exports(tmp_path):
    from photofind.clip import load_model
    from photofind.evaluate import evaluate

    settings = TrainSettings(seed=0, epochs=5, train_images=2560, batch_size=128)
    logs = []
    folder = train_and_export(settings, tmp_path / "pkg", log=logs.append)
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in logs if "epoch" in line]
    print(logs)
    assert len(losses) == 5
    # From about ln(128) (chance) clearly downwards.
    assert losses[-1] < min(losses[0], math.log(128)) - 0.3

    model = load_model(folder)
    assert model.info.name == "tiny-synthetic"
    assert "generated shapes" in model.info.description
    synth.write_dataset(tmp_path / "eval", count=60, seed=12345)
    figures = evaluate(model, tmp_path / "eval", tmp_path / "eval" / "captions.json")
    print(figures)
    # Chance for R@10 over 60 images is 1/6; this short run gets about 0.95.
    assert figures["text_to_image"]["R@10"] > 0.6
