"""Indexing benchmark: the pipeline next to the encoder alone and a naive loop, one run.

    python tests/bench/bench_index.py [--photos 48] [--scale 1000,20000]

Prints one JSON object:
- ``throughput``: photos/s indexing a folder of 12-megapixel JPEGs with the ViT-B/32
  random-weight package through the real pipeline (scan, decode pool, batches, writer);
  (a) the encoder alone on pre-decoded tensors; (b) a naive loop (full decode, preprocess,
  encode one at a time); and the machine's limit, cores / (decode-and-preprocess CPU-s per
  photo + encode CPU-s per photo), both costs measured here on one thread of work each.
- ``scale``: for each folder size, in a fresh process, the model's own resident memory,
  the peak during indexing and the difference; then the time of a second, no-change run.
  Thousands of 12 MP photos would take hours to encode here, so the scale runs use small
  JPEGs and the tiny-test architecture: what they measure is the pipeline's memory, which
  must not grow with the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from images import write_photo_jpeg  # noqa: E402

from photofind.clip import load_model  # noqa: E402
from photofind.library.library import Library  # noqa: E402

CACHE = ROOT / ".cache" / "bench"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """High-water mark of this process (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def package(arch: str) -> Path:
    from export.model import ARCHS, random_init_model
    from export.onnx_export import export_package
    from export.vocab import find_clip_vocab

    out = CACHE / f"{arch.lower()}-random-seed0"
    if not (out / "model.json").is_file():
        export_package(
            random_init_model(ARCHS[arch], seed=0).eval(),
            ARCHS[arch],
            out,
            name=f"{arch}-random-seed0",
            arch=arch,
            vocab_path=find_clip_vocab(),
            description=f"{arch} architecture with random weights, for benchmarks",
        )
    return out


def make_folder(folder: Path, count: int, distinct: int, width: int, height: int) -> None:
    """``count`` photos: ``distinct`` generated ones, the rest copies under other names."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = [
        write_photo_jpeg(folder / f"photo_{i:05d}.jpg", width=width, height=height, seed=i)
        for i in range(min(distinct, count))
    ]
    for i in range(len(originals), count):
        shutil.copyfile(originals[i % len(originals)], folder / f"photo_{i:05d}.jpg")


def throughput(args, work: Path) -> dict:
    model = load_model(package("ViT-B-32"), provider="cpu")
    folder = work / "photos12mp"
    make_folder(folder, args.photos, args.distinct, 4000, 3000)
    paths = sorted(folder.iterdir())
    cores = len(os.sched_getaffinity(0))

    # Decode-and-preprocess cost, CPU-seconds per photo (one thread, the fast path).
    t0 = time.process_time()
    tensors = [model.preprocess(p) for p in paths]
    decode_cpu = (time.process_time() - t0) / len(paths)

    # (a) The encoder alone on pre-decoded tensors, in the pipeline's batch size.
    batch = np.stack(tensors[: args.batch_size])
    model.encode_pixels(batch)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.encoder_rounds):
        model.encode_pixels(batch)
    wall = time.perf_counter() - t0
    n_encoded = args.encoder_rounds * len(batch)
    encode_cpu = (time.process_time() - c0) / n_encoded
    encoder_alone = n_encoded / wall

    # (b) The naive loop: full decode, preprocess, encode one photo at a time.
    naive_paths = paths[: args.naive_photos]
    t0 = time.perf_counter()
    for p in naive_paths:
        model.encode_pixels(model.preprocess(p, fast=False)[None])
    naive = len(naive_paths) / (time.perf_counter() - t0)

    # The pipeline, end to end on a fresh library.
    with Library.open(work / "lib12mp") as library:
        library.add_folder(folder)
        t0 = time.perf_counter()
        library.scan()
        stats = library.index_pending(model, batch_size=args.batch_size)
        pipeline = stats.indexed / (time.perf_counter() - t0)
    limit = cores / (decode_cpu + encode_cpu)
    return {
        "photos": len(paths),
        "photo_megapixels": 12.0,
        "pipeline_photos_per_s": round(pipeline, 2),
        "encoder_alone_photos_per_s": round(encoder_alone, 2),
        "naive_loop_photos_per_s": round(naive, 2),
        "decode_cpu_s_per_photo": round(decode_cpu, 4),
        "encode_cpu_s_per_photo": round(encode_cpu, 4),
        "machine_limit_photos_per_s": round(limit, 2),
        "pipeline_over_naive": round(pipeline / naive, 2),
        "pipeline_over_limit": round(pipeline / limit, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def scale_child(count: int, work: Path) -> None:
    """Run in a fresh process: index ``count`` small photos, report memory and times."""
    folder = work / f"small{count}"
    make_folder(folder, count, 200, 320, 240)
    before_model = rss_mb()
    model = load_model(package("tiny-test"), provider="cpu")
    model.encode_pixels(np.zeros((32, 3, model.info.image_size, model.info.image_size), np.float32))
    model_mb = rss_mb() - before_model
    base = rss_mb()
    with Library.open(work / f"lib{count}") as library:
        library.add_folder(folder)
        t0 = time.perf_counter()
        library.scan()
        stats = library.index_pending(model)
        first = time.perf_counter() - t0
    with Library.open(work / f"lib{count}") as library:
        t0 = time.perf_counter()
        report = library.scan()
        again = library.index_pending(model)
        second = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "photos": count,
                "indexed": stats.indexed,
                "model_rss_mb": round(model_mb, 1),
                "rss_before_indexing_mb": round(base, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "peak_over_loaded_model_mb": round(peak_rss_mb() - base, 1),
                "first_run_s": round(first, 1),
                "unchanged_rerun_s": round(second, 2),
                "unchanged_rerun_encoded": again.indexed,
                "unchanged_seen": report.result.unchanged,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48, help="12 MP photos to index")
    parser.add_argument("--distinct", type=int, default=8, help="of which generated (rest copies)")
    parser.add_argument("--naive-photos", type=int, default=16)
    parser.add_argument("--encoder-rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scale", default="1000,20000", help="folder sizes for the memory runs")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)

    if args.scale_child:
        scale_child(args.scale_child, args.work)
        return

    result = {
        "benchmark": "index",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            result["throughput"] = throughput(args, work)
        package("tiny-test")
        result["scale"] = []
        for count in [int(c) for c in args.scale.split(",") if c]:
            done = subprocess.run(
                [sys.executable, __file__, "--scale-child", str(count), "--work", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            result["scale"].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
