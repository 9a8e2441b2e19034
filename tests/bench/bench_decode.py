"""Benchmark: decoding + CLIP preprocessing of 12-megapixel JPEGs, exact path vs fast path.

Run:  python tests/bench/bench_decode.py [--images 3] [--runs 7] [--size 224] [--sweep]

Prints one JSON object: milliseconds per photo (median over runs, both paths interleaved in
the same run so machine noise hits both alike), the speed ratio, the mean absolute pixel
difference of the fast path against the exact one (in 0..1 units and x255, after undoing the
std scaling), and the machine. --sweep also measures other draft multiples (which scale
libjpeg decodes at) so the choice of DRAFT_MULTIPLE can be re-checked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from images import write_photo_jpeg  # noqa: E402

from photofind.clip import preprocess as pp  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def pixel_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| in 0..1 pixel units: normalised tensors times std undo Normalize."""
    std = np.asarray(STD, np.float32).reshape(3, 1, 1)
    return float(np.mean(np.abs((a - b) * std)))


def time_ms(fn, path) -> float:
    t0 = time.perf_counter()
    fn(path)
    return (time.perf_counter() - t0) * 1000.0


def measure(paths, size: int, runs: int, multiple: float) -> dict:
    pp.DRAFT_MULTIPLE = multiple

    def exact(p):
        return pp.load_and_preprocess(p, size, MEAN, STD, fast=False)

    def fast(p):
        return pp.load_and_preprocess(p, size, MEAN, STD, fast=True)

    mads = [pixel_mad(fast(p), exact(p)) for p in paths]
    exact_ms, fast_ms = [], []
    for _ in range(runs):
        for p in paths:
            exact_ms.append(time_ms(exact, p))
            fast_ms.append(time_ms(fast, p))
    e, f = statistics.median(exact_ms), statistics.median(fast_ms)
    decoded = pp._decode(paths[0], pp.DEFAULT_MAX_PIXELS, (int(np.ceil(multiple * size)),) * 2)
    return {
        "draft_multiple": multiple,
        "jpeg_scale": f"1/{decoded.scale}",
        "decoded_size": list(decoded.image.size),
        "exact_ms_median": round(e, 2),
        "fast_ms_median": round(f, 2),
        "speedup": round(e / f, 2),
        "mean_abs_diff_0_1": round(float(np.mean(mads)), 6),
        "mean_abs_diff_x255": round(float(np.mean(mads)) * 255, 3),
        "max_image_mean_abs_diff_x255": round(max(mads) * 255, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="distinct 12 MP photos")
    parser.add_argument("--runs", type=int, default=7, help="timed passes over the photos")
    parser.add_argument("--size", type=int, default=224, help="model input size S")
    parser.add_argument("--sweep", action="store_true", help="also try other draft multiples")
    args = parser.parse_args()

    chosen = pp.DRAFT_MULTIPLE
    with tempfile.TemporaryDirectory() as tmp:
        paths = [
            write_photo_jpeg(Path(tmp) / f"photo{i}.jpg", 4000, 3000, seed=i)
            for i in range(args.images)
        ]
        result = {
            "benchmark": "decode_preprocess_12mp_jpeg",
            "photo": "4000x3000 photo-like JPEG (tests/images.py, quality 90)",
            "images": args.images,
            "runs": args.runs,
            "image_size": args.size,
            **measure(paths, args.size, args.runs, chosen),
        }
        if args.sweep:
            result["sweep"] = [
                measure(paths, args.size, max(3, args.runs // 2), m)
                for m in (1.0, 2.0, 4.0)
                if m != chosen
            ]
        pp.DRAFT_MULTIPLE = chosen
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
