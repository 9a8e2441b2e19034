"""Making a model's int8 encoders when it is installed (``photofind models install --int8``).

The quantizer is ``python -m export int8`` (export/quantize.py): ONNX Runtime's quantization
imports ``onnx``, which the app never imports, so it runs in a subprocess, from the source
checkout that holds ``export/`` beside ``photofind/``. Where that is not there (the frozen
app, a wheel install) the model installs as it is, fp32 only, and the note says how to add
the int8 encoders later. The check that decides whether they are used is photofind's own
(photofind.clip.variants); its verdict is in the note.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: ViT-B/32's two graphs quantize in about a minute on 2 cores; ViT-L/14 in a few.
TIMEOUT_S = 1800.0


def export_tools() -> Path | None:
    """The folder holding ``export/`` and ``photofind/`` (a source checkout), or None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "export" / "quantize.py").is_file() else None


def run_export(variant: str, package: Path, name: str, doing: str, timeout_s: float):
    """Run ``python -m export VARIANT PACKAGE`` (the variant's maker and check) from the
    source checkout: the check it printed last (a dict), or the note saying why the
    ``variant`` encoders were not made (a str). ``doing``: what it does, for a timeout."""
    later = (
        f"`python -m export {variant} MODEL-FOLDER` on the installed {name!r} from a source "
        "checkout adds them later"
    )
    tools = export_tools()
    if tools is None:
        return f"{variant} encoders not made: the export tools are not installed here ({later})"
    path = os.pathsep.join(p for p in (str(tools), os.environ.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "export", variant, str(package)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"{variant} encoders not made: {doing} took over {timeout_s:g} s ({later})"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{variant} encoders not made: {why} ({later})"
    try:
        check = json.loads(lines[-1])
    except ValueError:
        check = None
    if not isinstance(check, dict):
        return f"{variant} encoders not made: the check printed no figures ({later})"
    return check


def make_int8(package: Path, name: str, *, timeout_s: float = TIMEOUT_S) -> str:
    """Add the int8 encoders of the package in ``package`` (installed as ``name``) and check
    them; returns a note for the user. A failure leaves the fp32 package as it is."""
    check = run_export("int8", package, name, "quantizing", timeout_s)
    if isinstance(check, str):
        return check
    try:
        figures = (
            f"image cosine ≥ {check['image_cosine_min']}, text cosine ≥ "
            f"{check['text_cosine_min']}, top-10 agreement {check['top10_overlap']}, "
            f"image encoder {check['image_speedup']}x"
        )
    except (ValueError, KeyError, TypeError):
        return "int8 encoders not made: the check printed no figures"
    if check.get("passed"):
        return f"int8 encoders made and checked ({figures}): precision 'fast' uses them"
    reasons = "; ".join(check.get("refused_because", []))
    return f"int8 encoders made but not used ({reasons}); precision 'fast' runs fp32"
