"""GUI responsiveness while the app's watcher runs the face pass; prints one JSON object.

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_gui_faces.py [--copies 4]
        [--workdir DIR] [--trace-stalls]

The library: every labelled photo of ../shared/data/faces, ``--copies`` times (each copy
re-encoded with one pixel changed, so every file is its own photo), indexed for CLIP first
without faces. Then, on the real main window (1280x800), its watcher runs the face pass
(dlib on its decode threads) while a new query is typed every 0.7 s. Measured:

- ``faces_stall``: the gaps of a 10 ms QTimer (GUI event-loop stalls) while the face pass
  runs: longest, p99, how many over 100 ms; and ``idle_stall``, the same for 2 s of the
  same window with nothing running, the floor of this machine at that moment;
- ``enter_to_first_row_while_faces_ms``: Enter -> the grid painted with rows;
- ``face_pass``: photos, faces, seconds and photos/s of the pass inside the app.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def build_library(work: Path, copies: int, model) -> tuple[Path, int]:
    import faces_data as data

    from photofind.library.library import Library

    photos = work / "photos"
    photos.mkdir(parents=True)
    n = 0
    for copy in range(copies):
        for relative in data.unique_photos():
            with Image.open(data.FACES / relative) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
            pixels = np.asarray(image).copy()
            pixels[0, 0] = (copy * 37 % 256, n % 256, 7)  # its own file, the same faces
            Image.fromarray(pixels).save(photos / f"{copy}_{n:04d}.jpg", quality=92)
            n += 1
    lib = work / "lib"
    with Library.open(lib) as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(model)  # CLIP only: the face pass is the window's to run
    return lib, n


def gaps_while(app, until, timeout_s: float) -> tuple[list[float], bool]:
    """The 10 ms timer's gaps (ms) while the event loop runs until ``until()``."""
    from bench_gui import wait_until
    from PySide6.QtCore import QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1e3)
        last[0] = now

    meter = QTimer()
    meter.setInterval(10)
    meter.timeout.connect(tick)
    meter.start()
    ok = wait_until(app, until, timeout_s=timeout_s)
    meter.stop()
    return gaps, ok


def stall(gaps: list[float]) -> dict:
    late = np.asarray(gaps)
    return {
        "longest_gap_ms": round(float(late.max()), 1),
        "p99_gap_ms": round(float(np.percentile(late, 99)), 1),
        "median_gap_ms": round(float(np.median(late)), 1),
        "gaps_over_100ms": int((late > 100).sum()),
        "ticks": len(late),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--model", default="tiny-synthetic")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--faces-in",
        choices=("app", "thread", "threads"),
        default="app",
        help="app: the app's own face analyser (its worker processes); thread: faces found "
        "in this process on the pipeline's thread; threads: on both decode threads (the "
        "CLI's way)",
    )
    parser.add_argument(
        "--trace-stalls", action="store_true", help="the stacks of GUI stalls, on stderr"
    )
    args = parser.parse_args()

    from bench_gui import BusyTypist, StallTracer, close_window, open_window, summary
    from PySide6.QtWidgets import QApplication

    from photofind.clip import load_model
    from photofind.library.watcher import WatchOptions

    app = QApplication.instance() or QApplication([])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gui-faces-"))
    model = load_model(args.model, provider="cpu")
    lib, n = build_library(work, args.copies, model)
    out = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "photos": n,
    }
    window = open_window(lib, model, WatchOptions())
    if args.faces_in != "app":
        from photofind.people import face_analysers

        window.models._face_analysers = face_analysers(
            lib, processes=0, in_decode_threads=args.faces_in == "threads"
        )
    out["faces_in"] = args.faces_in
    tracer = StallTracer() if args.trace_stalls else None
    try:
        idle, _ = gaps_while(app, lambda: False, timeout_s=2.0)
        out["idle_stall"] = stall(idle)
        passes = []
        window.indexing.finished.connect(lambda *_: passes.append(time.perf_counter()))
        typist = BusyTypist(window)
        catalog = window.library.catalog
        t0 = time.perf_counter()
        if tracer is not None:
            tracer.phase = "faces"
        window.start_indexing()
        typist.start()

        def faces_done() -> bool:
            if not passes:
                return False
            passes.clear()
            return catalog.analysis_counts("faces")["pending"] == 0

        gaps, ok = gaps_while(app, faces_done, timeout_s=1800)
        took = time.perf_counter() - t0
        if tracer is not None:
            tracer.phase = None
        typist.stop()
        out["faces_stall"] = stall(gaps)
        out["enter_to_first_row_while_faces_ms"] = summary(typist.first_row_ms)
        out["enter_to_first_row_while_faces_ms"]["unanswered"] = typist.unanswered
        out["face_pass"] = {
            "completed": bool(ok),
            "photos": catalog.analysis_counts("faces")["done"],
            "faces": len(catalog.faces()),
            "people": len(catalog.people()),
            "seconds": round(took, 1),
            "photos_per_s": round(n / took, 2),
        }
    finally:
        close_window(app, window)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2), flush=True)
    if tracer is not None:
        tracer.stop()
        tracer.report()
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
