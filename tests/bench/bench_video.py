"""Benchmark: sampling videos (photofind.formats.video) — a 1080p H.264 and a 4K HEVC video,
generated here with PyAV's libx264 and libx265, next to today's JPEG fast path.

Run:  python tests/bench/bench_video.py [--seconds 8] [--threads 2] [--side 336]

Each video shows a new scene every second (photo-like pictures, panning, so the P-frames
carry real motion), a keyframe every second. Sampling reads every keyframe's 16x16
signature, then decodes the chosen frames at ``--side`` (the shortest side a 224-px CLIP
asks for). Prints one JSON object: per video, its keyframes, the frames sampled, the wall
time (best of ``--runs``), frames sampled per second and seconds of video per second, for
1 and ``--threads`` FFmpeg threads; the JPEG fast path's photos per second on one 12 MP
JPEG; and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from images import photo_like_array, write_photo_jpeg  # noqa: E402

from photofind.clip import preprocess as pp  # noqa: E402
from photofind.formats.video import Video  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def write(path: Path, codec: str, size: tuple[int, int], seconds: int, fps: int) -> float:
    """Encode the test video; returns the seconds it took."""
    width, height = size
    started = time.perf_counter()
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps, options={"preset": "ultrafast"})
    stream.width, stream.height, stream.pix_fmt, stream.gop_size = width, height, "yuv420p", fps
    for second in range(seconds):
        # A scene a little wider than the frame, panned across during its second.
        scene = photo_like_array(width + fps * 8, height, seed=second)
        for n in range(fps):
            pixels = np.ascontiguousarray(scene[:, n * 8 : n * 8 + width])
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = second * fps + n
            container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    return time.perf_counter() - started


def sample(path: Path, side: int, threads: int, runs: int) -> dict:
    best, frames = None, 0
    for _ in range(runs):
        started = time.perf_counter()
        video = Video(path, threads=threads, keep_side=side)
        frames = sum(1 for _ in video.frames(side))
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    duration = Video(path).duration_ms / 1000
    return {
        "threads": threads,
        "frames_sampled": frames,
        "seconds": round(best, 3),
        "frames_per_s": round(frames / best, 1),
        "video_s_per_s": round(duration / best, 1),
    }


def keyframes(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.is_keyframe)


def jpeg_fast_path(folder: Path, size: int, runs: int) -> dict:
    path = write_photo_jpeg(folder / "12mp.jpg", width=4000, height=3000, seed=1)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        pp.load_and_preprocess(path, size, MEAN, STD, fast=True)
        times.append(time.perf_counter() - started)
    return {"photo": "12 MP JPEG", "photos_per_s": round(1 / min(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side", type=int, default=336)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result: dict = {"side": args.side, "videos": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, codec, size, fps in (
            ("1080p H.264", "libx264", (1920, 1080), 30),
            ("4K HEVC", "libx265", (3840, 2160), 10),
        ):
            path = folder / f"{codec}.mp4"
            encode_s = write(path, codec, size, args.seconds, fps)
            entry = {
                "video": name,
                "size": list(size),
                "fps": fps,
                "duration_s": args.seconds,
                "keyframes": keyframes(path),
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "encode_s": round(encode_s, 1),
                "sampling": [
                    sample(path, args.side, threads, args.runs)
                    for threads in sorted({1, args.threads})
                ],
            }
            result["videos"].append(entry)
        result["jpeg_fast_path"] = jpeg_fast_path(folder, 224, args.runs)
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "av": av.__version__,
        "pillow": Image.__version__,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
