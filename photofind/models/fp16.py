"""Making a model's fp16 encoders when it is installed: asked for (``photofind models
install --fp16``) or, unasked, on a machine where CUDA can run (photofind.clip.providers).

As for the int8 encoders (photofind.models.int8), the converter is export/ tooling
(``python -m export fp16``: it imports ``onnx``) run in a subprocess from the source
checkout; where that is not there, the model installs fp32 only and the note says how to
add them later. The check that decides whether they are used is photofind's own
(photofind.clip.fp16_check), run on CUDA where it works (only a check there lets "fast" use
them); its verdict is in the note.
"""

from __future__ import annotations

from pathlib import Path

from photofind.clip.providers import planned_provider
from photofind.models.int8 import TIMEOUT_S, run_export


def cuda_here() -> bool:
    """Whether this machine may run CUDA (a driver and onnxruntime-gpu are there): where
    an install makes the fp16 encoders unasked."""
    return planned_provider("auto").name == "cuda"


def make_fp16(package: Path, name: str, *, timeout_s: float = TIMEOUT_S) -> str:
    """Add the fp16 encoders of the package in ``package`` (installed as ``name``) and
    check them; returns a note for the user. A failure leaves the package as it was."""
    check = run_export("fp16", package, name, "converting", timeout_s)
    if isinstance(check, str):
        return check
    if check.get("not_checked"):
        return f"fp16 encoders made but not used: {check['not_checked']}"
    if not check.get("passed"):
        reasons = "; ".join(check.get("refused_because", [])) or "their check did not pass"
        return f"fp16 encoders made but not used ({reasons}); precision 'fast' runs fp32 on CUDA"
    try:
        where = "on CUDA" if check["provider"] == "cuda" else "on the CPU"
        figures = (
            f"checked {where}: image cosine ≥ {check['image_cosine_min']}, text cosine ≥ "
            f"{check['text_cosine_min']}, top-10 agreement {check['top10_overlap']}"
        )
        if check.get("image_speedup") is not None:
            figures += f", image encoder {check['image_speedup']}x"
    except (ValueError, KeyError, TypeError):
        return "fp16 encoders made, but their check printed no figures: not used"
    if check["provider"] != "cuda":
        return (
            f"fp16 encoders made ({figures}); precision 'fast' uses them on CUDA once "
            f"checked there (`python -m export fp16 MODEL-FOLDER` on a CUDA machine)"
        )
    return f"fp16 encoders made ({figures}): precision 'fast' uses them on CUDA"
