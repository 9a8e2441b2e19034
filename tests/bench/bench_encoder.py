"""Encoder and decode benchmark: ONNX Runtime next to torch eager, fast JPEG path next to full decode.

    python tests/bench/bench_encoder.py [--threads 2] [--batches 1,8,32] [--provider cpu]

Prints one JSON object. Everything is measured in one run, interleaved, so the ratios hold
on a shared, noisy machine. Without --package it exports the ViT-B/32 architecture with
random weights (seed 0) once into .cache/bench/ and reuses it.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from images import write_photo_jpeg  # noqa: E402

from photofind.clip import load_model  # noqa: E402

ARCH = "ViT-B-32"


def vitb32_package(cache: Path) -> Path:
    from export.model import ARCHS, random_init_model
    from export.onnx_export import export_package
    from export.vocab import find_clip_vocab

    out = cache / "vit-b-32-random-seed0"
    if not (out / "model.json").is_file():
        model = random_init_model(ARCHS[ARCH], seed=0).eval()
        export_package(
            model,
            ARCHS[ARCH],
            out,
            name="ViT-B-32-random-seed0",
            arch=ARCH,
            vocab_path=find_clip_vocab(),
            description="ViT-B/32 architecture with random weights, for benchmarks",
        )
    return out


def timed(fn, min_seconds: float, min_runs: int) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    runs, start = [], time.perf_counter()
    while len(runs) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def bench_encoders(package: Path, batches, threads, provider, min_seconds) -> dict:
    import torch

    from export.model import ARCHS, random_init_model

    torch.set_num_threads(threads)
    ort_model = load_model(package, provider=provider, threads=threads)
    torch_model = random_init_model(ARCHS[ARCH], seed=0).eval()
    size = ort_model.info.image_size
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        pixels = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
        tensor = torch.from_numpy(pixels)

        def run_torch(tensor=tensor):
            with torch.inference_mode():
                torch_model.encode_image(tensor)

        t_ort = timed(lambda px=pixels: ort_model.encode_pixels(px), min_seconds, 3)
        t_torch = timed(run_torch, min_seconds, 3)
        out[str(batch)] = {
            "onnx_images_per_s": round(batch / t_ort, 2),
            "torch_eager_images_per_s": round(batch / t_torch, 2),
            "onnx_over_torch": round(t_torch / t_ort, 3),
        }
    return {"provider": ort_model.info.provider, "batches": out}


def bench_decode(work: Path, runs: int, spec_model) -> dict:
    """The decode benchmark's own measurement (tests/bench/bench_decode.py), on 3 photos."""
    from bench_decode import measure

    from photofind.clip import preprocess

    photos = [write_photo_jpeg(work / f"photo{i}.jpg", seed=i) for i in range(3)]
    return {
        "photo_megapixels": 12.0,
        **measure(photos, spec_model.image_size, runs, preprocess.DRAFT_MULTIPLE),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="model package (default: ViT-B/32 random)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--provider", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measure")
    parser.add_argument("--decode-runs", type=int, default=3)
    parser.add_argument("--skip-torch", action="store_true", help="ONNX only (GPU machines)")
    args = parser.parse_args()

    cache = ROOT / ".cache" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    package = args.package or vitb32_package(cache)
    batches = [int(b) for b in args.batches.split(",")]
    result = {
        "benchmark": "encoder",
        "machine": {
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "package": str(package),
    }
    if args.skip_torch:
        model = load_model(package, provider=args.provider, threads=args.threads)
        rng = np.random.default_rng(0)
        s = model.info.image_size
        result["provider"] = model.info.provider
        result["batches"] = {
            str(b): {
                "onnx_images_per_s": round(
                    b
                    / timed(
                        lambda b=b: model.encode_pixels(
                            rng.standard_normal((b, 3, s, s), dtype=np.float32)
                        ),
                        args.seconds,
                        3,
                    ),
                    2,
                )
            }
            for b in batches
        }
    else:
        result.update(bench_encoders(package, batches, args.threads, args.provider, args.seconds))
    with tempfile.TemporaryDirectory() as work:
        spec = load_model(package, provider="cpu").spec
        result["decode"] = bench_decode(Path(work), args.decode_runs, spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
