"""``python -m export fp16 PACKAGE``: add float16 encoders to a model package, checked.

For a GPU: ONNX Runtime's float16 converter (``onnxruntime.transformers.float16``) turns
the weights and the operators into float16 and keeps the graphs' inputs and outputs
float32 (``keep_io_types``), so the app feeds and reads them as it does the fp32 graphs;
the operators the converter knows to be unsafe in float16 stay float32 inside. On a
GPU's tensor cores that is the fast path (gpu_run.py measures it); on the CPU it is no
faster than float32 (int8 is), and photofind's "fast" precision never runs it there
(photofind/clip/variants.py).

The new graphs join the package as the file roles ``visual_fp16`` and ``textual_fp16``
beside their fp32 ones; :func:`check` (photofind.clip.fp16_check) then compares them with
the fp32 graphs on the calibration set of the int8 check (export/quantize.py), on CUDA
where this machine has it, else on the CPU, and records the figures under
``extra.variants.fp16`` in ``model.json``. It lives in ``export/`` because the converter
imports ``onnx``, which the app never imports.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path, PurePosixPath

from photofind.clip.package import sha256_file

FP16_ROLES = {"visual": "visual_fp16", "textual": "textual_fp16"}
#: protobuf's limit on one file: an fp16 graph is written whole (photofind reads a
#: variant graph only as one file, photofind.clip.variants.check_single_file)
MAX_GRAPH_BYTES = 2**31 - 1


class Fp16Error(ValueError):
    """A graph that cannot be made float16 as one file."""


def convert_graph(source: Path, target: Path) -> Path:
    """Write the float16 graph of ``source`` (its external data read in) to ``target``."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    half = convert_float_to_float16(model, keep_io_types=True)
    size = half.ByteSize()
    if size > MAX_GRAPH_BYTES:
        raise Fp16Error(
            f"{source}: its float16 graph is {size / 2**30:.1f} GiB, over the 2 GiB of one "
            "ONNX file; not made"
        )
    tmp = target.with_name(target.name + ".part")
    onnx.save(half, str(tmp))
    os.replace(tmp, target)
    return target


def add_fp16(folder: Path, towers=("visual", "textual")) -> dict:
    """Convert the package's graphs into it and list them in ``model.json`` (unchecked:
    :func:`check` decides whether they are used)."""
    folder = Path(folder)
    manifest = folder / "model.json"
    data = json.loads(manifest.read_text())
    files = data["files"]
    for tower in towers:
        # Beside its fp32 graph, named after it (Immich's layout names both model.onnx).
        rel = PurePosixPath(files[tower]["path"])
        rel = rel.with_name(f"{rel.stem}_fp16.onnx")
        target = folder / rel
        convert_graph(folder / files[tower]["path"], target)
        files[FP16_ROLES[tower]] = {"path": str(rel), "sha256": sha256_file(target)}
    # A verdict on the graphs these replace is not one on them: unchecked until checked.
    variants = (data.get("extra") or {}).get("variants")
    if isinstance(variants, dict):
        variants.pop("fp16", None)
    tmp = manifest.with_name("model.json.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, manifest)
    return files


def check(folder: Path, thresholds=None, count: int | None = None, provider: str = "auto"):
    """photofind's check of the fp16 graphs (photofind.clip.fp16_check) on the int8
    check's calibration set of generated photos and captions."""
    from export.quantize import CALIBRATION_COUNT, CALIBRATION_SEED, calibration
    from photofind.clip.fp16_check import check_fp16
    from photofind.clip.variants import FP16_THRESHOLDS

    count = count or CALIBRATION_COUNT
    images, texts = calibration(count)
    return check_fp16(
        folder,
        images,
        texts,
        thresholds=thresholds or FP16_THRESHOLDS,
        about=f"{count} generated photos and captions (photofind.synthetic, seed "
        f"{CALIBRATION_SEED})",
        provider=provider,
    )


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="a model package folder (model.json)")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="only write the graphs: photofind leaves them unused until this command runs "
        "again with the check",
    )
    parser.add_argument(
        "--remake",
        action="store_true",
        help="convert the graphs again even where the package has them (else only check)",
    )
    parser.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the check runs (default: CUDA where it works, else the CPU)",
    )


def run(args) -> int:
    spec = json.loads((args.package / "model.json").read_text())
    have = all(
        role in spec["files"] and (args.package / spec["files"][role]["path"]).is_file()
        for role in FP16_ROLES.values()
    )
    if args.remake or not have:
        add_fp16(args.package)
    # Graphs made elsewhere are only checked again here (a CUDA machine's check is what
    # lets photofind run them there).
    if not args.no_check:
        print(json.dumps(check(args.package, provider=args.provider)))
    return 0
