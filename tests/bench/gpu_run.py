"""The GPU benchmark, prepared to run in one go on a lent machine (16 cores, one H200).

    PYTHONUNBUFFERED=1 python tests/bench/gpu_run.py [--photos 512] [--batches 1,32,128,512]
                                                     [--small] [--out FILE]

Prints one JSON object (and writes it to ``--out``):
- ``environment``: cores, ONNX Runtime and its providers, the GPU, and why CUDA is not used
  where it is not (photofind's own reason, photofind.clip.providers).
- ``encoder``: image-encoder images/s per batch size of the ViT-B/32 random-weight package
  on each path there is: CUDA fp32 and fp16 (ONNX Runtime's float16 conversion keeping
  float32 inputs and outputs) through I/O binding (inputs copied to the GPU once per batch,
  outputs bound to the host), and the CPU fp32 and int8 at the small batches. A path that
  cannot run says why instead of a figure.
- ``decode``: photos/s decoding 12-megapixel JPEGs to CLIP tensors (the fast path: libjpeg
  scaled decode) on a pool of one thread per core: the bound of end-to-end indexing once
  the encoder is on a GPU.
- ``end_to_end``: photos/s through photofind's indexing pipeline (scan, decode pool sized
  to the cores, batches, writer) on those JPEGs, with the fastest encoder path there is,
  and CPU-s per stage (tests/bench/cpu_account.py); where the pipeline's own packages are
  missing, the same stages without the catalog (decode pool + batches + encoder).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import onnxruntime as ort  # noqa: E402
from cpu_account import CpuAccount, loadavg  # noqa: E402

from photofind.clip.providers import CUDA, _driver_missing_reason  # noqa: E402

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
    """The random-weight package of ``arch`` (bench_index's cache; built by export/, torch)."""
    from export.model import ARCHS, random_init_model
    from export.onnx_export import export_package

    out = CACHE / f"{arch.lower()}-random-seed0"
    if not (out / "model.json").is_file():
        export_package(
            random_init_model(ARCHS[arch], seed=0).eval(),
            ARCHS[arch],
            out,
            name=f"{arch}-random-seed0",
            arch=arch,
            vocab_path=vocab(),
            description=f"{arch} architecture with random weights, for benchmarks",
        )
    return out


def fp16_graph(source: Path, target: Path) -> Path:
    """The graph in float16, its inputs and outputs kept float32 (ONNX Runtime's converter;
    LayerNorm and Softmax stay float32 inside where the converter blocks them)."""
    if target.is_file():
        return target
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target


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
        try:
            paths["cuda_fp16"] = (fp16_graph(visual, folder / "visual_fp16.onnx"), "cuda")
        except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
            out["cuda_fp16"] = {"skipped": f"float16 conversion failed: {exc}"}
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


def end_to_end(model, photos: Path, work: Path, batch: int, cores: int) -> dict:
    try:
        from photofind.library.library import Library
    except ImportError as exc:
        return stages_without_catalog(model, sorted(photos.iterdir()), batch, cores, exc)
    with Library.open(work / "lib") as library:
        library.add_folder(photos)
        library.scan()
        with CpuAccount() as acct:
            stats = library.index_pending(model, batch_size=batch, decode_workers=cores)
    report = acct.report()
    return {
        "pipeline": "photofind's Library.index_pending",
        "batch": batch,
        "decode_workers": cores,
        "photos_per_s": round(stats.indexed / report["wall_s"], 1),
        "indexed": stats.indexed,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=512, help="12 MP JPEGs end to end")
    parser.add_argument("--distinct", type=int, default=16)
    parser.add_argument("--batches", default="1,8,32,128,256,512")
    parser.add_argument("--cpu-max-batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="per GPU measurement")
    parser.add_argument("--cpu-seconds", type=float, default=2.0)
    parser.add_argument("--small", action="store_true", help="a quick run (CPU machines)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.small:
        args.photos, args.distinct, args.batches = 16, 4, "1,8"
        args.seconds = args.cpu_seconds = 0.5
    args.batches = [int(b) for b in args.batches.split(",")]
    CACHE.mkdir(parents=True, exist_ok=True)

    from photofind.clip.model import ClipModel
    from photofind.clip.package import read_manifest
    from photofind.clip.variants import INT8, int8_passed

    t_start = time.perf_counter()
    result: dict = {"benchmark": "gpu_run", "environment": environment()}
    cores = result["environment"]["cores"]
    log("package")
    folder = package("ViT-B-32")
    spec = read_manifest(folder)
    result["encoder"] = encoder(folder, spec, args, cores)

    cuda = _driver_missing_reason() is None
    provider = "cuda" if cuda else "cpu"
    # CPU: int8 where the package has it (bench_index makes it), else fp32.
    variant = INT8 if not cuda and "visual_int8" in spec.files else "fp32"
    model = ClipModel(folder, spec, provider=provider, variant=variant)
    result["end_to_end_encoder"] = {
        "provider": model.info.provider,
        "variant": variant,
        "int8_check_passed": int8_passed(spec),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log("photos")
        paths = make_photos(work / "photos", args.photos, args.distinct)
        log("decode")
        result["decode"] = decode_rate(model, paths, cores)
        log("end to end")
        try:
            batch = max(args.batches) if cuda else 32
            e2e = end_to_end(model, work / "photos", work, batch, cores)
            if not cuda:
                # On the CPU the limit is the cores over decode + encode CPU-s per photo.
                per_photo = result["decode"]["cpu_s_per_photo"] + encode_cpu_per_photo(
                    model, paths[: args.distinct], batch
                )
                e2e["machine_limit_photos_per_s"] = round(cores / per_photo, 1)
                e2e["over_limit"] = round(e2e["photos_per_s"] * per_photo / cores, 3)
            result["end_to_end"] = e2e
        except Exception as exc:  # noqa: BLE001 - the figures so far still print
            result["end_to_end"] = {"failed": f"{type(exc).__name__}: {exc}"}
    log("torch reference")
    result["torch_reference"] = torch_reference(args)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
