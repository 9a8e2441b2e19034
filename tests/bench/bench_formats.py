"""Benchmark: decode time per still format, next to today's JPEG fast path.

Run:  python tests/bench/bench_formats.py [--runs 3] [--size 224] [--megapixels 12]

One 12-megapixel photo-like picture is written as JPEG (quality 90, as cameras write), HEIC
(x265, quality 60: ~2 bits a pixel, the upper end of an iPhone's 1.5-3 MB at 12 MP; the
decode time follows the bit rate), AVIF (libavif, quality 60), JPEG XL (libjxl, quality 80),
and as a 12-bit Bayer DNG (PiDNG) with and without a full-size JPEG preview, as cameras
store one. ``file_bits_per_pixel`` says what each file holds. For each file: the
milliseconds to make CLIP's input for an encoder of ``--size`` (what indexing costs: the
fast path, libjpeg's reduced decode where the format allows) and a grid thumbnail (320 px),
median over the runs, the formats interleaved in each run so machine noise hits all alike.
For the DNG it also times LibRaw's full demosaic, which photofind never runs, to show what
the preview and the half-size demosaic save. Prints one JSON object. Needs ``pidng``.
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
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import still_files as sf  # noqa: E402
from images import photo_like_array  # noqa: E402

from photofind.clip import preprocess as pp  # noqa: E402
from photofind.formats import raw  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def write_files(folder: Path, width: int, height: int) -> tuple[dict[str, Path], dict]:
    picture = Image.fromarray(photo_like_array(width, height, 0))
    files, encode_s = {}, {}

    def timed(name, write):
        t0 = time.perf_counter()
        files[name] = write()
        encode_s[name] = round(time.perf_counter() - t0, 2)

    timed("jpeg", lambda: _saved(picture, folder / "p.jpg", "JPEG", quality=90))
    # x265's ultrafast preset: the same decoder work at a fifth of the encode time.
    heic = {"quality": 60, "enc_params": {"preset": "ultrafast"}}
    timed("heic", lambda: _saved(picture, folder / "p.heic", "HEIF", **heic))
    timed("avif", lambda: _saved(picture, folder / "p.avif", "AVIF", quality=60, speed=8))
    timed("jxl", lambda: _saved(picture, folder / "p.jxl", "JXL", quality=80))
    timed("dng_preview", lambda: sf.write_dng(folder / "pv.dng", picture, preview=picture))
    timed("dng_demosaic", lambda: sf.write_dng(folder / "raw.dng", picture))
    return files, encode_s


def _saved(picture, path, fmt, **options) -> Path:
    picture.save(path, format=fmt, **options)
    return path


def ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--megapixels", type=float, default=12.0)
    args = parser.parse_args()
    height = int(round((args.megapixels * 1e6 * 3 / 4) ** 0.5))
    width = height * 4 // 3
    with tempfile.TemporaryDirectory() as tmp:
        files, encode_s = write_files(Path(tmp), width, height)
        index = {name: [] for name in files}
        thumb = {name: [] for name in files}
        for _ in range(args.runs):
            for name, path in files.items():
                index[name].append(
                    ms(lambda p=path: pp.load_and_preprocess(p, args.size, MEAN, STD, fast=True))
                )
                thumb[name].append(ms(lambda p=path: pp.open_image(p, draft_size=(320, 320))))
        sources = {
            name: raw.decode_raw(files[name], None, (pp.draft_side(args.size),) * 2).source
            for name in ("dng_preview", "dng_demosaic")
        }

        def full_demosaic():
            with raw._open(files["dng_demosaic"]) as r:
                r.postprocess(use_camera_wb=True, output_bps=8)

        full = statistics.median(ms(full_demosaic) for _ in range(max(1, args.runs // 2)))
        sizes = {name: path.stat().st_size for name, path in files.items()}
    jpeg = statistics.median(index["jpeg"])
    result = {
        "benchmark": "formats",
        "picture": f"{width}x{height} ({width * height / 1e6:.1f} MP), photo-like",
        "encoder_input": args.size,
        "runs": args.runs,
        "index_ms": {k: round(statistics.median(v), 1) for k, v in index.items()},
        "thumbnail_ms": {k: round(statistics.median(v), 1) for k, v in thumb.items()},
        "index_vs_jpeg_fast_path": {
            k: round(statistics.median(v) / jpeg, 2) for k, v in index.items()
        },
        "raw_paths": sources,
        "raw_full_demosaic_ms": round(full, 1),
        "file_bytes": sizes,
        "file_bits_per_pixel": {k: round(v * 8 / (width * height), 2) for k, v in sizes.items()},
        "encode_s": encode_s,
        "machine": {
            "cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
