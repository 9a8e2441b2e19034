"""The GPU benchmark, prepared to run in one go on a lent machine (16 cores, one H200).

    PYTHONUNBUFFERED=1 python tests/bench/gpu_run.py [--photos 2048] [--batches 1,32,128,512]
                                                     [--small] [--out FILE]

Prints one JSON object (and writes it to ``--out``):
- ``environment``: cores, ONNX Runtime and its providers, the GPU, and why CUDA is not used
  where it is not (photofind's own reason, photofind.clip.providers).
- ``fp16``: the package's fp16 graphs, made by ``export/fp16.py`` (ONNX Runtime's float16
  conversion keeping float32 inputs and outputs) and checked against fp32 by photofind's own
  check (photofind.clip.fp16_check: on CUDA where it runs, with the speed-up; else on the
  CPU), as ``photofind models install --fp16`` makes them.
- ``encoder``: the raw table, image-encoder images/s per batch size of the ViT-B/32
  random-weight package through bare ONNX Runtime sessions on each path there is: CUDA fp32
  and fp16 through I/O binding (inputs copied to the GPU once per batch, outputs bound to
  the host), and the CPU fp32 and int8 at the small batches. A path that cannot run says why
  instead of a figure.
- ``photofind``: what photofind itself chose here (``load_model(precision="fast")``: the
  provider, the variant, I/O binding, and the batch and decode threads of
  photofind.clip.pipeline_plan), and ``photofind_encoder``: images/s through its
  ``ClipModel.encode_pixels`` per batch size, with I/O binding on and off side by side at the
  planned batch (the binding's worth, measured).
- ``decode``: photos/s decoding 12-megapixel JPEGs to CLIP tensors (the fast path: libjpeg
  scaled decode) on a pool of one thread per core: the bound of end-to-end indexing once
  the encoder is on a GPU.
- ``end_to_end``: photos/s through photofind's own indexing pipeline
  (``Library.index_pending`` with the model photofind chose and its planned batch and decode
  pool: scan, decode pool, batches, encoder, writer) on those JPEGs, its ratio to the decode
  bound, and CPU-s per stage (tests/bench/cpu_account.py); where the pipeline's own packages
  are missing, the same stages without the catalog (decode pool + batches + encoder).
- ``end_to_end_gpu_standin`` (where ONNX Runtime has no CUDA but torch sees a GPU, as on
  the lent machine's image): the same pipeline with photofind's plan for a GPU encoder, the
  encoder a torch fp16 stand-in (tests/bench/gpu_standin.py): the pipeline's decode bound.
- ``torch_reference`` (where torch sees a GPU): the same architecture in torch fp16 on the
  GPU, the device's ceiling for this graph; not photofind's path, which never runs torch.

It runs on a machine without a GPU too (the CUDA parts skipped with their reason): here,
``--small`` runs it in a minute as a test that the script works. On the lent machine, run
it through tests/bench/gpu_run.sh, which installs the few small packages photofind needs
that the machine's image lacks (carried in .cache/whl).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import onnxruntime as ort  # noqa: E402
from cpu_account import CpuAccount, loadavg  # noqa: E402

from photofind.clip.providers import CUDA, _driver_missing_reason  # noqa: E402

if TYPE_CHECKING:
    from photofind.clip.pipeline_plan import Plan

CACHE = ROOT / ".cache" / "bench"


def log(*parts) -> None:
    print("[gpu_run]", *parts, file=sys.stderr, flush=True)


def environment() -> dict:
    env = {
        "cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cuda_unusable_because": _driver_missing_reason(),
        "loadavg": loadavg(),
    }
    if shutil.which("nvidia-smi"):
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        env["gpu"] = done.stdout.strip() or done.stderr.strip()
    return env


def vocab() -> Path:
    """CLIP's BPE vocabulary: carried beside the wheels (.cache/whl) where open_clip is not
    installed (the GPU machine), else the installed one."""
    carried = ROOT / ".cache" / "whl" / "bpe_simple_vocab_16e6.txt.gz"
    if carried.is_file():
        return carried
    from export.vocab import find_clip_vocab

    return find_clip_vocab()


def package(arch: str) -> Path:
    """The random-weight package of ``arch`` (bench_index's, in the same cache), with the
    vocabulary carried to the lent machine."""
    from bench_index import package as cached_package

    return cached_package(arch, vocab())


def prepare_fp16(folder: Path, count: int) -> dict:
    """The package's fp16 graphs, made and checked by photofind's tools (export/fp16.py)
    unless there already, checked where they run now (CUDA where it works)."""
    from photofind.clip.package import read_manifest
    from photofind.clip.providers import planned_provider
    from photofind.clip.variants import FP16, variant_record

    try:
        from export import fp16
    except ImportError as exc:
        return {"skipped": f"export/fp16.py cannot run here: {exc}"}
    spec = read_manifest(folder)
    t0 = time.perf_counter()
    made = False
    if "visual_fp16" not in spec.files:
        try:
            fp16.add_fp16(folder)
        except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
            return {"skipped": f"float16 conversion failed: {type(exc).__name__}: {exc}"}
        made = True
    converted_s = time.perf_counter() - t0
    record = variant_record(read_manifest(folder), FP16) or {}
    check = record.get("check")
    where = planned_provider("auto").name
    if made or not isinstance(check, dict) or check.get("provider") != where:
        check = fp16.check(folder, count=count)
    return {
        "made_here": made,
        "convert_s": round(converted_s, 1),
        "check": {k: v for k, v in check.items() if k != "thresholds"},
    }


def session(path: Path, provider: str, threads: int):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    providers = [CUDA, "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    s = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if provider == "cuda" and s.get_providers()[0] != CUDA:
        raise RuntimeError("ONNX Runtime did not start its CUDA provider (libraries missing?)")
    return s


def run_bound(s, x: np.ndarray, cuda: bool) -> np.ndarray:
    """One batch: with I/O binding on CUDA (the input copied to the GPU once, the output
    bound to the host), a plain run on the CPU."""
    name, out = s.get_inputs()[0].name, s.get_outputs()[0].name
    if not cuda:
        return s.run(None, {name: x})[0]
    binding = s.io_binding()
    binding.bind_cpu_input(name, x)
    binding.bind_output(out, "cpu")
    s.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]


def images_per_s(s, size: int, batch: int, cuda: bool, seconds: float) -> float:
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    run_bound(s, x, cuda)  # warm-up (CUDA: kernels chosen, memory allocated)
    n, t0 = 0, time.perf_counter()
    while True:
        run_bound(s, x, cuda)
        n += batch
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return round(n / elapsed, 1)


def encoder(folder: Path, spec, args, cores: int) -> dict:
    out: dict = {}
    size = spec.image_size
    visual = folder / spec.files["visual"].path
    paths = {"cpu_fp32": (visual, "cpu")}
    if "visual_int8" in spec.files:
        paths["cpu_int8"] = (folder / spec.files["visual_int8"].path, "cpu")
    cuda_reason = _driver_missing_reason()
    if cuda_reason is None:
        paths["cuda_fp32"] = (visual, "cuda")
        if "visual_fp16" in spec.files:
            paths["cuda_fp16"] = (folder / spec.files["visual_fp16"].path, "cuda")
        else:
            out["cuda_fp16"] = {"skipped": "the package has no fp16 graph (see fp16)"}
    else:
        out["cuda"] = {"skipped": f"CUDA not used: {cuda_reason}"}
    for name, (graph, provider) in paths.items():
        log("encoder", name)
        try:
            s = session(graph, provider, cores)
        except Exception as exc:  # noqa: BLE001
            out[name] = {"skipped": str(exc)}
            continue
        cuda = provider == "cuda"
        batches = args.batches if cuda else [b for b in args.batches if b <= args.cpu_max_batch]
        out[name] = {
            str(b): images_per_s(s, size, b, cuda, args.seconds if cuda else args.cpu_seconds)
            for b in batches
        }
        del s
    return out


def make_photos(folder: Path, count: int, distinct: int) -> list[Path]:
    """``count`` 12 MP JPEGs: ``distinct`` generated in parallel, the rest copies."""
    from images import write_photo_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        originals = list(
            pool.map(
                lambda i: write_photo_jpeg(folder / f"photo_{i:05d}.jpg", seed=i),
                range(min(distinct, count)),
            )
        )
    for i in range(len(originals), count):
        shutil.copyfile(originals[i % len(originals)], folder / f"photo_{i:05d}.jpg")
    return sorted(folder.iterdir())


def decode_rate(model, paths: list[Path], cores: int) -> dict:
    with CpuAccount() as acct, ThreadPoolExecutor(cores) as pool:
        list(pool.map(model.preprocess, paths))
    report = acct.report()
    return {
        "threads": cores,
        "photos_per_s": round(len(paths) / report["wall_s"], 1),
        "cpu_s_per_photo": round(report["process_cpu_s"] / len(paths), 4),
        "cores_busy": report["cores_busy"],
        "other_processes_cpu_s": report["other_processes_cpu_s"],
    }


def encode_cpu_per_photo(model, paths, batch: int) -> float:
    """CPU-s per photo of the encoder alone, in the pipeline's batch."""
    tensors = [model.preprocess(p) for p in paths]
    x = np.stack((tensors * (batch // len(tensors) + 1))[:batch])
    model.encode_pixels(x)
    t0 = time.process_time()
    for _ in range(2):
        model.encode_pixels(x)
    return (time.process_time() - t0) / (2 * batch)


def photofind_choice(folder: Path, cores: int):
    """The model photofind itself loads here for indexing (precision "fast": int8 on the
    CPU, fp16 on CUDA, where their checks passed), its image session open, and its plan."""
    from photofind.clip import load_model
    from photofind.clip.pipeline_plan import plan_for

    model = load_model(folder, provider="auto", precision="fast")
    size = model.spec.image_size
    model.encode_pixels(np.zeros((1, 3, size, size), np.float32))  # the provider settles
    plan = plan_for(model, cores)
    info = model.info
    return (
        model,
        plan,
        {
            "provider": info.provider,
            "provider_reason": info.provider_reason,
            "variant": model.variant,
            "io_binding": model.io_binding,
            "plan": {
                "batch_size": plan.batch_size,
                "decode_workers": plan.decode_workers,
                "takes_turns": plan.takes_turns,
                "why": plan.why,
            },
        },
    )


def photofind_encoder(model, folder: Path, plan: Plan, args) -> dict:
    """Images/s through photofind's ClipModel per batch size; at the planned batch, with
    I/O binding on and off side by side (alternating rounds, the best of each)."""
    from photofind.clip.model import ClipModel

    cuda = model.info.provider == "cuda"
    seconds = args.seconds if cuda else args.cpu_seconds
    size = model.spec.image_size
    batches = args.batches if cuda else [b for b in args.batches if b <= args.cpu_max_batch]
    out: dict = {"variant": model.variant, "io_binding": model.io_binding, "images_per_s": {}}
    rng = np.random.default_rng(0)
    for b in batches:
        x = rng.standard_normal((b, 3, size, size), dtype=np.float32)
        out["images_per_s"][str(b)] = rate(model.encode_pixels, x, seconds)
    b = plan.batch_size
    x = rng.standard_normal((b, 3, size, size), dtype=np.float32)
    both = {
        on: ClipModel(
            folder, model.spec, provider=model.info.provider, variant=model.variant, io_binding=on
        )
        for on in (True, False)
    }
    best = {True: 0.0, False: 0.0}
    for _ in range(3):
        for on, m in both.items():
            best[on] = max(best[on], rate(m.encode_pixels, x, seconds / 2))
    out["binding_at_planned_batch"] = {
        "batch": b,
        "bound_images_per_s": best[True],
        "plain_images_per_s": best[False],
        "bound_over_plain": round(best[True] / best[False], 3) if best[False] else None,
    }
    return out


def rate(encode, x: np.ndarray, seconds: float) -> float:
    encode(x)  # warm-up (CUDA: kernels chosen, memory allocated)
    n, t0 = 0, time.perf_counter()
    while True:
        encode(x)
        n += len(x)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return round(n / elapsed, 1)


def end_to_end(model, plan: Plan, photos: Path, work: Path, lib: str = "lib") -> dict:
    """photofind's own pipeline, with the batch and decode pool it plans for ``model``."""
    try:
        from photofind.library.library import Library
    except ImportError as exc:
        paths = sorted(photos.iterdir())
        return stages_without_catalog(model, paths, plan.batch_size, plan.decode_workers, exc)
    with Library.open(work / lib) as library:
        library.add_folder(photos)
        library.scan()
        with CpuAccount() as acct:
            # No batch size or decode threads given: photofind's own plan decides.
            stats = library.index_pending(model)
    report = acct.report()
    return {
        "pipeline": "photofind's Library.index_pending (its own plan)",
        "batch": plan.batch_size,
        "decode_workers": plan.decode_workers,
        "photos_per_s": round(stats.indexed / report["wall_s"], 1),
        "indexed": stats.indexed,
        "failed": stats.failed,
        **report,
    }


def stages_without_catalog(model, paths, batch: int, cores: int, why) -> dict:
    """The pipeline's stages without the catalog: a decode pool of one thread per core
    running ahead of the encoder by two batches."""
    with CpuAccount() as acct, ThreadPoolExecutor(cores) as pool:
        pending = [pool.submit(model.preprocess, p) for p in paths]
        for start in range(0, len(pending), batch):
            model.encode_pixels(np.stack([f.result() for f in pending[start : start + batch]]))
    report = acct.report()
    return {
        "pipeline": f"decode pool + batches + encoder, no catalog ({why})",
        "batch": batch,
        "decode_workers": cores,
        "photos_per_s": round(len(paths) / report["wall_s"], 1),
        **report,
    }


def standin_end_to_end(model, work: Path, cores: int, decode: dict, args) -> dict:
    """photofind's pipeline with a GPU encoder where ONNX Runtime has no CUDA provider: the
    torch fp16 stand-in (tests/bench/gpu_standin.py), with the plan for a GPU encoder."""
    from gpu_standin import stand_in

    from photofind.clip.pipeline_plan import plan_for

    try:
        standin, why = stand_in(model)
        if standin is None:
            return {"skipped": why}
        plan = plan_for(standin, cores)
        size = model.spec.image_size
        x = np.random.default_rng(0).standard_normal((plan.batch_size, 3, size, size), np.float32)
        encoder_rate = rate(standin.encode_pixels, x, args.seconds)
        e2e = end_to_end(standin, plan, work / "photos", work, lib="lib-standin")
    except Exception as exc:  # noqa: BLE001 - the figures so far still print
        return {"failed": f"{type(exc).__name__}: {exc}"}
    return {
        "encoder": "torch fp16 on the GPU, a stand-in: photofind itself runs ONNX Runtime",
        "encoder_images_per_s_at_batch": encoder_rate,
        "plan_why": plan.why,
        **e2e,
        "of_decode_bound": round(e2e["photos_per_s"] / decode["photos_per_s"], 3),
    }


def torch_reference(args) -> dict:
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"skipped": "torch sees no GPU"}
    from export.model import ARCHS, random_init_model

    model = random_init_model(ARCHS["ViT-B-32"], seed=0).eval().half().cuda()
    out = {}
    with torch.inference_mode():
        for b in args.batches:
            x = torch.randn(b, 3, 224, 224, device="cuda", dtype=torch.half)
            model.encode_image(x)
            torch.cuda.synchronize()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                model.encode_image(x)
                n += b
            torch.cuda.synchronize()
            out[str(b)] = round(n / (time.perf_counter() - t0), 1)
    return {"fp16_images_per_s": out, "device": torch.cuda.get_device_name()}


def save(result: dict, out: Path | None) -> None:
    """The figures so far, to ``--out`` (a stop at the call's limit keeps them)."""
    if out:
        out.write_text(json.dumps(result) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2048, help="12 MP JPEGs end to end")
    parser.add_argument("--distinct", type=int, default=16)
    parser.add_argument("--batches", default="1,8,32,128,256,512")
    parser.add_argument("--cpu-max-batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="per GPU measurement")
    parser.add_argument("--cpu-seconds", type=float, default=2.0)
    parser.add_argument("--check-photos", type=int, default=64, help="the fp16 check's set")
    parser.add_argument("--small", action="store_true", help="a quick run (CPU machines)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.small:
        args.photos, args.distinct, args.batches = 16, 4, "1,8"
        args.seconds = args.cpu_seconds = 0.5
        args.check_photos = 16
    args.batches = [int(b) for b in args.batches.split(",")]
    CACHE.mkdir(parents=True, exist_ok=True)

    from photofind.clip.package import read_manifest

    t_start = time.perf_counter()
    result: dict = {"benchmark": "gpu_run", "environment": environment()}
    cores = result["environment"]["cores"]
    log("package")
    folder = package("ViT-B-32")
    log("fp16 graphs")
    result["fp16"] = prepare_fp16(folder, args.check_photos)
    save(result, args.out)
    spec = read_manifest(folder)
    result["encoder"] = encoder(folder, spec, args, cores)
    save(result, args.out)

    log("photofind's choice")
    model, plan, result["photofind"] = photofind_choice(folder, cores)
    log("photofind's encoder")
    try:
        result["photofind_encoder"] = photofind_encoder(model, folder, plan, args)
    except Exception as exc:  # noqa: BLE001 - the figures so far still print
        result["photofind_encoder"] = {"failed": f"{type(exc).__name__}: {exc}"}
    save(result, args.out)
    cuda = model.info.provider == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log("photos")
        paths = make_photos(work / "photos", args.photos, args.distinct)
        log("decode")
        result["decode"] = decode_rate(model, paths, cores)
        save(result, args.out)
        log("end to end")
        try:
            e2e = end_to_end(model, plan, work / "photos", work)
            e2e["of_decode_bound"] = round(
                e2e["photos_per_s"] / result["decode"]["photos_per_s"], 3
            )
            if not cuda:
                # On the CPU the limit is the cores over decode + encode CPU-s per photo.
                per_photo = result["decode"]["cpu_s_per_photo"] + encode_cpu_per_photo(
                    model, paths[: args.distinct], plan.batch_size
                )
                e2e["machine_limit_photos_per_s"] = round(cores / per_photo, 1)
                e2e["over_limit"] = round(e2e["photos_per_s"] * per_photo / cores, 3)
            result["end_to_end"] = e2e
        except Exception as exc:  # noqa: BLE001 - the figures so far still print
            result["end_to_end"] = {"failed": f"{type(exc).__name__}: {exc}"}
        save(result, args.out)
        if not cuda:
            log("end to end, torch stand-in encoder on the GPU")
            result["end_to_end_gpu_standin"] = standin_end_to_end(
                model, work, cores, result["decode"], args
            )
            save(result, args.out)
    log("torch reference")
    result["torch_reference"] = torch_reference(args)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
