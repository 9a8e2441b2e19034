"""The check of a package's int8 graphs against its fp32 ones (photofind.clip.variants says
how its verdict is used).

On a calibration set of photos and a caption of each (the caller brings it: the app's
layers put generated photos above this runtime; export/quantize.py uses
photofind.synthetic's), it measures the cosine of every int8 vector to its fp32 one, the
agreement of text-to-image rankings, Recall@5 of each variant and the image encoder's
speed-up side by side, decides against :data:`photofind.clip.variants.THRESHOLDS` and
records it all in ``model.json`` (``extra.variants.int8``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from photofind import jsonfile
from photofind.atomic import atomic_write_text
from photofind.clip.model import ClipModel
from photofind.clip.package import read_manifest
from photofind.clip.variants import FP32, INT8, ROLES, THRESHOLDS, graphs_of
from photofind.errors import ModelError

MANIFEST_LIMIT = 1 << 20


def _timed(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def compare(exact: ClipModel, other: ClipModel, images: list, texts: list) -> dict:
    """Fidelity of ``other``'s vectors to ``exact``'s on photos and a caption of each
    (``images[i]`` is what ``texts[i]`` describes): the cosine of each vector to its fp32
    one, text-to-image top-1 and top-10 agreement, and Recall@5 of each."""
    count = len(images)
    if count < 10 or len(texts) != count:
        raise ValueError("the check needs 10 or more photos, each with one caption")
    pixels = np.stack([exact.preprocess(im) for im in images])
    img_a, img_b = exact.encode_pixels(pixels), other.encode_pixels(pixels)
    txt_a, txt_b = exact.encode_texts(texts), other.encode_texts(texts)
    finite = bool(np.isfinite(img_b).all() and np.isfinite(txt_b).all())
    image_cos = np.nan_to_num((img_a * img_b).sum(axis=1), nan=-1.0)
    text_cos = np.nan_to_num((txt_a * txt_b).sum(axis=1), nan=-1.0)
    order_a = np.argsort(-(txt_a @ img_a.T), axis=1)
    order_b = np.argsort(-np.nan_to_num(txt_b @ img_b.T, nan=-1.0), axis=1)
    own = np.arange(count)[:, None]
    top10 = [len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(order_a, order_b, strict=True)]
    return {
        "calibration_photos": count,
        "finite": finite,
        "image_cosine_min": round(float(image_cos.min()), 5),
        "image_cosine_mean": round(float(image_cos.mean()), 5),
        "text_cosine_min": round(float(text_cos.min()), 5),
        "text_cosine_mean": round(float(text_cos.mean()), 5),
        "top1_agreement": round(float((order_a[:, 0] == order_b[:, 0]).mean()), 4),
        "top10_overlap": round(float(np.mean(top10)), 4),
        "recall_at_5_fp32": round(float((order_a[:, :5] == own).any(axis=1).mean()), 4),
        "recall_at_5_other": round(float((order_b[:, :5] == own).any(axis=1).mean()), 4),
    }


def measure_int8(
    folder: Path, images: list, texts: list, *, speed_batch: int = 16, rounds: int = 3
) -> dict:
    """The int8 graphs against the fp32 ones on calibration photos and a caption of each
    (``images[i]`` is what ``texts[i]`` describes; export/quantize.py makes them):
    cosine of each vector to its fp32 one, text-to-image top-1 and top-10 agreement,
    Recall@5 of each variant (a caption's own photo among its 5 nearest), and the image
    encoder's speed-up measured side by side (alternating rounds, the best of each)."""
    folder = Path(folder)
    spec = read_manifest(folder)
    if any(role not in spec.files for role in ROLES[INT8].values()):
        raise ModelError(f"{folder}: model.json lists no visual_int8 and textual_int8 files")
    exact = ClipModel(folder, spec, provider="cpu", variant=FP32)
    fast = ClipModel(folder, spec, provider="cpu", variant=INT8)
    figures = compare(exact, fast, images, texts)
    figures["recall_at_5_int8"] = figures.pop("recall_at_5_other")
    batch = np.stack([exact.preprocess(im) for im in images[:speed_batch]])
    t_fp = t_q = float("inf")
    exact.encode_pixels(batch), fast.encode_pixels(batch)  # warm-up
    for _ in range(rounds):  # alternating, so both see the same machine load
        t_fp = min(t_fp, _timed(exact.encode_pixels, batch))
        t_q = min(t_q, _timed(fast.encode_pixels, batch))
    return {
        **figures,
        "image_speedup": round(t_fp / t_q, 3),
        "image_fp32_img_per_s": round(len(batch) / t_fp, 2),
        "image_int8_img_per_s": round(len(batch) / t_q, 2),
    }


def fidelity_reasons(figures: dict, thresholds: dict, variant: str) -> list[str]:
    """Why ``variant``'s vectors are not faithful enough to fp32's (empty: they are), from
    :func:`compare`'s figures (its Recall@5 under ``recall_at_5_<variant>``)."""
    why = []
    if not figures.get("finite", True):
        why.append(f"the {variant} graphs gave infinite or NaN values")
    for key, what in (("image_cosine_min", "image"), ("text_cosine_min", "text")):
        if figures[key] < thresholds[key]:
            why.append(f"{what} cosine {figures[key]} < {thresholds[key]}")
    if figures["top10_overlap"] < thresholds["top10_overlap_min"]:
        why.append(
            f"text-to-image top-10 overlap {figures['top10_overlap']} < "
            f"{thresholds['top10_overlap_min']}"
        )
    drop = figures["recall_at_5_fp32"] - figures[f"recall_at_5_{variant}"]
    if drop > thresholds["recall_at_5_drop_max"]:
        why.append(f"Recall@5 drops by {drop:.3f} > {thresholds['recall_at_5_drop_max']}")
    return why


def verdict(figures: dict, thresholds: dict = THRESHOLDS) -> list[str]:
    """Why the int8 graphs may not be used (empty: they may)."""
    why = fidelity_reasons(figures, thresholds, INT8)
    if figures["image_speedup"] < thresholds["speedup_min"]:
        why.append(
            f"int8 image encoder only {figures['image_speedup']}x as fast as fp32 here "
            f"(< {thresholds['speedup_min']}x)"
        )
    return why


def check_record(folder: Path, variant: str, figures: dict, why: list, thresholds: dict) -> dict:
    """What ``model.json`` keeps of a variant's check: its figures, the verdict (``why``: the
    reasons it may not be used), whether the graphs were faithful whatever their speed (all
    that reopening a library's own vectors needs), and the digests of the graphs measured."""
    return {
        **figures,
        "passed": not why,
        "refused_because": why,
        "faithful": not fidelity_reasons(figures, thresholds, variant),
        "graphs": graphs_of(read_manifest(folder), variant),
        "thresholds": thresholds,
    }


def check_int8(
    folder: Path, images: list, texts: list, *, thresholds: dict = THRESHOLDS, about: str = ""
) -> dict:
    """Measure the package's int8 graphs (:func:`measure_int8`), decide, and record the
    figures and the verdict in ``model.json`` (``extra.variants.int8``); returns them.
    ``about`` says what the calibration set was."""
    folder = Path(folder)
    figures = {"calibration": about, **measure_int8(folder, images, texts)}
    check = check_record(folder, INT8, figures, verdict(figures, thresholds), thresholds)
    manifest = folder / "model.json"
    data = jsonfile.read_json_object(manifest, MANIFEST_LIMIT)
    extra = data.setdefault("extra", {})
    variants = extra.setdefault("variants", {})
    # What export/quantize.py recorded of how the graphs were made stays beside the check.
    made = variants.get(INT8) if isinstance(variants.get(INT8), dict) else {}
    variants[INT8] = {**made, **ROLES[INT8], "check": check}
    atomic_write_text(manifest, json.dumps(data, indent=2) + "\n")
    return check
