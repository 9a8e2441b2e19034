"""Write a format-2 model package manifest: any tokenizer read from a HF tokenizer.json.

Format 2 keeps every field of format 1 (:class:`photofind.clip.package.ModelSpec`) and adds
``tokenizer``, which says how the runtime turns text into the textual graph's inputs::

    "tokenizer": {"kind": "hf", "file": "tokenizer.json", "pad_id": 0,
                  "context_length": 48, "inputs": ["input_ids", "attention_mask"],
                  "lowercase": true}

``files`` maps each role to ``{"path", "sha256"}``: ``visual`` and ``textual`` (ONNX),
``tokenizer`` (the tokenizer.json), and any other role for further files (external data).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from export import ExportError
from photofind.clip.package import MANIFEST, ModelSpec, PackageFile, sha256_file

FORMAT = 2
TOKENIZER_FILE = "tokenizer.json"
TEXT_INPUTS = (("input_ids",), ("input_ids", "attention_mask"))


def tokenizer_entry(
    *, pad_id: int, context_length: int, inputs, lowercase: bool, file: str = TOKENIZER_FILE
) -> dict:
    inputs = tuple(inputs)
    if inputs not in TEXT_INPUTS:
        raise ExportError(f"textual inputs {inputs} are not one of {TEXT_INPUTS}")
    return {
        "kind": "hf",
        "file": file,
        "pad_id": int(pad_id),
        "context_length": int(context_length),
        "inputs": list(inputs),
        "lowercase": bool(lowercase),
    }


def copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_manifest_v2(folder: Path, spec: ModelSpec, tokenizer: dict) -> Path:
    """``model.json`` for ``spec`` (its ``files`` hashed by the caller) as format 2."""
    folder = Path(folder)
    if "tokenizer" not in spec.files or spec.files["tokenizer"].path != tokenizer["file"]:
        raise ExportError("files.tokenizer must name the tokenizer entry's file")
    data = replace(spec, format=FORMAT).to_json()
    data["tokenizer"] = tokenizer
    target = folder / MANIFEST
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def hashed_files(folder: Path, names: dict[str, str]) -> dict[str, PackageFile]:
    """role -> PackageFile for files already written into ``folder``."""
    return {
        role: PackageFile(name, sha256_file(Path(folder) / name)) for role, name in names.items()
    }
