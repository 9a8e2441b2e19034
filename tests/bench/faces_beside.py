"""CLIP indexing with the face analyser beside it, against the limit of both, one run.

    python tests/bench/faces_beside.py [--photos 24] [--rounds 2] [--with-faces]
                                       [--modes processes,threads,processes-cold,...]

(``bench_index.py --faces`` runs the same, beside its CLIP figures.) Prints one JSON object.
For each way the face analyser runs:

- ``processes``: in worker processes (photofind.faces.worker), one per core, as the app and
  the CLI do;
- ``threads``: on the decode threads of this process (as ``photofind index`` did before);
- ``processes-cold``, ``threads-cold``: the same with a fresh analyser, its models loaded and
  workers started inside the pass (as the first pass of a session meets them);

one pass of the real pipeline (scan, decode pool, batches, writer) over a folder of 12 MP
JPEGs with the ViT-B/32 int8 package, the modes taking turns ``--rounds`` times (medians in
``summary_median``), each run with a new analyser warmed first (its models loaded, its
worker processes started: the app keeps it for the window's life; ``startup_s`` is what that
took). Per run:

- ``photos_per_s``, and the ratio to the machine's limit, cores / (decode-and-faces CPU-s per
  photo + encode CPU-s per photo), both measured in this run on one thread of work each and
  on the same photos (``over_limit``; ``over_limit_of_cores_left``: against the cores other
  processes of the machine left this one);
- where each core's time went (CPU-s): ``decode`` (the decode threads, less the faces found
  on them), ``faces`` (dlib: on the decode threads, or in the worker processes, read from
  their /proc stat), ``encode`` (ONNX Runtime's threads and the pipeline thread), ``write``,
  other processes of the machine, and ``idle``;
- the timeline of the stages (``timeline``): the wall time the encoder ran, the time decode
  work still ran while it did (the two stages on the same cores), the time a core stood
  idle for want of work (one decode job left, nothing encoding), and of the decode jobs'
  time, how much they were blocked, neither on a core nor waiting for one
  (``decode_jobs_blocked_s``, from /proc/thread-self/schedstat: on the GIL with threads;
  on the worker's answer with processes, by design);
- the CPU-s per photo of the pass (``pipeline_cpu_s_per_photo``) against the standalone
  figure of the limit: more in the pipeline means the stages cost each other.

``--with-faces`` makes photos that show real faces (the shared face photos pasted into the
generated scenes), so that dlib's embedder (which holds the GIL) runs too; the default photos
show none, and dlib only runs its HOG detector on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from cpu_account import TICK, CpuAccount, loadavg  # noqa: E402

from photofind.library import face_analyser as face_module  # noqa: E402
from photofind.library.analysers import ClipAnalyser  # noqa: E402
from photofind.library.decode_pool import Job  # noqa: E402
from photofind.library.library import Library  # noqa: E402

#: ``-cold``: the analyser not warmed before the pass (its start-up inside it)
MODES = ("processes", "threads")


def process_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def analyser_for(mode: str):
    """The analyser as the app makes it (``processes``), or on the decode threads."""
    if mode.startswith("processes"):
        return face_module.FaceAnalyser(processes=face_module.worker_count())
    return face_module.FaceAnalyser(in_decode_threads=True)


def worker_pids(analyser) -> list[int]:
    workers = analyser._processes
    if workers is None:
        return []
    return workers.pids()


def warm(analyser, paths) -> float:
    """Run the analyser as the pass will, once per decode thread at the same time (its
    models loaded, its worker processes started); the seconds it took."""
    from photofind.clip.preprocess import Picture

    cores = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()

    def one(path):
        picture = Picture(str(path), side=analyser.picture_side)
        analyser.prepare(SimpleNamespace(path=str(path)), picture)
        picture.release()

    threads = [threading.Thread(target=one, args=(paths[i % len(paths)],)) for i in range(cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def standalone_costs(model, analyser, paths) -> dict:
    """CPU-s per photo, one thread of work, on ``paths``: what a decode thread does for CLIP
    and faces (the photo decoded once at the larger of the two sizes, CLIP's tensor, its
    faces), and the faces' part of it. With worker processes, the faces' CPU is theirs."""
    from photofind.clip.preprocess import Picture, draft_side

    side = max(analyser.picture_side, draft_side(model.spec.image_size))
    pids = worker_pids(analyser)
    faces_cpu = 0.0
    t0 = time.process_time()
    w0 = sum(process_cpu_s(p) for p in pids)
    for p in paths:
        picture = Picture(str(p), side=side)
        model.preprocess(picture)
        f0 = time.thread_time()
        analyser.prepare(SimpleNamespace(path=str(p)), picture)
        faces_cpu += time.thread_time() - f0
        picture.release()
    here = time.process_time() - t0
    workers = sum(process_cpu_s(p) for p in pids) - w0
    n = len(paths)
    return {
        "decode_and_faces_cpu_s_per_photo": round((here + workers) / n, 4),
        "faces_cpu_s_per_photo": round((faces_cpu + workers) / n, 4),
    }


def _schedstat() -> tuple[float, float] | None:
    """This thread's seconds on a core and waiting in the run queue (Linux schedstat)."""
    try:
        text = Path("/proc/thread-self/schedstat").read_text().split()
    except OSError:
        return None
    return int(text[0]) / 1e9, int(text[1]) / 1e9


class Timeline:
    """When each decode job and each encoder call ran (monotonic seconds), and the CPU the
    faces took on the decode threads; installed by :meth:`patched` for one run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.decode: list[tuple[float, float]] = []
        self.encode: list[tuple[float, float]] = []
        self.faces_thread_cpu = 0.0
        self.blocked = 0.0

    @contextlib.contextmanager
    def patched(self):
        run, analyse, find = Job._run, ClipAnalyser.analyse, face_module.FaceAnalyser._find
        timeline = self

        def timed_run(job):
            t0, s0 = time.monotonic(), _schedstat()
            try:
                return run(job)
            finally:
                t1, s1 = time.monotonic(), _schedstat()
                with timeline.lock:
                    timeline.decode.append((t0, t1))
                    if s0 and s1:
                        # Neither on a core nor waiting for one: blocked (the GIL, or a
                        # worker process's answer).
                        timeline.blocked += (t1 - t0) - (s1[0] - s0[0]) - (s1[1] - s0[1])

        def timed_analyse(self, items, inputs):
            t0 = time.monotonic()
            try:
                return analyse(self, items, inputs)
            finally:
                timeline.encode.append((t0, time.monotonic()))

        def timed_find(self, item, rgb, scale):
            t0 = time.thread_time()
            try:
                return find(self, item, rgb, scale)
            finally:
                with timeline.lock:
                    timeline.faces_thread_cpu += time.thread_time() - t0

        Job._run, ClipAnalyser.analyse = timed_run, timed_analyse
        face_module.FaceAnalyser._find = timed_find
        try:
            yield self
        finally:
            Job._run, ClipAnalyser.analyse = run, analyse
            face_module.FaceAnalyser._find = find

    def report(self, start: float, end: float, cores: int) -> dict:
        """Seconds of the run by what ran: the encoder, decode jobs beside it, and stretches
        with fewer decode jobs than cores while nothing encoded (cores idle for want of
        work)."""
        events = []
        for t0, t1 in self.decode:
            events += [(t0, 0, +1), (t1, 0, -1)]
        for t0, t1 in self.encode:
            events += [(t0, 1, +1), (t1, 1, -1)]
        events.sort()
        decoding = encoding = 0
        last = start
        out = {"encoding_s": 0.0, "decode_beside_encode_s": 0.0, "idle_core_s": 0.0}
        for t, kind, step in [*events, (end, 0, 0)]:
            span = max(0.0, min(t, end) - max(last, start))
            if encoding:
                out["encoding_s"] += span
                out["decode_beside_encode_s"] += span * decoding
            else:
                out["idle_core_s"] += span * max(0, cores - decoding)
            last = max(last, t)
            if kind == 0:
                decoding += step
            else:
                encoding += step
        out["decode_jobs_s"] = sum(t1 - t0 for t0, t1 in self.decode)
        out["decode_jobs_blocked_s"] = self.blocked
        return {k: round(v, 3) for k, v in out.items()}


def pipeline_run(model, mode: str, analyser, folder: Path, lib: Path, batch_size: int) -> dict:
    cores = len(os.sched_getaffinity(0))
    pids = worker_pids(analyser)
    timeline = Timeline()
    with Library.open(lib) as library:
        library.add_folder(folder)
        library.scan()
        w0 = {p: process_cpu_s(p) for p in pids}
        with timeline.patched(), CpuAccount() as acct:
            start = time.monotonic()
            stats = library.index_pending(model, batch_size=batch_size, analysers=[analyser])
            end = time.monotonic()
        pids_after = worker_pids(analyser)
        # Workers born during the run (a cold one) spent all their CPU in it.
        workers = sum(process_cpu_s(p) - w0.get(p, 0.0) for p in pids_after)
    report = acct.report()
    kinds = report["cpu_s_by_thread"]
    faces_here = timeline.faces_thread_cpu if mode.startswith("threads") else 0.0
    decode = kinds.get("decode", 0.0) - faces_here
    encode = kinds.get("native", 0.0) + kinds.get("pipeline", 0.0)
    # /proc/stat's busy time of the machine counts the worker processes: they are ours.
    others = max(0.0, report["other_processes_cpu_s"] - workers)
    wall = report["wall_s"]
    used = report["process_cpu_s"] + workers
    n = stats.indexed
    return {
        "photos_per_s": round(n / wall, 2),
        "indexed": n,
        "failed": stats.failed,
        "wall_s": wall,
        "cpu_s": {
            "decode": round(decode, 3),
            "faces": round(faces_here + workers, 3),
            "encode": round(encode, 3),
            "write": round(kinds.get("write", 0.0), 3),
            "other_threads_of_this_process": round(
                report["process_cpu_s"] - decode - faces_here - encode - kinds.get("write", 0.0),
                3,
            ),
            "other_processes": round(others, 3),
            "idle": round(max(0.0, cores * wall - used - others), 3),
            "core_seconds": round(cores * wall, 3),
        },
        "pipeline_cpu_s_per_photo": round(used / n, 4) if n else None,
        "timeline": timeline.report(start, end, cores),
        "worker_processes": len(pids_after),
        "workers_replaced": sorted(pids_after) != sorted(pids),
        "cores_left_to_us": round(max(0.0, cores - others / wall), 3) if wall else 0.0,
        "loadavg": report["loadavg_after"],
    }


def paste_faces(folder: Path) -> None:
    """Paste the shared face photos into the generated 12 MP scenes (two per photo, at a
    size that leaves each face over 100 px at the 1,200 px the detector sees)."""
    from PIL import Image

    faces_dir = ROOT.parent / "shared" / "data" / "faces"
    sources = [
        Image.open(faces_dir / name).convert("RGB")
        for name in ("obama.jpg", "biden.jpg", "two_people.jpg", "obama2.jpg")
        if (faces_dir / name).is_file()
    ]
    if not sources:
        raise SystemExit(f"{faces_dir}: no face photos to paste")
    for i, path in enumerate(sorted(folder.iterdir())):
        scene = Image.open(path).convert("RGB")
        for k in range(2):
            face = sources[(i + k) % len(sources)]
            face = face.resize((1400, round(1400 * face.height / face.width)))
            scene.paste(face, (300 + k * 2000, 600))
        scene.save(path, quality=90)


def run(
    model,
    encode_cpu_s_per_photo: float,
    paths,
    work: Path,
    *,
    photos: int,
    batch_size: int = 32,
    modes=MODES,
    cost_photos: int = 8,
    with_faces: bool = False,
    rounds: int = 1,
) -> dict:
    """Every mode of ``modes`` on the first ``photos`` of ``paths``, ``rounds`` times;
    the standalone costs on the first ``cost_photos`` of them."""
    cores = len(os.sched_getaffinity(0))
    subset = work / "faces-photos"
    subset.mkdir()
    for p in paths[:photos]:
        shutil.copyfile(p, subset / p.name)
    if with_faces:
        paste_faces(subset)
    files = sorted(subset.iterdir())
    out = {"photos": len(files), "with_faces": with_faces, "rounds": rounds, "runs": {}}
    # The modes take turns, so that each sees the same minutes of a shared machine's load.
    for r in range(rounds):
        for mode in modes:
            run_ = one_run(
                model, mode, files, subset, work / f"lib-faces-{mode}-{r}", batch_size, cost_photos
            )
            per_photo = run_["decode_and_faces_cpu_s_per_photo"] + encode_cpu_s_per_photo
            left = run_["cores_left_to_us"]
            fair = run_["pipeline_cpu_s_per_photo"]
            out["runs"].setdefault(mode, []).append(
                {
                    "encode_cpu_s_per_photo": round(encode_cpu_s_per_photo, 4),
                    "limit_cpu_s_per_photo": round(per_photo, 4),
                    "machine_limit_photos_per_s": round(cores / per_photo, 2),
                    "over_limit": round(run_["photos_per_s"] * per_photo / cores, 3),
                    "over_limit_of_cores_left": (
                        round(run_["photos_per_s"] * per_photo / left, 3) if left else None
                    ),
                    # Whether the limit is fair: the pass's own CPU-s per photo against the
                    # standalone figure it is made of (above 1: the stages cost each other).
                    "pipeline_over_standalone_cpu": round(fair / per_photo, 3) if fair else None,
                    **run_,
                }
            )
    out["summary_median"] = {
        mode: {
            key: _median([run[key] for run in runs])
            for key in (
                "photos_per_s",
                "over_limit",
                "over_limit_of_cores_left",
                "pipeline_over_standalone_cpu",
                "cores_left_to_us",
            )
        }
        for mode, runs in out["runs"].items()
    }
    return out


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else round((values[mid - 1] + values[mid]) / 2, 3)


def one_run(model, mode: str, files, folder: Path, lib: Path, batch_size: int, cost_photos: int):
    """One pass in ``mode`` with a new analyser (warmed first unless ``-cold``), and the
    standalone costs on the first ``cost_photos`` of ``files`` next to it."""
    analyser = analyser_for(mode)
    try:
        if mode.endswith("-cold"):
            # As a fresh analyser meets its first pass (the old bench's run): models
            # loaded, workers started inside it; the costs measured after it.
            startup = None
            run_ = pipeline_run(model, mode, analyser, folder, lib, batch_size)
            costs = standalone_costs(model, analyser, files[:cost_photos])
        else:
            startup = warm(analyser, files)
            costs = standalone_costs(model, analyser, files[:cost_photos])
            run_ = pipeline_run(model, mode, analyser, folder, lib, batch_size)
    finally:
        analyser.close()
    return {"startup_s": None if startup is None else round(startup, 3), **costs, **run_}


def main() -> None:
    from bench_index import ensure_int8, make_folder, package, per_photo_costs

    from photofind.clip.model import ClipModel
    from photofind.clip.package import read_manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="12 MP photos to index")
    parser.add_argument("--distinct", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--modes", type=lambda s: s.split(","), default=list(MODES), help="processes,threads"
    )
    parser.add_argument("--cost-photos", type=int, default=8, help="photos of the standalone costs")
    parser.add_argument("--with-faces", action="store_true", help="photos that show real faces")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each mode")
    args = parser.parse_args()
    folder = package("ViT-B-32")
    ensure_int8(folder, recheck=False)
    model = ClipModel(folder, read_manifest(folder), provider="cpu", variant="int8")
    result = {
        "benchmark": "faces_beside",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": loadavg(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = work / "photos12mp"
        make_folder(photos, args.photos, args.distinct, 4000, 3000)
        paths = sorted(photos.iterdir())
        costs = per_photo_costs(model, paths[: args.distinct], args.batch_size, 3)
        result["clip_per_photo"] = costs
        result["faces_beside_clip"] = run(
            model,
            costs["encode_cpu_s_per_photo"],
            paths,
            work,
            photos=args.photos,
            batch_size=args.batch_size,
            modes=args.modes,
            cost_photos=args.cost_photos,
            with_faces=args.with_faces,
            rounds=args.rounds,
        )
    result["machine"]["loadavg_at_end"] = loadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
