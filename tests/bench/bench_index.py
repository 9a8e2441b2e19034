"""Indexing benchmark: the pipeline next to its machine's limit, fp32 and int8, one run.

    python tests/bench/bench_index.py [--photos 48] [--rounds 2] [--faces] [--memory]
                                      [--scale 1000,20000]

Prints one JSON object:
- ``throughput``: photos/s indexing a folder of 12-megapixel JPEGs with the ViT-B/32
  random-weight package through the real pipeline (scan, decode pool, batches, writer), for
  the fp32 and the int8 encoders, each with the decode threads waiting while the CPU encoder
  runs (the default) and without (as before), taking turns ``--rounds`` times so that each
  sees the same minutes of a shared machine's load. Also the encoder alone on pre-decoded
  tensors, a naive loop (full decode, preprocess, encode one at a time), and photofind's
  check of the int8 graphs (cosines, agreement, speed-up).

  ``per_photo`` holds the *standalone* costs of each variant: decode-and-preprocess CPU-s
  per photo on one thread (the fast path), and the encoder's CPU-s per photo alone on
  pre-decoded tensors in the pipeline's batch.

  Each pipeline run reports, from /proc (tests/bench/cpu_account.py):
  - ``core_time``: where each core's time went, as fractions of cores x wall that sum to 1:
    ``decode_threads``, ``encoder_threads`` (ONNX Runtime's intra-op threads),
    ``pipeline_thread`` (batches and calls the session, which runs part of each operator on
    it), ``writer``, ``this_process_other`` (the sampler and unsampled threads),
    ``other_processes`` (the rest of a shared machine) and ``idle``; the same in CPU-s
    beside it (``*_cpu_s``, ``core_seconds``).
  - ``decode_cpu_s_per_photo`` and ``encode_cpu_s_per_photo`` (encoder threads + pipeline
    thread): the in-run costs.
  - ``limit_photos_per_s`` = cores / (in-run decode + in-run encode CPU-s per photo): what
    this run's own work would reach with every core busy on it; ``over_limit`` =
    photos_per_s / limit_photos_per_s, that is the share of cores x wall spent decoding and
    encoding, at most 1. What it misses is the rest of ``core_time`` (idle, writer, other
    processes). ``over_limit_of_cores_left``: the same against the cores other processes
    left this run (cores x wall - other processes' CPU-s).
  - ``strict_limit_photos_per_s`` = cores / (the cheaper of the standalone and the in-run
    cost of decode, plus the same of encode): the cost of the work done as cheaply as this
    run saw it done anywhere, so ``over_strict_limit`` <= ``over_limit``; it also counts
    what a stage lost to running beside the other (decode threads slower under contention
    than alone, say). A limit from the standalone costs alone is not reported: the encoder
    alone has been measured at more CPU per photo than inside the pipeline (fp32 on a shared
    2-core machine: 0.113 against 0.073 CPU-s), which made that limit too low and the ratio
    to it read above 1.
- ``faces_beside_clip`` (``--faces``): CLIP and dlib's faces in one pass, against the limit
  of both, the faces in worker processes (as the app and the CLI run them) and on the
  decode threads; per run where each core's time went (tests/bench/faces_beside.py).
- ``memory`` (``--memory``): in fresh processes, the resident memory of the image and text
  sessions of the fp32 and int8 variants.
- ``scale``: for each folder size, in a fresh process, the model's own resident memory,
  the peak during indexing and the difference; then the time of a second, no-change run.
  Thousands of 12 MP photos would take hours to encode here, so the scale runs use small
  JPEGs and the tiny-test architecture: what they measure is the pipeline's memory, which
  must not grow with the folder.
"""

from __future__ import annotations

import argparse
import contextlib
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

from cpu_account import CpuAccount, loadavg  # noqa: E402
from images import write_photo_jpeg  # noqa: E402

from photofind.clip import load_model  # noqa: E402
from photofind.clip.model import ClipModel  # noqa: E402
from photofind.clip.package import read_manifest  # noqa: E402
from photofind.library.decode_pool import DecodePool  # noqa: E402
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


def package(arch: str, vocab_path: Path | None = None) -> Path:
    """The random-weight package of ``arch``, built once into the cache by export/ (torch);
    ``vocab_path``: the BPE vocabulary (default: export's search for it)."""
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
            vocab_path=vocab_path or find_clip_vocab(),
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


@contextlib.contextmanager
def without_hold():
    """The pipeline as it was before the decode threads waited for the CPU encoder (the
    A/B of that fix, measured in the same run)."""
    saved = DecodePool.hold
    DecodePool.hold = lambda self: None
    try:
        yield
    finally:
        DecodePool.hold = saved


def ensure_int8(folder: Path, recheck: bool = True) -> dict:
    """The package's int8 graphs (export/quantize.py), made once into the cached package,
    and photofind's check of them (run again unless ``recheck`` is false: its speed-up is
    this run's)."""
    from export.quantize import add_int8, check

    spec = read_manifest(folder)
    if "visual_int8" not in spec.files:
        add_int8(folder)
    elif not recheck:
        return spec.extra["variants"]["int8"]["check"]
    return check(folder)


def stages(acct: dict, photos: int) -> dict:
    """Where each core's time went in one run: CPU-s of the decode threads, of the encoder
    (ONNX Runtime's threads and the pipeline thread that runs the session), of the writer,
    of other processes of the machine, and cores idle; the same as fractions of cores x wall
    (``core_time``); and the in-run decode and encode CPU-s per photo."""
    kinds = acct["cpu_s_by_thread"]
    encoder = kinds.get("native", 0.0)
    pipeline = kinds.get("pipeline", 0.0)
    out = {
        "decode_cpu_s": round(kinds.get("decode", 0.0), 3),
        "encoder_threads_cpu_s": round(encoder, 3),
        "pipeline_thread_cpu_s": round(pipeline, 3),
        "encode_cpu_s": round(encoder + pipeline, 3),
        "write_cpu_s": round(kinds.get("write", 0.0), 3),
        "other_processes_cpu_s": acct["other_processes_cpu_s"],
        "idle_s": acct["idle_s"],
        "core_seconds": round(acct["cores"] * acct["wall_s"], 3),
        "core_time": acct["core_time"],
    }
    out["decode_cpu_s_per_photo"] = round(kinds.get("decode", 0.0) / photos, 4)
    out["encode_cpu_s_per_photo"] = round((encoder + pipeline) / photos, 4)
    return out


def against_limits(run: dict, standalone: dict, cores: int) -> dict:
    """The run against its machine's limits (the module docstring defines each field):
    the limit of the run's own per-photo costs, and the stricter one of the cheaper of
    each stage's standalone and in-run costs."""
    decode, encode = run["decode_cpu_s_per_photo"], run["encode_cpu_s_per_photo"]
    in_run = decode + encode
    cheapest = min(decode, standalone["decode_cpu_s_per_photo"]) + min(
        encode, standalone["encode_cpu_s_per_photo"]
    )
    left = run["cores_left_to_us"]
    rate = run["photos_per_s"]
    return {
        "limit_photos_per_s": round(cores / in_run, 2) if in_run else None,
        "over_limit": round(rate * in_run / cores, 3),
        "over_limit_of_cores_left": round(rate * in_run / left, 3) if left else None,
        "strict_limit_photos_per_s": round(cores / cheapest, 2) if cheapest else None,
        "over_strict_limit": round(rate * cheapest / cores, 3),
    }


def core_time_line(run: dict) -> str:
    """One run's ``core_time`` as a line for the terminal (the JSON has it too)."""
    parts = ", ".join(f"{k} {v:.1%}" for k, v in run["core_time"].items())
    return f"{run['photos_per_s']} photos/s; cores x wall: {parts}"


def pipeline_run(model, folder: Path, lib: Path, batch_size: int, analysers=()) -> dict:
    with Library.open(lib) as library:
        library.add_folder(folder)
        library.scan()
        with CpuAccount() as acct:
            stats = library.index_pending(model, batch_size=batch_size, analysers=analysers)
    report = acct.report()
    return {
        "photos_per_s": round(stats.indexed / report["wall_s"], 2),
        "indexed": stats.indexed,
        **stages(report, stats.indexed),
        "cores_left_to_us": report["cores_left_to_us"],
        "loadavg": report["loadavg_after"],
    }


def per_photo_costs(model, paths, batch_size: int, rounds: int) -> dict:
    """Decode-and-preprocess CPU-s per photo (one thread, the fast path) and the encoder's
    CPU-s per photo and photos/s alone on pre-decoded tensors, in the pipeline's batch."""
    t0 = time.process_time()
    tensors = [model.preprocess(p) for p in paths]
    decode_cpu = (time.process_time() - t0) / len(paths)
    batch = np.stack((tensors * (batch_size // len(tensors) + 1))[:batch_size])
    model.encode_pixels(batch)  # warm-up
    with CpuAccount() as acct:
        for _ in range(rounds):
            model.encode_pixels(batch)
    report = acct.report()
    n = rounds * len(batch)
    return {
        "decode_cpu_s_per_photo": round(decode_cpu, 4),
        "encode_cpu_s_per_photo": round(report["process_cpu_s"] / n, 4),
        "encoder_alone_photos_per_s": round(n / report["wall_s"], 2),
        "encoder_alone_cores_left_to_us": report["cores_left_to_us"],
    }


def throughput(args, work: Path) -> dict:
    folder = package("ViT-B-32")
    int8_check = ensure_int8(folder, recheck=not args.no_check)
    spec = read_manifest(folder)
    models = {
        "fp32": ClipModel(folder, spec, provider="cpu", variant="fp32"),
        "int8": ClipModel(folder, spec, provider="cpu", variant="int8"),
    }
    photos = work / "photos12mp"
    make_folder(photos, args.photos, args.distinct, 4000, 3000)
    paths = sorted(photos.iterdir())
    cores = len(os.sched_getaffinity(0))
    sample = paths[: args.distinct]
    costs = {
        v: per_photo_costs(m, sample, args.batch_size, args.encoder_rounds)
        for v, m in models.items()
    }

    # The naive loop: full decode, preprocess, encode one photo at a time (fp32).
    naive_paths = paths[: args.naive_photos]
    t0 = time.perf_counter()
    for p in naive_paths:
        models["fp32"].encode_pixels(models["fp32"].preprocess(p, fast=False)[None])
    naive = len(naive_paths) / (time.perf_counter() - t0) if naive_paths else None

    # The pipeline, end to end on a fresh library each time; the configurations take
    # turns, so each sees the machine's load of the same minutes.
    runs: dict[str, list] = {}
    configs = [(v, hold) for v in models for hold in (True, False)]
    for r in range(args.rounds):
        for variant, hold in configs:
            name = f"{variant}{'' if hold else '_without_hold'}"
            with contextlib.nullcontext() if hold else without_hold():
                run = pipeline_run(
                    models[variant], photos, work / f"lib-{name}-{r}", args.batch_size
                )
            run.update(against_limits(run, costs[variant], cores))
            runs.setdefault(name, []).append(run)
            print(f"{name} round {r}: {core_time_line(run)}", file=sys.stderr)

    def best(name: str) -> dict:
        return max(runs[name], key=lambda run: run["over_limit_of_cores_left"] or 0)

    summary = {
        name: {
            "photos_per_s": best(name)["photos_per_s"],
            "over_limit": best(name)["over_limit"],
            "over_strict_limit": best(name)["over_strict_limit"],
            "over_limit_of_cores_left": best(name)["over_limit_of_cores_left"],
            "core_time": best(name)["core_time"],
        }
        for name in runs
    }
    out = {
        "photos": len(paths),
        "photo_megapixels": 12.0,
        "cores": cores,
        "per_photo": costs,
        "naive_loop_photos_per_s": round(naive, 2) if naive else None,
        "int8_encoder_speedup": round(
            costs["int8"]["encoder_alone_photos_per_s"]
            / costs["fp32"]["encoder_alone_photos_per_s"],
            3,
        ),
        "int8_check": int8_check,
        "summary_best_round": summary,
        "runs": runs,
    }
    if args.faces:
        out["faces_beside_clip"] = faces_beside(args, models["int8"], costs["int8"], paths, work)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def faces_beside(args, model, costs: dict, paths, work: Path) -> dict:
    """CLIP and the face analyser in one pass, against the limit of both, cores /
    (decode-and-faces + encode CPU-s per photo): the faces in worker processes as the app
    and the CLI find them, and on the decode threads for comparison (faces_beside.py)."""
    import faces_beside as fb

    return fb.run(
        model,
        costs["encode_cpu_s_per_photo"],
        paths,
        work,
        photos=args.face_photos,
        batch_size=args.batch_size,
        rounds=args.rounds,
    )


def memory_child(variant: str) -> None:
    """In a fresh process: resident memory of the package's sessions, opened as indexing
    does (the image session alone, then the text one beside it) or, with a ``text-`` prefix,
    as a text search does (the text session alone)."""
    text_only = variant.startswith("text-")
    variant = variant.removeprefix("text-")
    # The package the parent built: building imports torch, whose memory is not the app's.
    folder = CACHE / "vit-b-32-random-seed0"
    spec = read_manifest(folder)
    base = rss_mb()
    model = ClipModel(folder, spec, provider="cpu", variant=variant)
    loaded = rss_mb()
    out = {"variant": variant, "package_opened_mb": round(loaded - base, 1)}
    if text_only:
        model.encode_texts(["a photo of a dog"])
        out["text_session_alone_mb"] = round(rss_mb() - loaded, 1)
    else:
        model.encode_pixels(np.zeros((1, 3, spec.image_size, spec.image_size), np.float32))
        visual = rss_mb()
        model.encode_texts(["a photo of a dog"])
        out["image_session_mb"] = round(visual - loaded, 1)
        out["text_session_beside_it_mb"] = round(rss_mb() - visual, 1)
        out["both_mb"] = round(rss_mb() - base, 1)
    out["sessions_open"] = sorted(model.sessions_open)
    print(json.dumps(out))


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
    parser.add_argument("--rounds", type=int, default=2, help="turns of each pipeline setup")
    parser.add_argument("--faces", action="store_true", help="also faces beside CLIP")
    parser.add_argument("--face-photos", type=int, default=24)
    parser.add_argument("--memory", action="store_true", help="RSS per session, fp32 and int8")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-check", action="store_true", help="use the int8 check recorded by an earlier run"
    )
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
    if args.memory_child:
        memory_child(args.memory_child)
        return

    result = {
        "benchmark": "index",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": loadavg(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            result["throughput"] = throughput(args, work)
        if args.memory:
            result["memory"] = [
                json.loads(
                    subprocess.run(
                        [sys.executable, __file__, "--memory-child", variant],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.splitlines()[-1]
                )
                for variant in ("fp32", "int8", "text-fp32", "text-int8")
            ]
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
    result["machine"]["loadavg_at_end"] = loadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
