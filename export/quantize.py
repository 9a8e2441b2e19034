"""``python -m export int8 PACKAGE``: add int8 encoders to a model package, checked.

ONNX Runtime's dynamic quantization (weights int8 per output channel, activations quantized
per batch at run time) of every MatMul and Gemm: the transformer's weights, ~all of its
FLOPs. The patch embedding (a Conv) and the token embedding (a Gather) stay float: ONNX
Runtime's ConvInteger is slower than its float Conv on the CPU, and a Gather costs nothing.
Measured against static QDQ with a calibration set (bench_int8 in tests/bench): dynamic
keeps the vectors closer to fp32 on the tiny models and needs no calibration photos of the
model's own domain, so it is the one made here.

The new graphs join the package as the file roles ``visual_int8`` and ``textual_int8``;
:func:`check` (photofind.clip.variant_check) then compares them with the fp32 graphs on a
calibration set and records the figures under ``extra.variants.int8`` in ``model.json``.
The app uses them only where that check passed (photofind/clip/variants.py).

It lives in ``export/`` because ``onnxruntime.quantization`` imports ``onnx``, which the app
never imports; the app runs this module in a subprocess when it installs a model and the
``export`` tools are present.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path, PurePosixPath

from photofind.clip.package import sha256_file

INT8_ROLES = {"visual": "visual_int8", "textual": "textual_int8"}
CALIBRATION_SEED = 19
CALIBRATION_COUNT = 64


def calibration(count: int = CALIBRATION_COUNT, seed: int = CALIBRATION_SEED):
    """``count`` varied generated photos (backgrounds, shapes, colours, sizes, aspect
    ratios) and a caption of each: what any CLIP can be compared on, whatever it knows."""
    from photofind.synthetic import generate

    images, texts = [], []
    for i in range(count):
        _, image, captions = generate(seed, i, captions_per_image=1)
        images.append(image)
        texts.append(captions[0])
    return images, texts


def check(folder: Path, thresholds=None, count: int = CALIBRATION_COUNT) -> dict:
    """photofind's check of the int8 graphs (photofind.clip.variants) on the calibration set."""
    from photofind.clip.variant_check import check_int8
    from photofind.clip.variants import THRESHOLDS

    images, texts = calibration(count)
    return check_int8(
        folder,
        images,
        texts,
        thresholds=thresholds or THRESHOLDS,
        about=f"{count} generated photos and captions (photofind.synthetic, seed "
        f"{CALIBRATION_SEED})",
    )


def quantize_graph(source: Path, target: Path, *, method: str = "dynamic", calibration=None):
    """Write the int8 graph of ``source`` to ``target``.

    ``method`` "dynamic" (the default, see the module docstring) or "static" (QDQ, with
    ``calibration``: a list of input arrays of the graph's one input)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    tmp = target.with_name(target.name + ".part")
    if method == "dynamic":
        quantize_dynamic(
            str(source),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    elif method == "static":
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat

        name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        name = name.get_inputs()[0].name

        class Reader(CalibrationDataReader):
            def __init__(self):
                self._it = iter(calibration)

            def get_next(self):
                batch = next(self._it, None)
                return None if batch is None else {name: batch}

        quantize_static(
            str(source),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    else:
        raise ValueError(f"unknown quantization method {method!r}")
    os.replace(tmp, target)
    return target


def add_int8(folder: Path, towers=("visual", "textual")) -> dict:
    """Quantize the package's graphs into it and list them in ``model.json`` (unchecked:
    :func:`check` decides whether they are used)."""
    folder = Path(folder)
    manifest = folder / "model.json"
    data = json.loads(manifest.read_text())
    files = data["files"]
    for tower in towers:
        # Beside its fp32 graph, named after it: Immich's layout keeps both towers as
        # model.onnx in their own folders, so a name by stem alone would collide.
        rel = PurePosixPath(files[tower]["path"])
        rel = rel.with_name(f"{rel.stem}_int8.onnx")
        target = folder / rel
        quantize_graph(folder / files[tower]["path"], target)
        files[INT8_ROLES[tower]] = {"path": str(rel), "sha256": sha256_file(target)}
    tmp = manifest.with_name("model.json.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, manifest)
    return files


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="a model package folder (model.json)")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="only write the graphs: photofind leaves them unused until this command runs "
        "again with the check",
    )


def run(args) -> int:
    add_int8(args.package)
    if not args.no_check:
        print(json.dumps(check(args.package)))
    return 0
