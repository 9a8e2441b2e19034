"""Train the tiny CLIP on generated shapes and write it as a photofind model package.

``python -m export train-tiny --out DIR [--seed 0] [--epochs N]``

The recipe is the CLIP paper's, scaled down to minutes on two CPU cores:

- the model is :class:`export.model.CLIP` (the architecture that real checkpoints load
  into), with a small :data:`TINY_CONFIG`;
- the data are scenes from :mod:`export.synth` in their own stream (``STREAM_TRAIN``), so
  no ``python -m export synth --seed S`` set can overlap the training images. Each image
  goes through the runtime's own decode and preprocessing (JPEG/PNG bytes, then
  :func:`photofind.clip.preprocess.load_and_preprocess`), so training sees exactly what
  inference will;
- the vocabulary is learned from the caption corpus with :mod:`export.bpe_learn`;
- the loss is the symmetric cross-entropy over the N×N cosine-similarity matrix scaled by a
  learned temperature (stored as a log, clamped so the scale stays ≤ 100);
- AdamW, linear warm-up then cosine decay; one fixed data order per (seed, epoch).

Everything random is drawn from ``--seed``, so a rerun gives the same model (same machine,
same torch build; float summation order may differ across CPUs).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from export import synth
from export.bpe_learn import learn_bpe, vocab_size_for, write_vocab
from export.model import CLIP, CLIPConfig
from export.onnx_export import check_package, export_package
from photofind.clip.package import CLIP_MEAN, CLIP_STD
from photofind.clip.preprocess import load_and_preprocess
from photofind.clip.tokenizer import ClipTokenizer

MODEL_NAME = "tiny-synthetic"
VOCAB_FILE = "bpe_tiny_synthetic.txt.gz"
DESCRIPTION = (
    "A tiny CLIP ({params:.1f} M parameters, {size}×{size} pixels) trained by photofind's own "
    "export/train_tiny.py on generated pictures of simple shapes. It knows only generated "
    "shapes: coloured circles, squares, triangles, stars, hearts and crosses, their sizes and "
    "positions, on plain, gradient, striped, checkered or noisy backgrounds. It is for tests "
    "and the offline demo, not for real photos."
)
SOURCE = "trained from scratch by `python -m export train-tiny` on images from export/synth.py"
LICENSE = "MIT (weights trained by the photofind project; no third-party data)"

# The patch grid is 3×3, the grid export.synth places objects on (inside the central square
# that the runtime's centre crop keeps): each object lies within one 32-pixel patch, so the
# patch embedding sees a whole shape at once. A ViT trained from scratch for minutes does
# not learn to assemble a shape from pieces cut by patch borders (a 64/16 grid managed
# about 40 % shape accuracy in the same budget).
# vocab_size is a placeholder: the learned vocabulary decides it.
TINY_CONFIG = CLIPConfig(
    embed_dim=128,
    image_size=96,
    patch_size=32,
    vision_width=128,
    vision_layers=4,
    vision_heads=2,
    context_length=32,
    vocab_size=514,
    text_width=128,
    text_layers=3,
    text_heads=2,
    activation="gelu",
)
LOGIT_SCALE_MAX = math.log(100.0)


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    epochs: int = 100
    train_images: int = 16000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    # Share of training captions with attributes left out ("a photo of a red circle"):
    # teaches the text tower that short queries mean the same object.
    partial_caption_rate: float = 0.4
    num_merges: int = 400
    vocab_corpus_images: int = 3000
    threads: int = 2
    # bfloat16 autocast for the towers' matrix products (weights, optimiser state, the
    # normalisation and the loss stay float32): twice the steps per second on a CPU with
    # AVX512-BF16, so twice the epochs in the same minutes; "fp32" for CPUs without it.
    precision: str = "bf16"
    image_size: int = TINY_CONFIG.image_size
    patch_size: int = TINY_CONFIG.patch_size


# ---------------------------------------------------------------------------------------------
# The objective


def contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy: row i of the [N, N] logits should pick column i
    (image→text) and column i should pick row i (text→image); the mean of the two."""
    targets = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    return (
        F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets)
    ) / 2


def clip_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """exp(logit_scale) × cosine similarities, [images, texts]."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    return logit_scale.clamp(max=LOGIT_SCALE_MAX).exp() * image_features @ text_features.T


def encode_text_trimmed(model: CLIP, input_ids: torch.Tensor, groups: int = 3) -> torch.Tensor:
    """``model.encode_text``, with the rows run in ``groups`` groups of similar caption
    length, each cut after its longest caption's end-of-text token.

    The causal mask means no position sees those after it, so dropping padding changes
    nothing but the time. Cut at the batch's longest caption, 42% of the text tower's
    positions were still padding (captions are 9 to 30 tokens); three groups make a training
    step about 10% faster (120 vs 132 ms on 2 cores).
    """
    eot = input_ids.argmax(dim=-1)
    order = torch.argsort(eot, stable=True)
    features = torch.cat(
        [
            model.encode_text(input_ids[rows, : int(eot[rows].max()) + 1])
            for rows in order.tensor_split(min(groups, len(order)))
        ]
    )
    return features[order.argsort()]


# ---------------------------------------------------------------------------------------------
# Data


def preprocess_scene(scene: synth.Scene, image_size: int, path: Path) -> np.ndarray:
    """uint8 [3, S, S]: the scene saved to ``path`` in its format, decoded and preprocessed
    by the runtime's own code (a file, not bytes, so the JPEG fast path is the same one);
    kept as bytes so that 16,000 images take 200 MB."""
    path = path.with_suffix("." + scene.format)
    path.write_bytes(synth.encode(synth.render(scene), scene.format))
    tensor = load_and_preprocess(path, image_size, CLIP_MEAN, CLIP_STD)
    # Undo the normalisation exactly: the runtime's values are k/255 before it, k an integer.
    mean = np.asarray(CLIP_MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(CLIP_STD, np.float32).reshape(3, 1, 1)
    return np.rint((tensor * std + mean) * 255).clip(0, 255).astype(np.uint8)


def normalise_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> the float32 tensor load_and_preprocess would have given."""
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).reshape(1, 3, 1, 1)
    # In place on the one float copy: the whole training set is 1.8 GB of it.
    return pixels.to(torch.float32).div_(255).sub_(mean).div_(std)


def contrast_twin(scene: synth.Scene, rng: np.random.Generator) -> synth.Scene:
    """A scene that differs from ``scene`` only in what is hardest to learn.

    Colour, background and position tell most generated pictures apart, so a batch rarely
    forces the model to look at shapes, and "a photo of a red triangle" would find any red
    thing. A twin in the same batch that differs only in its shapes (or, with two or more
    objects of different colours, only in which shape has which colour) can be told apart
    from its caption by nothing else.
    """
    objects = list(scene.objects)
    colours = [obj.colour for obj in objects]
    if len(set(colours)) > 1 and rng.random() < 0.4:
        i, j = rng.choice(len(objects), 2, replace=False)
        while objects[i].colour == objects[j].colour:
            i, j = rng.choice(len(objects), 2, replace=False)
        a, b = objects[i], objects[j]
        objects[i] = replace(a, colour=b.colour)
        objects[j] = replace(b, colour=a.colour)
    else:
        # Every object gets another shape; identical objects stay identical.
        new_shape = {}
        for obj in objects:
            if obj.shape not in new_shape:
                others = [shape for shape in synth.SHAPES if shape != obj.shape]
                new_shape[obj.shape] = str(rng.choice(others))
        objects = [replace(obj, shape=new_shape[obj.shape]) for obj in objects]
    return replace(scene, objects=tuple(objects), render_seed=int(rng.integers(2**31)))


def training_scenes(seed: int, count: int) -> list[synth.Scene]:
    """``count`` scenes in twin pairs (2k, 2k + 1); see :func:`contrast_twin`."""
    scenes = []
    for i in range((count + 1) // 2):
        rng = synth.scene_rng(seed, i, synth.STREAM_TRAIN)
        scene = synth.make_scene(rng)
        scenes.extend((scene, contrast_twin(scene, rng)))
    return scenes[:count]


def epoch_order(count: int, rng: np.random.Generator) -> np.ndarray:
    """A shuffled order that keeps each twin pair together (so they share a batch)."""
    pairs = rng.permutation((count + 1) // 2)
    order = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
    return order[order < count]


def render_training_set(
    scenes: list[synth.Scene], image_size: int, workers: int = 2, log=print
) -> torch.Tensor:
    """All scenes as uint8 [N, 3, S, S]; each scene is independent of the others, so the
    worker threads (Pillow and numpy release the GIL while they work) change nothing."""
    pixels = np.empty((len(scenes), 3, image_size, image_size), dtype=np.uint8)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="photofind-synth-") as scratch:

        def work(index: int) -> None:
            path = Path(scratch) / f"scene{index}"
            pixels[index] = preprocess_scene(scenes[index], image_size, path)
            path.with_suffix("." + scenes[index].format).unlink()

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for done, _ in enumerate(pool.map(work, range(len(scenes))), start=1):
                if done % 4000 == 0:
                    elapsed = time.monotonic() - start
                    log(f"  rendered {done}/{len(scenes)} images ({elapsed:.0f} s)")
    return torch.from_numpy(pixels)


def training_caption(scene: synth.Scene, rng: np.random.Generator, partial_rate: float) -> str:
    """A full caption, or (at ``partial_rate``) one with some attributes left out."""
    if rng.random() >= partial_rate:
        return synth.describe(scene, rng)
    if rng.random() < 0.5:
        # One object alone, often bare: the "a photo of a red circle" query.
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        return synth.describe(
            scene,
            rng,
            only=obj,
            size=rng.random() < 0.5,
            position=rng.random() < 0.3,
            background=rng.random() < 0.3,
        )
    return synth.describe(
        scene,
        rng,
        size=rng.random() < 0.5,
        position=rng.random() < 0.5,
        background=rng.random() < 0.5,
    )


def vocabulary_corpus(scenes: list[synth.Scene], seed: int, partial_rate: float) -> list[str]:
    rng = np.random.default_rng([seed, 7919])
    corpus = []
    for scene in scenes:
        corpus.extend(synth.captions(scene, rng, 3))
        corpus.append(training_caption(scene, rng, partial_rate))
    # Words a user may type that the generator says rarely or never.
    corpus.extend(
        f"a photo of a {colour} {shape}" for colour in synth.COLOURS for shape in synth.SHAPES
    )
    return corpus


# ---------------------------------------------------------------------------------------------
# Optimisation


def _parameter_groups(model: CLIP, weight_decay: float) -> list[dict]:
    """Decay matrices only: gains, biases, embeddings and the temperature are left alone
    (as in OpenCLIP)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.ndim < 2 or "embedding" in name or "logit_scale" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class TrainResult:
    model: CLIP
    config: CLIPConfig
    vocab_path: Path
    epoch_losses: list[float]
    seconds: float
    render_seconds: float


def train(settings: TrainSettings, work_dir: Path, log=print) -> TrainResult:
    """Train a tiny CLIP; the learned vocabulary is written into ``work_dir``."""
    torch.manual_seed(settings.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _train(settings, Path(work_dir), log)
    finally:
        torch.set_num_threads(previous_threads)


def _train(settings: TrainSettings, work_dir: Path, log) -> TrainResult:
    start = time.monotonic()
    scenes = training_scenes(settings.seed, settings.train_images)

    corpus = vocabulary_corpus(
        scenes[: settings.vocab_corpus_images], settings.seed, settings.partial_caption_rate
    )
    merges = learn_bpe(corpus, settings.num_merges)
    vocab_path = write_vocab(merges, work_dir / VOCAB_FILE)
    config = replace(
        TINY_CONFIG,
        vocab_size=vocab_size_for(merges),
        image_size=settings.image_size,
        patch_size=settings.patch_size,
    )
    tokenizer = ClipTokenizer(vocab_path, config.context_length, config.vocab_size)
    log(f"vocabulary: {len(merges)} merges learned from {len(corpus)} captions")

    log(f"rendering {len(scenes)} training images at {config.image_size} px ...")
    # Normalised once (1.8 GB at 16,000 images) rather than per batch: half a second an
    # epoch, and the same numbers.
    pixels = normalise_pixels(render_training_set(scenes, config.image_size, settings.threads, log))
    render_seconds = time.monotonic() - start
    log(f"data ready in {render_seconds:.0f} s")

    torch.manual_seed(settings.seed)
    model = CLIP(config).train()
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params / 1e6:.2f} M parameters, config {config.to_dict()}")
    optimiser = torch.optim.AdamW(
        _parameter_groups(model, settings.weight_decay),
        lr=settings.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        # On the CPU torch picks the per-tensor Python loop unless told; the foreach
        # kernels do the same arithmetic in a few calls.
        foreach=True,
    )
    batch = settings.batch_size
    steps_per_epoch = len(scenes) // batch  # the ragged tail is dropped, as in CLIP
    total_steps = steps_per_epoch * settings.epochs
    warmup = max(1, int(total_steps * settings.warmup_fraction))

    def epoch_data(epoch: int) -> tuple[np.ndarray, torch.Tensor]:
        """The epoch's order and caption ids; each epoch has its own seed, so the next
        one is prepared on a second thread while this one trains (0.6 s an epoch)."""
        rng = np.random.default_rng([settings.seed, 104729, epoch])
        order = epoch_order(len(scenes), rng)
        texts = [training_caption(scenes[i], rng, settings.partial_caption_rate) for i in order]
        return order, torch.from_numpy(tokenizer(texts))

    epoch_losses: list[float] = []
    step = 0
    with ThreadPoolExecutor(1, thread_name_prefix="epoch-data") as prepare:
        upcoming = prepare.submit(epoch_data, 0)
        for epoch in range(settings.epochs):
            order, ids_all = upcoming.result()
            if epoch + 1 < settings.epochs:
                upcoming = prepare.submit(epoch_data, epoch + 1)
            losses = []
            epoch_start = time.monotonic()
            for b in range(steps_per_epoch):
                for group in optimiser.param_groups:
                    group["lr"] = learning_rate(step, total_steps, settings.lr, warmup)
                rows = torch.from_numpy(order[b * batch : (b + 1) * batch])
                images = pixels[rows]
                ids = ids_all[b * batch : (b + 1) * batch]
                with torch.autocast("cpu", torch.bfloat16, enabled=settings.precision == "bf16"):
                    image_features = model.encode_image(images)
                    text_features = encode_text_trimmed(model, ids)
                logits = clip_logits(
                    image_features.float(), text_features.float(), model.logit_scale
                )
                loss = contrastive_loss(logits)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
                losses.append(loss.item())
                step += 1
            epoch_losses.append(float(np.mean(losses)))
            log(
                f"epoch {epoch + 1}/{settings.epochs}: loss {epoch_losses[-1]:.4f}, "
                f"temperature scale {model.logit_scale.exp().item():.1f}, "
                f"{time.monotonic() - epoch_start:.0f} s"
            )
    model.eval()
    return TrainResult(
        model, config, vocab_path, epoch_losses, time.monotonic() - start, render_seconds
    )


def train_and_export(settings: TrainSettings, out: Path, log=print) -> Path:
    with tempfile.TemporaryDirectory(prefix="photofind-tiny-") as tmp:
        result = train(settings, Path(tmp), log)
        folder = export_package(
            result.model,
            result.config,
            out,
            name=MODEL_NAME,
            vocab_path=result.vocab_path,
            description=DESCRIPTION.format(
                params=sum(p.numel() for p in result.model.parameters()) / 1e6,
                size=result.config.image_size,
            ),
            source=SOURCE,
            license=LICENSE,
            arch="tiny-synthetic",
            extra={
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
                }
            },
        )
    check = check_package(result.model, folder)
    log(
        f"wrote {folder} in {result.seconds:.0f} s of training "
        f"(final loss {result.epoch_losses[-1]:.4f}); ONNX vs torch min cosine "
        f"{check['min_cosine']:.6f}"
    )
    return folder


def add_args(parser: argparse.ArgumentParser) -> None:
    defaults = TrainSettings()
    parser.add_argument("--out", required=True, type=Path, help="package folder to write")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed (0)")
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs, help=f"epochs ({defaults.epochs})"
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=defaults.train_images,
        help=f"generated training images ({defaults.train_images})",
    )
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads (2)")
    parser.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default=defaults.precision,
        help="matrix products in bfloat16 autocast (bf16, the shipped model's recipe) or float32 "
        "(fp32: for CPUs without bfloat16 instructions, where bf16 is slow)",
    )
    parser.add_argument(
        "--image-size", type=int, default=defaults.image_size, help="input pixels (96)"
    )
    parser.add_argument(
        "--patch-size", type=int, default=defaults.patch_size, help="ViT patch size (32)"
    )


def run(args) -> int:
    settings = TrainSettings(
        seed=args.seed,
        epochs=args.epochs,
        train_images=args.train_images,
        threads=args.threads,
        precision=args.precision,
        image_size=args.image_size,
        patch_size=args.patch_size,
    )
    train_and_export(settings, args.out)
    return 0
