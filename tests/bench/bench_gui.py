"""GUI benchmark at 100,000 photos; prints one JSON object.

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_gui.py [--photos 100000]
        [--index-photos 2000] [--model tiny-synthetic] [--workdir DIR]

The library is built fast, straight through the Catalog / VectorIndex APIs: the photo files
are hard links to a few small JPEGs (distinct paths, so every thumbnail is its own cache
entry) and the vectors are random unit vectors. Then, on the real main window (1280×800):

- Enter → first row shown (the grid painted with rows), for several distinct queries
  (each pays its text encoding: the text cache never hits);
- Enter → every visible thumbnail painted: uncached (empty disk and memory cache), disk
  cached (a new window, its memory cache empty) and memory cached (the same query again);
- a grid of 100,000 rows: the time to fill the viewport after jumping to the end;
- the longest gap of a 10 ms QTimer (a GUI event-loop stall) while the window's watcher
  reconciles the 100k library and indexes ``--index-photos`` new photos, with a search
  on screen that refreshes as they arrive.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

QUERIES = (
    "a red circle",
    "a blue square",
    "a green star on a striped background",
    "a yellow heart",
    "a small purple triangle",
    "a large cross",
)


def note(what: str) -> None:
    """Progress on stderr (stdout carries only the JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def build_library(root: Path, model, n: int, rng) -> Path:
    """``n`` catalogued and indexed photos (hard links to 8 JPEGs, random vectors)."""
    from images import write_photo_jpeg

    from photofind.library.library import Library
    from photofind.library.scanner import FileInfo, ScanResult

    root.mkdir(parents=True, exist_ok=True)

    sources = [
        write_photo_jpeg(root / f"source_{i}.jpg", width=640, height=480, seed=i) for i in range(8)
    ]
    photos = root / "photos"
    infos = []
    with Library.open(root / "lib") as library:
        folder = library.add_folder(_mkdir(photos))
        library.use_model(model)
        for i in range(n):
            sub = photos / f"{i // 1000:03d}"
            if i % 1000 == 0:
                sub.mkdir(exist_ok=True)
            target = sub / f"photo_{i:06d}.jpg"
            source = sources[i % len(sources)]
            if not target.exists():
                os.link(source, target)
            st = source.stat()
            infos.append(FileInfo(folder.id, str(target), st.st_size, st.st_mtime_ns, None))
        applied = library.catalog.apply_scan(ScanResult(added=infos))
        ids = np.asarray(applied.added_ids, dtype=np.int64)
        dim = model.info.dim
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            vectors = rng.standard_normal((len(chunk), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            written, generation = library.catalog.record_embeddings(
                zip(chunk.tolist(), vectors, [None] * len(chunk))
            )
            library.index.add(chunk, vectors)
            library.index.generation = generation
        library.index.save(library.root)
    return root / "lib"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class PaintClock:
    """Times of the grid's paints, and of thumbnails arriving, for "painted" checks."""

    def __init__(self, window):
        self.last_paint = 0.0
        self.ready_at: dict[str, float] = {}
        window.view.painted.connect(self._painted)
        window.thumbnails.ready.connect(self._ready)

    def _painted(self) -> None:
        self.last_paint = time.perf_counter()

    def _ready(self, path) -> None:
        self.ready_at[path] = time.perf_counter()


def wait_until(app, condition, timeout_s: float = 120.0) -> bool:
    """Run the event loop until ``condition()`` holds (checked every 2 ms)."""
    from PySide6.QtCore import QEventLoop, QTimer

    if condition():
        return True
    loop = QEventLoop()
    met = [False]

    def check():
        if condition():
            met[0] = True
            loop.quit()

    tick = QTimer()
    tick.timeout.connect(check)
    tick.start(2)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    tick.stop()
    return met[0]


def visible_rows(window) -> list[int]:
    from PySide6.QtCore import QPoint

    view = window.view
    rect = view.viewport().rect()
    model = view.model()
    if model.rowCount() == 0:
        return []
    first = view.indexAt(QPoint(rect.left() + 8, rect.top() + 8))
    start = first.row() if first.isValid() else 0
    out = []
    for row in range(start, model.rowCount()):
        r = view.visualRect(model.index(row))
        if r.top() > rect.bottom():
            break
        if r.intersects(rect):
            out.append(row)
    return out


def thumbnails_painted(window, clock: PaintClock) -> bool:
    from photofind.gui.results_model import PathRole

    model = window.view.model()
    rows = visible_rows(window)
    if not rows:
        return False
    arrived = 0.0
    for row in rows:
        path = model.index(row).data(PathRole)
        if window.thumbnails.get(path) is None:
            return False
        arrived = max(arrived, clock.ready_at.get(path, 0.0))
    # Painted: the grid was drawn after the last visible thumbnail arrived.
    return clock.last_paint > arrived


def timed_search(app, window, clock, text: str) -> dict:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window.clear_search()
    app.processEvents()
    window.search_box.setText(text)
    done = []
    window.searchFinished.connect(done.append)
    t0 = time.perf_counter()
    QTest.keyClick(window.search_box, Qt.Key.Key_Return)
    wait_until(app, lambda: bool(done) and clock.last_paint > t0 and window.results.rowCount())
    first_row = time.perf_counter() - t0
    ok = wait_until(app, lambda: thumbnails_painted(window, clock), timeout_s=30)
    thumbs = time.perf_counter() - t0
    window.searchFinished.disconnect(done.append)
    return {"first_row_ms": first_row * 1e3, "thumbnails_ms": thumbs * 1e3 if ok else None}


def summary(values) -> dict:
    values = [v for v in values if v is not None]
    return {
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
        "n": len(values),
    }


def open_window(lib: Path, model, watch_options=None):
    from photofind.gui import create_window

    window = create_window(lib, model, watch_options=watch_options)
    window.relevance_cutoff = False  # random vectors: no result would stand out
    window.resize(1280, 800)
    window.show()
    return window


def close_window(app, window) -> None:
    window.shutdown()
    window.close()
    window.library.close()
    app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--index-photos", type=int, default=2000)
    parser.add_argument("--model", default="tiny-synthetic")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from photofind.clip import load_model
    from photofind.gui.results_model import Row
    from photofind.library.watcher import WatchOptions

    app = QApplication.instance() or QApplication([])
    model = load_model(args.model, provider="cpu")
    rng = np.random.default_rng(0)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gui-"))
    out: dict = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "platform": os.environ["QT_QPA_PLATFORM"],
        "model": model.info.name,
        "photos": args.photos,
    }

    t = time.perf_counter()
    lib = build_library(work, model, args.photos, rng)
    out["build_library_s"] = round(time.perf_counter() - t, 1)

    note("library built")
    # 1. Enter -> first row and -> visible thumbnails, uncached then memory-cached.
    window = open_window(lib, model)
    clock = PaintClock(window)
    app.processEvents()  # the empty state shows; the grid paints once rows arrive
    uncached = [timed_search(app, window, clock, q) for q in QUERIES]
    memory = [timed_search(app, window, clock, q) for q in QUERIES]

    note("searches done")
    # 2. A grid of every photo: jump to the end.
    rows = [Row(p.path, 0.0, p.id) for p in window.library.catalog.photos()]
    t0 = time.perf_counter()
    window.results.set_rows(rows)
    window._refresh_empty_state()
    wait_until(app, lambda: clock.last_paint > t0)
    set_rows_ms = (time.perf_counter() - t0) * 1e3
    note(f"grid of {len(rows)} rows painted")
    wait_until(app, lambda: thumbnails_painted(window, clock), timeout_s=30)
    note("top of the grid has its thumbnails")
    t0 = time.perf_counter()
    window.view.scrollToBottom()
    wait_until(app, lambda: clock.last_paint > t0 and thumbnails_painted(window, clock))
    jump_ms = (time.perf_counter() - t0) * 1e3
    note("jumped to the end")
    close_window(app, window)

    # 3. Disk-cached thumbnails: a new window, so its memory cache is empty.
    window = open_window(lib, model)
    clock = PaintClock(window)
    app.processEvents()  # the empty state shows; the grid paints once rows arrive
    disk = [timed_search(app, window, clock, q) for q in QUERIES]
    close_window(app, window)

    out["enter_to_first_row_ms"] = summary(r["first_row_ms"] for r in uncached + disk)
    out["enter_to_visible_thumbnails_ms"] = {
        "uncached": summary(r["thumbnails_ms"] for r in uncached),
        "disk_cached": summary(r["thumbnails_ms"] for r in disk),
        "memory_cached": summary(r["thumbnails_ms"] for r in memory),
    }
    out["grid_all_photos"] = {
        "set_rows_to_paint_ms": round(set_rows_ms, 1),
        "jump_to_end_fill_viewport_ms": round(jump_ms, 1),
        "rows": len(rows),
    }

    # 4. Event-loop stalls while the watcher reconciles 100k and indexes new photos.
    from images import write_photo_jpeg
    from PySide6.QtCore import QTimer

    new = work / "new"
    new.mkdir(exist_ok=True)
    for i in range(args.index_photos):
        write_photo_jpeg(new / f"new_{i:05d}.jpg", width=320, height=240, seed=1000 + i)
    window = open_window(lib, model, WatchOptions())
    window.search_box.setText(QUERIES[0])
    window.run_search()
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    meter = QTimer()
    meter.setInterval(10)
    meter.timeout.connect(tick)
    meter.start()
    caught_up = []  # the watcher's rounds that left nothing pending
    window.indexing.finished.connect(lambda *_: caught_up.append(time.perf_counter()))
    t0 = time.perf_counter()
    note("indexing new photos")
    window.start_indexing()
    window.add_folder(str(new))
    target = args.photos + args.index_photos

    # Counting the catalog is itself work on the GUI thread: only after a caught-up round.
    def all_indexed() -> bool:
        if not caught_up:
            return False
        caught_up.clear()
        return window.library.status()["indexed"] >= target

    ok = wait_until(app, all_indexed, timeout_s=1800)
    took = time.perf_counter() - t0
    meter.stop()
    close_window(app, window)
    late = np.asarray(gaps) * 1e3
    out["indexing_stall"] = {
        "photos_indexed": args.index_photos,
        "completed": bool(ok),
        "seconds": round(took, 1),
        "longest_gap_ms": round(float(late.max()), 1),
        "p99_gap_ms": round(float(np.percentile(late, 99)), 1),
        "gaps_over_100ms": int((late > 100).sum()),
        "ticks": len(gaps),
    }
    print(json.dumps(out, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Skip the interpreter's final garbage collection: PySide6 6.x can abort in it
    # (bool_dealloc) after a long session of queued signals; the results are out by now.
    os._exit(code)
