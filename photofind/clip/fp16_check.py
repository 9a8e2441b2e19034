"""The check of a package's fp16 graphs against its fp32 ones (photofind.clip.variants says
how its verdict is used).

It runs where the graphs can run: on CUDA where this machine has it, else on ONNX
Runtime's CPU provider, which runs float16 graphs too (measured on the tiny CLIP and
ViT-B/32's random weights: every operator of our exporter's graphs runs). But the CPU
runs them mostly in float32: its graph optimiser casts the float16 weights back to float32
and folds the casts (the optimised graph of the tiny CLIP's image tower: every MatMul's
weights float32), so a check there measures the weights' rounding to float16 and the
converter's work, not float16 arithmetic; an activation past float16's range (65,504)
would show only on CUDA. So the record says where the check ran, and "fast" runs the
graphs on CUDA only after a check there passed (photofind.clip.variants.fp16_passed_on_cuda;
``photofind models install`` makes and checks them on a CUDA machine). Where the check
cannot run at all, that is recorded ("not checked on this machine"). The speed-up is
measured only on CUDA: the CPU runs float16 no faster than float32, and never runs the
fp16 graphs by choice.

The calibration set is the caller's (export/fp16.py brings photofind.synthetic's), as for
the int8 check (photofind.clip.variant_check).
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
from photofind.clip.providers import planned_provider
from photofind.clip.variant_check import check_record, compare, fidelity_reasons
from photofind.clip.variants import FP16, FP16_THRESHOLDS, FP32, ROLES
from photofind.errors import ModelError, ProviderError

MANIFEST_LIMIT = 1 << 20


def _best_time(fn, arg, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_fp16(
    folder: Path,
    images: list,
    texts: list,
    *,
    provider: str = "auto",
    speed_batch: int = 32,
    rounds: int = 3,
) -> dict:
    """The fp16 graphs against the fp32 ones on ``provider`` ("auto": CUDA where it
    works, else the CPU), with the image encoder's speed-up where that is CUDA."""
    folder = Path(folder)
    spec = read_manifest(folder)
    if any(role not in spec.files for role in ROLES[FP16].values()):
        raise ModelError(f"{folder}: model.json lists no visual_fp16 and textual_fp16 files")
    # Opened first: the provider its sessions settled on (a CUDA that fails falls back to
    # the CPU) is the one the fp16 graphs are checked on.
    exact = ClipModel(folder, spec, provider=provider, variant=FP32).check()
    half = ClipModel(folder, spec, provider=exact.info.provider, variant=FP16)
    figures = compare(exact, half, images, texts)
    figures["recall_at_5_fp16"] = figures.pop("recall_at_5_other")
    where = exact.info.provider
    figures["provider"] = where
    if where == "cuda":
        batch = np.stack([exact.preprocess(im) for im in images[:speed_batch]])
        exact.encode_pixels(batch), half.encode_pixels(batch)  # warm-up: kernels chosen
        t_fp, t_half = (_best_time(m.encode_pixels, batch, rounds) for m in (exact, half))
        figures["image_speedup"] = round(t_fp / t_half, 3)
        figures["image_fp32_img_per_s"] = round(len(batch) / t_fp, 1)
        figures["image_fp16_img_per_s"] = round(len(batch) / t_half, 1)
    else:
        figures["image_speedup"] = None
        figures["speed"] = "not measured: fp16 graphs are for CUDA; this check ran on the CPU"
    return figures


def verdict(figures: dict, thresholds: dict = FP16_THRESHOLDS) -> list[str]:
    """Why the fp16 graphs may not be used (empty: they may)."""
    why = fidelity_reasons(figures, thresholds, FP16)
    if not figures.get("finite", True):
        why[0] += " (float16 overflow)"
    speedup = figures.get("image_speedup")
    if speedup is not None and speedup < thresholds["speedup_min"]:
        why.append(
            f"fp16 image encoder only {speedup}x as fast as fp32 on CUDA "
            f"(< {thresholds['speedup_min']}x)"
        )
    return why


def record(folder: Path, check: dict) -> None:
    """Write ``check`` as the fp16 variant's record in ``model.json``."""
    manifest = Path(folder) / "model.json"
    data = jsonfile.read_json_object(manifest, MANIFEST_LIMIT)
    variants = data.setdefault("extra", {}).setdefault("variants", {})
    variants[FP16] = {**ROLES[FP16], "check": check}
    atomic_write_text(manifest, json.dumps(data, indent=2) + "\n")


def check_fp16(
    folder: Path,
    images: list,
    texts: list,
    *,
    thresholds: dict = FP16_THRESHOLDS,
    about: str = "",
    provider: str = "auto",
) -> dict:
    """Measure the package's fp16 graphs (:func:`measure_fp16`), decide, and record the
    figures and the verdict in ``model.json`` (``extra.variants.fp16``, with the provider
    it ran on); returns them. Where the graphs cannot run here, the record says so and
    they stay unused."""
    folder = Path(folder)
    try:
        figures = {"calibration": about, **measure_fp16(folder, images, texts, provider=provider)}
    except ProviderError as exc:  # no session could open where it was asked to run
        where = planned_provider(provider).name if provider in ("auto", "cpu") else provider
        needs = ": needs CUDA" if where == "cpu" else ""
        check = {
            "passed": False,
            "provider": where,
            "not_checked": f"not checked on this machine{needs} ({exc})",
            "refused_because": [f"could not run the fp16 graphs here: {exc}"],
            "thresholds": thresholds,
        }
    except ModelError as exc:  # the graphs opened or ran and failed: a failed check
        where = planned_provider(provider).name if provider in ("auto", "cpu") else provider
        check = {
            "passed": False,
            "faithful": False,
            "provider": where,
            "refused_because": [f"the fp16 graphs failed here: {exc}"],
            "thresholds": thresholds,
        }
    else:
        check = check_record(folder, FP16, figures, verdict(figures, thresholds), thresholds)
    record(folder, check)
    return check
