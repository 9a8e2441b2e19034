"""Write a format-2 model package manifest in the runtime's own terms.

The format is the one :mod:`photofind.clip.package` reads (its docstring is the contract):
the manifest is built from that module's :class:`ModelSpec` and :class:`TokenizerSpec` and
written by its :func:`write_manifest`, then read back by :func:`read_manifest`, so an
exporter cannot write a field the runtime does not know or a shape it refuses. A package whose
text comes from a HF tokenizer.json gets::

    "tokenizer": {"kind": "hf", "file": "tokenizer", "context_length": 48, "pad": 0,
                  "inputs": {"input_ids": "ids", "attention_mask": "mask"}}

(``file`` is the role in ``files``; ``canonicalize`` only where the model wants SigLIP's
punctuation-stripping, lower-casing clean-up before its tokenizer.json; a tokenizer.json that
lower-cases in its own normalizer needs none.)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from export import ExportError
from photofind.clip.package import (
    ModelSpec,
    PackageFile,
    TokenizerSpec,
    read_manifest,
    sha256_file,
    write_manifest,
)
from photofind.errors import ModelError

FORMAT = 2
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_ROLE = "tokenizer"
TEXT_INPUTS = (("input_ids",), ("input_ids", "attention_mask"))
_PART = {"input_ids": "ids", "attention_mask": "mask"}


def hf_tokenizer(
    *, pad_id: int, context_length: int, inputs, canonicalize: bool = False
) -> TokenizerSpec:
    """The runtime's description of a tokenizer.json-read text input (``inputs``: the text
    graph's input names, ids first)."""
    inputs = tuple(inputs)
    if inputs not in TEXT_INPUTS:
        raise ExportError(f"textual inputs {inputs} are not one of {TEXT_INPUTS}")
    return TokenizerSpec(
        kind="hf",
        file=TOKENIZER_ROLE,
        context_length=int(context_length),
        pad=int(pad_id),
        canonicalize=bool(canonicalize),
        inputs={name: _PART[name] for name in inputs},
    )


def copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_manifest_v2(folder: Path, spec: ModelSpec, tokenizer: TokenizerSpec) -> Path:
    """``model.json`` for ``spec`` (its ``files`` hashed by the caller) as format 2, read
    back by the runtime's reader before this returns (ExportError if it refuses it)."""
    folder = Path(folder)
    if tokenizer.file not in spec.files:
        raise ExportError(f"files has no {tokenizer.file!r} role for the tokenizer")
    spec = replace(
        spec, format=FORMAT, tokenizer=tokenizer, context_length=tokenizer.context_length
    )
    target = write_manifest(folder, spec)
    try:
        back = read_manifest(folder)
    except ModelError as exc:
        raise ExportError(f"the runtime refuses the manifest just written: {exc}") from exc
    if back.to_json() != spec.to_json():
        raise ExportError(f"{target} does not read back as written")
    return target


def hashed_files(folder: Path, names: dict[str, str]) -> dict[str, PackageFile]:
    """role -> PackageFile for files already written into ``folder``."""
    return {
        role: PackageFile(name, sha256_file(Path(folder) / name)) for role, name in names.items()
    }
