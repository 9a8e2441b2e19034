"""Train tiny-multilingual: a text tower for English, Vietnamese and French captions.

``python -m export train-multilingual --out DIR [--seed 0] [--epochs N]``

The recipe is train_tiny's (the symmetric contrastive loss over scaled cosines with a learned,
clamped temperature; AdamW, warm-up then cosine decay; twin scenes that differ only in shape
or colour binding in each batch; training scenes from their own stream), with the image tower
**locked**: tiny-synthetic's ``visual.onnx``, byte for byte, whose image vectors are computed
once with ONNX Runtime on the runtime's own preprocessing. Only the text tower learns, to
place captions of all three languages where that tower puts their pictures. That is LiT
(Zhai et al., 2022, "locked-image tuning") and the way M-CLIP taught XLM-R to speak for
OpenAI's ViT-B/32; it gives:

- the two packages one image graph (the same sha256), the case of a model change that needs
  no re-index (issue 18, part 3);
- a run that fits a shared 2-core machine: no image tower to train (minutes, not a quarter
  of an hour).

The text goes through a Unigram tokenizer learned from the caption corpus by the HF
``tokenizers`` library (NFKC then lowercase, which keeps Vietnamese diacritics; SentencePiece's
Metaspace pre-tokenizer), saved as the package's tokenizer.json, and the tower reads
``input_ids`` and ``attention_mask`` (:mod:`export.text_tower`).
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import UnigramTrainer

from export import ExportError, synth
from export import captions_i18n as i18n
from export.package2 import copy_atomic, hashed_files, hf_tokenizer, write_manifest_v2
from export.text_tower import MaskedTextTower, NormalizedMaskedTextEncoder, TextTowerConfig
from export.train_tiny import (
    LOGIT_SCALE_MAX,
    _parameter_groups,
    clip_logits,
    contrastive_loss,
    epoch_order,
    learning_rate,
    normalise_pixels,
    render_training_set,
    training_scenes,
)
from photofind.clip.package import CLIP_MEAN, CLIP_STD, ModelSpec, read_manifest, sha256_file

MODEL_NAME = "tiny-multilingual"
REPO = Path(__file__).resolve().parent.parent
IMAGE_TOWER = REPO / "resources" / "models" / "tiny-synthetic"
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
# Characters in a piece: a word or two ("hình▁tròn▁", "violettes"), not a whole phrase.
MAX_PIECE = 10
DESCRIPTION = (
    "A tiny multilingual CLIP for English, Vietnamese and French: tiny-synthetic's image "
    "tower (the same visual.onnx) with a text tower of {params:.1f} M parameters trained "
    "against it by photofind's export/train_multilingual.py on captions of generated "
    "shapes in the three languages, read by a Unigram tokenizer. It knows only generated "
    "shapes; it is for tests and the offline demo, not for real photos."
)
SOURCE = (
    "text tower trained from scratch by `python -m export train-multilingual` on captions "
    "from export/captions_i18n.py; image tower: tiny-synthetic's, locked"
)
LICENSE = "MIT (weights trained by the photofind project; no third-party data)"


@dataclass(frozen=True)
class MultilingualSettings:
    seed: int = 0
    # 1,380 steps: about ten minutes on one shared core (the shipped model's run).
    epochs: int = 30
    train_images: int = 12000
    batch_size: int = 256
    # Twice train_tiny's: only the text tower learns, and in a sixth of the steps.
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    partial_caption_rate: float = 0.4
    vocab_size: int = 1000
    vocab_corpus_images: int = 3000
    context_length: int = 32
    width: int = 128
    layers: int = 3
    heads: int = 2
    # One torch thread: on the 2-core machine shared with other work, two threads spent
    # their time waiting on each other (a step took 2 to 7 s, against 0.4 to 0.7 s).
    threads: int = 1
    precision: str = "bf16"
    languages: tuple[str, ...] = i18n.LANGUAGES
    image_tower: Path = IMAGE_TOWER


# ---- the tokenizer ---------------------------------------------------------------------------


def learn_tokenizer(corpus: list[str], vocab_size: int, context_length: int) -> Tokenizer:
    """A Unigram tokenizer learned from ``corpus``: NFKC + lowercase (diacritics kept),
    spaces as "▁" (SentencePiece's Metaspace), ``<s> … </s>`` around each text, truncated
    to ``context_length``.

    Pieces may run across spaces (SentencePiece's ``split_by_whitespace=false``), up to
    MAX_PIECE characters. With the text split at spaces first, ``tokenizers`` seeds its
    pieces from substrings repeated across the *distinct* words, so a word that has only
    one form ("một", "hình", "red", "photo") never became a piece and was spelt letter by
    letter: Vietnamese captions took 67 pieces (median; 102 at the 90th percentile), with
    48 positions cutting most of them. Seeded from whole captions they take 7 (11). And a
    Vietnamese space separates syllables, not words: "hình tròn" (circle) is one word.
    """
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    # Metaspace's decoder turns only a piece's first "▁" back into a space.
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        unk_token="<unk>",
        max_piece_length=MAX_PIECE,
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    for token, want in zip(SPECIALS, range(len(SPECIALS))):
        if tokenizer.token_to_id(token) != want:
            raise ExportError(f"the tokenizer gave {token} id {tokenizer.token_to_id(token)}")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", BOS_ID), ("</s>", EOS_ID)]
    )
    tokenizer.enable_truncation(max_length=context_length)
    return tokenizer


def encode_padded(tokenizer: Tokenizer, texts: list[str], length: int) -> tuple[np.ndarray, ...]:
    """(ids, mask) int64 [N, length], padded with PAD_ID after each text's ``</s>``."""
    ids = np.full((len(texts), length), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(texts), length), dtype=np.int64)
    for row, encoding in enumerate(tokenizer.encode_batch(texts)):
        n = min(len(encoding.ids), length)
        ids[row, :n] = encoding.ids[:n]
        mask[row, :n] = 1
    return ids, mask


# ---- the data --------------------------------------------------------------------------------


def training_caption(scene, rng: np.random.Generator, lang: str, partial_rate: float) -> str:
    """train_tiny's mix, in ``lang``: a full caption, or one with attributes left out."""
    if rng.random() >= partial_rate:
        return i18n.describe(scene, rng, lang)
    if rng.random() < 0.5:
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        return i18n.describe(
            scene,
            rng,
            lang,
            only=obj,
            size=rng.random() < 0.5,
            position=rng.random() < 0.3,
            background=rng.random() < 0.3,
        )
    return i18n.describe(
        scene,
        rng,
        lang,
        size=rng.random() < 0.5,
        position=rng.random() < 0.5,
        background=rng.random() < 0.5,
    )


def tokenizer_corpus(scenes, settings: MultilingualSettings) -> list[str]:
    rng = np.random.default_rng([settings.seed, 7919])
    corpus = []
    for scene in scenes:
        for lang in settings.languages:
            corpus.extend(i18n.captions(scene, rng, lang, 2))
            corpus.append(training_caption(scene, rng, lang, settings.partial_caption_rate))
    # The queries, with every synonym, in each language.
    for lang in settings.languages:
        for colour in synth.COLOURS:
            for shape in synth.SHAPES:
                corpus.extend(i18n.query_variants(colour, shape, lang))
    return corpus


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def image_tower_spec(folder: Path) -> tuple[ModelSpec, Path]:
    """The locked tower's package, its visual graph checked against its sha256."""
    spec = read_manifest(folder)
    visual = Path(folder) / spec.files["visual"].path
    if sha256_file(visual) != spec.files["visual"].sha256:
        raise ExportError(f"{visual} does not match the sha256 its model.json lists")
    if tuple(spec.mean) != CLIP_MEAN or tuple(spec.std) != CLIP_STD:
        raise ExportError(f"{folder}: the training data path assumes CLIP's mean and std")
    return spec, visual


def locked_image_vectors(pixels: torch.Tensor, visual: Path, threads: int) -> torch.Tensor:
    """Unit vectors [N, D] of uint8 pixels through the locked tower's own ONNX graph."""
    session = _onnx_session(visual, threads)
    name = session.get_inputs()[0].name
    chunks = []
    for start in range(0, len(pixels), 256):
        batch = normalise_pixels(pixels[start : start + 256]).numpy()
        chunks.append(session.run(None, {name: batch})[0])
    vectors = np.concatenate(chunks).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return torch.from_numpy(vectors)


def encode_trimmed(tower: MaskedTextTower, ids, mask, groups: int = 3) -> torch.Tensor:
    """``tower(ids, mask)``, run in ``groups`` groups of similar length, each cut after its
    longest row (train_tiny's encode_text_trimmed: the mask is causal, so the cut changes
    nothing but the time; captions run from 3 to 16 pieces)."""
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    features = torch.cat(
        [
            tower(ids[rows, : int(lengths[rows].max())], mask[rows, : int(lengths[rows].max())])
            for rows in order.tensor_split(min(groups, len(order)))
        ]
    )
    return features[order.argsort()]


# ---- training --------------------------------------------------------------------------------


@dataclass
class MultilingualResult:
    tower: MaskedTextTower
    logit_scale: float
    tokenizer: Tokenizer
    image_spec: ModelSpec
    visual: Path
    epoch_losses: list[float]
    seconds: float
    data_seconds: float


def train(settings: MultilingualSettings, log=print) -> MultilingualResult:
    previous = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _train(settings, log)
    finally:
        torch.set_num_threads(previous)


def _train(settings: MultilingualSettings, log) -> MultilingualResult:
    start = time.monotonic()
    image_spec, visual = image_tower_spec(settings.image_tower)
    scenes = training_scenes(settings.seed, settings.train_images)
    corpus = tokenizer_corpus(scenes[: settings.vocab_corpus_images], settings)
    tokenizer = learn_tokenizer(corpus, settings.vocab_size, settings.context_length)
    log(f"tokenizer: Unigram, {tokenizer.get_vocab_size()} pieces from {len(corpus)} captions")

    log(f"rendering {len(scenes)} training images at {image_spec.image_size} px ...")
    pixels = render_training_set(scenes, image_spec.image_size, settings.threads, log)
    image_vectors = locked_image_vectors(pixels, visual, settings.threads)
    del pixels
    data_seconds = time.monotonic() - start
    log(f"locked image vectors ready in {data_seconds:.0f} s")

    torch.manual_seed(settings.seed)
    config = TextTowerConfig(
        vocab_size=tokenizer.get_vocab_size(),
        context_length=settings.context_length,
        width=settings.width,
        layers=settings.layers,
        heads=settings.heads,
        embed_dim=image_spec.embed_dim,
    )
    tower = MaskedTextTower(config).train()
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    groups = _parameter_groups(tower, settings.weight_decay)
    groups[1]["params"].append(logit_scale)
    optimiser = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)
    log(f"text tower: {sum(p.numel() for p in tower.parameters()) / 1e6:.2f} M parameters")

    batch = settings.batch_size
    steps_per_epoch = len(scenes) // batch
    total_steps = steps_per_epoch * settings.epochs
    warmup = max(1, int(total_steps * settings.warmup_fraction))
    languages = list(settings.languages)

    def epoch_data(epoch: int):
        rng = np.random.default_rng([settings.seed, 104729, epoch])
        order = epoch_order(len(scenes), rng)
        langs = rng.integers(len(languages), size=len(order))
        texts = [
            training_caption(scenes[i], rng, languages[lang], settings.partial_caption_rate)
            for i, lang in zip(order, langs)
        ]
        ids, mask = encode_padded(tokenizer, texts, settings.context_length)
        return order, torch.from_numpy(ids), torch.from_numpy(mask)

    epoch_losses: list[float] = []
    step = 0
    with ThreadPoolExecutor(1, thread_name_prefix="epoch-data") as prepare:
        upcoming = prepare.submit(epoch_data, 0)
        for epoch in range(settings.epochs):
            order, ids_all, mask_all = upcoming.result()
            if epoch + 1 < settings.epochs:
                upcoming = prepare.submit(epoch_data, epoch + 1)
            losses = []
            epoch_start = time.monotonic()
            for b in range(steps_per_epoch):
                for group in optimiser.param_groups:
                    group["lr"] = learning_rate(step, total_steps, settings.lr, warmup)
                rows = slice(b * batch, (b + 1) * batch)
                images = image_vectors[torch.from_numpy(order[rows])]
                with torch.autocast("cpu", torch.bfloat16, enabled=settings.precision == "bf16"):
                    text_features = encode_trimmed(tower, ids_all[rows], mask_all[rows])
                loss = contrastive_loss(clip_logits(images, text_features.float(), logit_scale))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    logit_scale.clamp_(0, LOGIT_SCALE_MAX)
                losses.append(loss.item())
                step += 1
            epoch_losses.append(float(np.mean(losses)))
            log(
                f"epoch {epoch + 1}/{settings.epochs}: loss {epoch_losses[-1]:.4f}, "
                f"temperature scale {logit_scale.exp().item():.1f}, "
                f"{time.monotonic() - epoch_start:.0f} s"
            )
    return MultilingualResult(
        tower.eval(),
        min(math.exp(logit_scale.item()), 100.0),
        tokenizer,
        image_spec,
        visual,
        epoch_losses,
        time.monotonic() - start,
        data_seconds,
    )


# ---- the package -----------------------------------------------------------------------------


def example_text_inputs(config: TextTowerConfig, batch: int, generator, max_tokens=None):
    """Rows shaped like the tokenizer's: <s>, random pieces, </s>, then padding."""
    ids = torch.full((batch, config.context_length), PAD_ID, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    longest = config.context_length - 2 if max_tokens is None else max_tokens
    for row in range(batch):
        n = int(torch.randint(0, longest + 1, (1,), generator=generator))
        ids[row, 0] = BOS_ID
        ids[row, 1 : 1 + n] = torch.randint(
            len(SPECIALS), config.vocab_size, (n,), generator=generator
        )
        ids[row, 1 + n] = EOS_ID
        mask[row, : n + 2] = 1
    return ids, mask


def export_multilingual(result: MultilingualResult, settings: MultilingualSettings, out: Path):
    from export.onnx_export import export_graph

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tower, config = result.tower, result.tower.config
    ids, mask = example_text_inputs(config, 2, torch.Generator().manual_seed(0))
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {i: a for a, i in axes.items()} for name in ("input_ids", "attention_mask")}
    export_graph(
        NormalizedMaskedTextEncoder(tower).eval(),
        (ids, mask),
        ("input_ids", "attention_mask"),
        out / "textual.onnx",
        17,
        dynamic,
    )
    copy_atomic(result.visual, out / "visual.onnx")
    result.tokenizer.save(str(out / "tokenizer.json"))
    files = hashed_files(
        out, {"visual": "visual.onnx", "textual": "textual.onnx", "tokenizer": "tokenizer.json"}
    )
    image = result.image_spec
    params = sum(p.numel() for p in tower.parameters())
    spec = ModelSpec(
        name=MODEL_NAME,
        embed_dim=image.embed_dim,
        image_size=image.image_size,
        context_length=config.context_length,
        vocab_size=config.vocab_size,
        files=files,
        mean=image.mean,
        std=image.std,
        resize=image.resize,
        interpolation=image.interpolation,
        arch="tiny-multilingual",
        description=DESCRIPTION.format(params=params / 1e6),
        source=SOURCE,
        license=LICENSE,
        logit_scale=result.logit_scale,
        extra={
            "normalized": True,
            "outputs": "embeddings: L2-normalised float32 [N, embed_dim]",
            "languages": list(settings.languages),
            "text_config": config.to_dict(),
            "image_tower": {"from": image.name, "sha256": image.files["visual"].sha256},
            "opset": 17,
            "textual_dynamic_length": True,
            "textual_input_type": "int64",
            "exporter": f"torch {torch.__version__} TorchScript-based ONNX exporter",
            "training": {
                "seed": settings.seed,
                "epochs": settings.epochs,
                "train_images": settings.train_images,
                "batch_size": settings.batch_size,
                "lr": settings.lr,
                "final_loss": round(result.epoch_losses[-1], 4),
                "epoch_losses": [round(v, 4) for v in result.epoch_losses],
                "seconds": round(result.seconds, 1),
                "torch_threads": settings.threads,
                "precision": settings.precision,
                "image_tower": "locked (LiT)",
            },
        },
    )
    # The tokenizer.json's own normalizer lower-cases (NFKC, Lowercase: diacritics kept), and
    # the captions it was trained on keep their punctuation: no canonicalize.
    entry = hf_tokenizer(
        pad_id=PAD_ID,
        context_length=config.context_length,
        inputs=("input_ids", "attention_mask"),
    )
    write_manifest_v2(out, spec, entry)
    return out


def check_text_graph(tower: MaskedTextTower, folder: Path, n: int = 6) -> float:
    """Min cosine between torch and ONNX Runtime over full-length and cut rows."""
    generator = torch.Generator().manual_seed(1)
    session = _onnx_session(Path(folder) / "textual.onnx", 1)
    worst = 1.0
    for max_tokens in (None, 6):
        ids, mask = example_text_inputs(tower.config, n, generator, max_tokens)
        if max_tokens is not None:
            length = int(mask.sum(1).max())
            ids, mask = ids[:, :length], mask[:, :length]
        with torch.no_grad():
            want = NormalizedMaskedTextEncoder(tower).eval()(ids, mask).numpy()
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        worst = min(worst, float((want * got).sum(-1).min()))
    return worst


def train_and_export(settings: MultilingualSettings, out: Path, log=print) -> Path:
    result = train(settings, log)
    folder = export_multilingual(result, settings, out)
    cosine = check_text_graph(result.tower, folder)
    if not cosine >= 0.9999:
        raise ExportError(f"{folder}/textual.onnx differs from torch: min cosine {cosine:.6f}")
    log(
        f"wrote {folder} in {result.seconds:.0f} s (data {result.data_seconds:.0f} s, final "
        f"loss {result.epoch_losses[-1]:.4f}); ONNX vs torch min cosine {cosine:.6f}"
    )
    return folder


def add_args(parser: argparse.ArgumentParser) -> None:
    d = MultilingualSettings()
    parser.add_argument("--out", required=True, type=Path, help="package folder to write")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed ({d.seed})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs ({d.epochs})")
    parser.add_argument(
        "--train-images", type=int, default=d.train_images, help=f"scenes ({d.train_images})"
    )
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    parser.add_argument(
        "--threads", type=int, default=d.threads, help=f"torch threads ({d.threads})"
    )
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=d.precision)
    parser.add_argument(
        "--image-tower",
        type=Path,
        default=d.image_tower,
        help="package whose visual.onnx is locked (resources/models/tiny-synthetic)",
    )


def run(args) -> int:
    settings = MultilingualSettings(
        seed=args.seed,
        epochs=args.epochs,
        train_images=args.train_images,
        lr=args.lr,
        threads=args.threads,
        precision=args.precision,
        image_tower=args.image_tower,
    )
    train_and_export(settings, args.out)
    return 0
