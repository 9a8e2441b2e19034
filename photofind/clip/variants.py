"""A model's int8 encoders: which graphs a model runs, and what allows the int8 ones.

A package may carry int8 graphs beside its fp32 ones, as the file roles ``visual_int8``
and ``textual_int8`` of ``model.json`` (made by ``python -m export int8``, which imports
``onnx``; the app never does). They are used only where photofind.clip.variant_check
compared them with the fp32 graphs on a calibration set (the app's layers put generated
photos above this runtime, so the caller brings the set: export/quantize.py) and found them
faithful and faster on this machine; the figures are recorded under ``extra.variants.int8``
in ``model.json``::

    "extra": {"variants": {"int8": {"visual": "visual_int8", "textual": "textual_int8",
                                    "check": {"passed": true, "image_cosine_min": ...}}}}

The precision setting chooses: "fast" (the int8 graphs where their check passed, else
fp32) or "exact" (always fp32). Both towers switch together. The vectors of the two
variants are not mixed: the model id of the vectors is named by the sha256 of the image
graph that made them (:class:`photofind.library.model_id.ModelId`), so switching variant
is a model change, with its staged re-run, like any other.

For a GPU a package may also carry float16 graphs (``visual_fp16``, ``textual_fp16``, float32
inputs and outputs kept; ``python -m export fp16``, or ``photofind models install --fp16``,
which makes them unasked where CUDA is available), checked the same way by
photofind.clip.fp16_check and recorded under ``extra.variants.fp16``. "fast" on CUDA runs
them where their check passed on CUDA; a check made on the CPU is recorded (it vouches for
the rounded weights) and one that could not run at all says so; neither is used.
"""

from __future__ import annotations

from pathlib import Path

from photofind.errors import ModelError

FP32, INT8 = "fp32", "int8"
#: float16 graphs (float32 inputs and outputs kept) for a GPU: ``python -m export fp16``
FP16 = "fp16"
PRECISIONS = ("fast", "exact")
ROLES = {
    INT8: {"visual": "visual_int8", "textual": "textual_int8"},
    FP16: {"visual": "visual_fp16", "textual": "textual_fp16"},
}
FP32_ROLES = {"visual": "visual", "textual": "textual"}
#: What the int8 graphs must reach against fp32 on the calibration set to be used
#: (photofind.clip.variant_check measures them).
THRESHOLDS = {
    "image_cosine_min": 0.99,
    "text_cosine_min": 0.99,
    # Not top-1 agreement: where the fp32 top two are nearly tied (a random-weight ViT-B/32:
    # 0.89 at cosines of 0.9998) any rounding swaps them; the top 10 are what a user sees.
    "top10_overlap_min": 0.9,
    "recall_at_5_drop_max": 0.02,
    "speedup_min": 1.1,
}


#: What the fp16 graphs must reach against fp32 (photofind.clip.fp16_check). Rounding to
#: float16 keeps CLIP's vectors far closer than int8 does (cosine >= 0.99999 on the tiny
#: CLIP and a random-weight ViT-B/32, checked on the CPU), so a cosine under these means
#: an overflow or a broken conversion, not rounding. The
#: speed-up counts only where it was measured on a GPU: the CPU runs float16 graphs no
#: faster than float32 ones (ONNX Runtime casts most of their operators back to float32
#: there; ViT-B/32 on 2 cores: 13.9 images/s fp16, 13.6 fp32; the tiny CLIP slower).
FP16_THRESHOLDS = {
    "image_cosine_min": 0.995,
    "text_cosine_min": 0.995,
    "top10_overlap_min": 0.9,
    "recall_at_5_drop_max": 0.02,
    "speedup_min": 1.1,
}


def variant_record(spec, variant: str) -> dict | None:
    """What ``model.json`` says of the package's ``variant`` graphs (None: it has none)."""
    record = ((spec.extra or {}).get("variants") or {}).get(variant)
    if not isinstance(record, dict) or variant not in ROLES:
        return None
    if any(
        record.get(tower) != role or role not in spec.files
        for tower, role in ROLES[variant].items()
    ):
        return None
    return record


def graphs_of(spec, variant: str) -> dict[str, str]:
    """The sha256 of each of the ``variant`` graphs, by role: what a check records of the
    graphs it measured."""
    return {role: spec.files[role].sha256 for role in ROLES[variant].values()}


def _standing_check(spec, variant: str) -> dict | None:
    """The ``variant`` graphs' check, where it measured the graphs the package has now (a
    check without the graphs' digests, written before they were recorded, is taken as
    theirs)."""
    record = variant_record(spec, variant)
    check = record.get("check") if record else None
    if not isinstance(check, dict):
        return None
    graphs = check.get("graphs")
    if graphs is not None and graphs != graphs_of(spec, variant):
        return None
    return check


def variant_passed(spec, variant: str) -> bool:
    """Whether the ``variant`` graphs' check passed on the graphs the package has (an fp16
    one not checked never did): what lets a precision choose them."""
    check = _standing_check(spec, variant)
    return check is not None and check.get("passed") is True


def variant_faithful(spec, variant: str) -> bool:
    """Whether the check found the ``variant`` graphs faithful to fp32, whether or not they
    were also fast enough here: what reopening vectors a library already holds needs (a
    re-check on a busy machine that finds them only 1.05x as fast must not make a library's
    own vectors unsearchable)."""
    check = _standing_check(spec, variant)
    return check is not None and (check.get("passed") is True or check.get("faithful") is True)


def fp16_passed_on_cuda(spec) -> bool:
    """Whether the fp16 graphs' check passed on CUDA, which alone lets "fast" run them
    there: on the CPU, ONNX Runtime computes most of a float16 graph in float32
    (photofind.clip.fp16_check), so a check there vouches for the rounded weights, not for
    float16 arithmetic."""
    record = variant_record(spec, FP16)
    check = record.get("check") if record else None
    return (
        variant_passed(spec, FP16) and isinstance(check, dict) and check.get("provider") == "cuda"
    )


def int8_record(spec) -> dict | None:
    """What ``model.json`` says of the package's int8 graphs (None: it has none)."""
    record = ((spec.extra or {}).get("variants") or {}).get(INT8)
    if not isinstance(record, dict):
        return None
    roles = ROLES[INT8]
    if any(record.get(tower) != role or role not in spec.files for tower, role in roles.items()):
        return None
    return record


def int8_passed(spec) -> bool:
    return int8_record(spec) is not None and variant_passed(spec, INT8)


def choose_variant(spec, precision: str, provider: str = "cpu") -> str:
    """The variant ``precision`` ("fast" or "exact") runs for this package on ``provider``
    ("cpu" or "cuda": where its sessions will run, photofind.clip.providers).

    "fast" is int8 on the CPU and fp16 on CUDA, each where its check passed (the fp16
    one on CUDA: :func:`fp16_passed_on_cuda`), else fp32:
    under its CUDA provider ONNX Runtime still runs the dynamic int8 graphs' integer
    operators on the CPU, copying each one's data to the host and back (onnxruntime issue
    7745), and on the CPU float16 graphs are no faster than float32 ones while int8 is
    about twice as fast. "exact" is always fp32."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "exact":
        return FP32
    if provider == "cuda":
        return FP16 if fp16_passed_on_cuda(spec) else FP32
    return INT8 if int8_passed(spec) else FP32


def roles_of(variant: str) -> dict[str, str]:
    """File role of each tower for ``variant``."""
    return FP32_ROLES if variant == FP32 else ROLES[variant]


def check_single_file(path: Path) -> None:
    """An int8 graph reads no external data (the quantizer writes one file), so none is
    accepted: a file the manifest does not hash would be read unchecked."""
    from photofind.clip.onnx_external import external_locations

    if external_locations(path):
        raise ModelError(f"{path}: an int8 or fp16 graph must be one file; it reads external data")
