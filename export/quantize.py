"""``python -m export int8 PACKAGE``: add int8 encoders to a model package, checked.

ONNX Runtime's dynamic quantization (weights int8 per output channel, activations quantized
per batch at run time) of every MatMul and Gemm: the transformer's weights, ~all of its
FLOPs. The patch embedding (a Conv) and the token embedding (a Gather) stay float: ONNX
Runtime's ConvInteger is slower than its float Conv on the CPU, and a Gather costs nothing.
Measured against static QDQ with a calibration set (bench_int8 in tests/bench): dynamic
keeps the vectors closer to fp32 on the tiny models and needs no calibration photos of the
model's own domain, so it is the one made here.

Before the text tower is quantized, each block's attention is fused into one ONNX Runtime
``Attention`` node (export/fuse.py; ``QAttention`` once quantized): a short query's cost
is its ops, not its FLOPs. The fused graph is kept only where it gives the unfused one's
vectors on probes (:func:`probes_for`); else, and for the image tower (see
:data:`FUSED_TOWERS`), the graph is quantized as exported.

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
import logging
import os
from pathlib import Path, PurePosixPath

from photofind.clip.package import read_manifest, sha256_file

log = logging.getLogger(__name__)

INT8_ROLES = {"visual": "visual_int8", "textual": "textual_int8"}
#: The towers whose attention is fused before quantization (export/fuse.py). The text
#: tower only: a query's ~8 tokens make it overhead-bound, and fused it encodes a short
#: query in 2.89 ms instead of 3.07 on one thread, 3.45 on two (ViT-B/32, back to back,
#: here); the image tower's 50-token batches are not, and its fused int8 graph measured
#: 8-10% slower (CPU-s per batch of 16). Its graph also names the photo vectors (the
#: model id): unchanged, a library indexed with the earlier int8 graph stays valid.
FUSED_TOWERS = ("textual",)
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


#: Fused graph's vectors against the unfused one's, on the probes: the fusion changes
#: the order of a few float sums at most (bit-identical on ViT-B/32 here), so anything
#: further is a pattern matched wrongly.
FUSED_COSINE_MIN = 0.9999


def _run_graph(path: Path, feeds: list[dict]) -> list:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [session.run(None, feed)[0] for feed in feeds]


def probes_for(path: Path, spec, tower: str) -> list[dict]:
    """Feeds of the graph at ``path`` that any rewrite of it must answer as it does: random
    pixels for the image tower; for the text tower random ids ending in the end-of-text id
    (CLIP's largest) at a short length and at the full context where the token axis is
    dynamic (a fused causal mask must hold at both), any further int input (a mask) all 1."""
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(CALIBRATION_SEED)
    inputs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    dtype = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
    batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else 2
    if tower == "visual":
        size = spec.image_size
        return [{inputs[0].name: rng.standard_normal((batch, 3, size, size), dtype=np.float32)}]
    fixed = inputs[0].shape[1] if isinstance(inputs[0].shape[1], int) else None
    feeds = []
    for length in [fixed] if fixed else sorted({min(8, spec.context_length), spec.context_length}):
        ids = rng.integers(1, spec.vocab_size - 1, size=(batch, length))
        ids[:, -1] = spec.vocab_size - 1
        feed = {inputs[0].name: ids.astype(dtype.get(inputs[0].type, np.int64))}
        for extra in inputs[1:]:
            feed[extra.name] = np.ones((batch, length), dtype=dtype.get(extra.type, np.int64))
        feeds.append(feed)
    return feeds


def fuse_checked(source: Path, target: Path, probes: list[dict]) -> int:
    """Write ``source`` with its attention fused (export/fuse.py) to ``target`` and return
    how many blocks were, where the fused graph gives the same vectors as ``source`` on
    every feed of ``probes``; else (or where nothing matched, or the graph keeps its
    weights in external data, which this rewrite does not carry) write nothing, return 0."""
    import numpy as np
    import onnx

    from export.fuse import fuse_attention
    from photofind.clip.onnx_external import external_locations

    if not probes or external_locations(source):
        return 0
    model = onnx.load(str(source))
    count = fuse_attention(model)
    if not count:
        return 0
    onnx.save(model, str(target))
    del model
    try:
        outputs = zip(_run_graph(source, probes), _run_graph(target, probes), strict=True)
        for a, b in outputs:
            a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
            if a.shape != b.shape:
                raise ValueError(f"fused output {b.shape}, the graph's own {a.shape}")
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
            if cos.min() < FUSED_COSINE_MIN:
                raise ValueError(f"fused vectors at cosine {cos.min():.5f} to the graph's own")
    except Exception as exc:  # noqa: BLE001 - a fused graph that fails is not used, said why
        log.warning("%s: the fused attention is not used (%s); quantized as it is", source, exc)
        target.unlink(missing_ok=True)
        return 0
    return count


def quantize_graph(
    source: Path,
    target: Path,
    *,
    method: str = "dynamic",
    calibration=None,
    probes: list[dict] | None = None,
) -> int:
    """Write the int8 graph of ``source`` to ``target``; returns how many attention blocks
    were fused first (0: none, the graph is quantized as it is).

    ``method`` "dynamic" (the default, see the module docstring) or "static" (QDQ, with
    ``calibration``: a list of input arrays of the graph's one input). ``probes``: feeds
    of ``source`` (input name -> array) on which a graph with fused attention
    (:func:`fuse_checked`) must give the vectors ``source`` gives; without them, or for
    "static", nothing is fused."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    tmp = target.with_name(target.name + ".part")
    fused_path = target.with_name(target.name + ".fused.part")
    fused = 0
    if method == "dynamic":
        fused = fuse_checked(source, fused_path, probes or [])
        try:
            quantize_dynamic(
                str(fused_path if fused else source),
                str(tmp),
                weight_type=QuantType.QInt8,
                per_channel=True,
                # Attention becomes QAttention (its packed q, k, v weights int8).
                op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                # onnx's shape inference knows no com.microsoft op, so the types after a
                # fused Attention are unknown to the quantizer: they are all float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else {},
            )
        finally:
            fused_path.unlink(missing_ok=True)
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
    return fused


def add_int8(folder: Path, towers=("visual", "textual")) -> dict:
    """Quantize the package's graphs into it and list them in ``model.json`` (unchecked:
    :func:`check` decides whether they are used)."""
    folder = Path(folder)
    manifest = folder / "model.json"
    data = json.loads(manifest.read_text())
    files = data["files"]
    spec = read_manifest(folder)
    fused = {}
    for tower in towers:
        # Beside its fp32 graph, named after it: Immich's layout keeps both towers as
        # model.onnx in their own folders, so a name by stem alone would collide.
        rel = PurePosixPath(files[tower]["path"])
        rel = rel.with_name(f"{rel.stem}_int8.onnx")
        target = folder / rel
        source = folder / files[tower]["path"]
        probes = probes_for(source, spec, tower) if tower in FUSED_TOWERS else None
        fused[tower] = quantize_graph(source, target, probes=probes)
        files[INT8_ROLES[tower]] = {"path": str(rel), "sha256": sha256_file(target)}
    # New graphs, not yet checked: a check recorded for earlier ones no longer holds.
    variants = data.setdefault("extra", {}).setdefault("variants", {})
    variants["int8"] = {"fused_attention": fused}
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
