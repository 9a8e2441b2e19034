"""The model package: a folder that describes itself in ``model.json``.

A package holds ``model.json``, ``visual.onnx`` (float32 [N,3,H,W] -> [N,D]),
``textual.onnx`` (int64 [N,context_length] -> [N,D]) and the BPE vocabulary the
tokenizer reads. ``model.json`` lists every file with its sha256; nothing is used
before it has been checked against that list. Files beyond the three roles (ONNX external
data) are listed under any other role name; a graph that reads a file the list does not
name is refused, so every byte a model uses is hashed.

``model.json`` comes from whoever made the package, so every value is checked for its type
and bounded before anything is sized by it: a context length of a billion would otherwise
become an 8 GB token array at the first query.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from photofind import jsonfile
from photofind.errors import ModelError

FORMAT_VERSION = 1
MANIFEST = "model.json"
FILE_ROLES = ("visual", "textual", "vocab")
GRAPH_ROLES = ("visual", "textual")
# Bounds on what model.json may claim, far above any published CLIP (ViT-bigG: 1280-d,
# 224 px, 77 tokens, 49,408 ids) and low enough that nothing sized by them is dangerous.
MAX_EMBED_DIM = 16_384
MAX_IMAGE_SIZE = 2_048  # a [1, 3, S, S] float32 probe: 50 MB
MAX_CONTEXT_LENGTH = 4_096  # a [64, L] int64 token batch: 2 MB
MAX_VOCAB_SIZE = 1_000_000
MAX_BATCH = 4_096
MAX_FILES = 64
# A manifest is a few kilobytes; a JSON reader is not a place for a gigabyte.
MAX_JSON_BYTES = 1 << 20

# CLIP's published preprocessing constants (OpenAI and OpenCLIP ViT models alike).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PackageFile:
    path: str
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    """What ``model.json`` says about a model."""

    name: str
    embed_dim: int
    image_size: int
    context_length: int
    vocab_size: int
    files: dict[str, PackageFile]
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resize: str = "shortest"  # shortest side to image_size, then a centre crop
    interpolation: str = "bicubic"
    arch: str = ""
    description: str = ""
    source: str = ""
    license: str = ""
    logit_scale: float = 100.0
    format: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "name": self.name,
            "arch": self.arch,
            "description": self.description,
            "source": self.source,
            "license": self.license,
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "interpolation": self.interpolation,
            "context_length": self.context_length,
            "vocab_size": self.vocab_size,
            "logit_scale": self.logit_scale,
            "files": {role: {"path": f.path, "sha256": f.sha256} for role, f in self.files.items()},
            **({"extra": self.extra} if self.extra else {}),
        }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, spec: ModelSpec) -> Path:
    """Write ``model.json`` atomically (temporary file, then replace)."""
    folder = Path(folder)
    target = folder / MANIFEST
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


def read_json_object(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from ``path``, bounded in size; ModelError naming the file otherwise."""
    path = Path(path)
    try:
        return jsonfile.read_json_object(path, max_bytes)
    except OSError as exc:
        raise ModelError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except jsonfile.JsonObjectError as exc:
        reason = {
            jsonfile.TOO_LARGE: f"is larger than {max_bytes:,} bytes; refused",
            jsonfile.NOT_JSON: f"cannot be read as JSON: {exc.detail}",
            jsonfile.TOO_DEEP: "cannot be read as JSON: it is nested too deeply",
            jsonfile.NOT_OBJECT: "should hold a JSON object",
        }[exc.problem]
        raise ModelError(f"{path} {reason}") from exc.__cause__


def _need(data: dict, key: str, kind, manifest: Path):
    if key not in data:
        raise ModelError(f"{manifest}: required field '{key}' is missing")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(
            f"{manifest}: field '{key}' should be {kind.__name__}, got {_short(value)}"
        )
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bounded(data: dict, key: str, most: int, manifest: Path, least: int = 1) -> int:
    value = _need(data, key, int, manifest)
    if not least <= value <= most:
        raise ModelError(f"{manifest}: field '{key}' should be {least:,}..{most:,}, got {value:,}")
    return value


def _text(data: dict, key: str, default: str, manifest: Path) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ModelError(f"{manifest}: field '{key}' should be text, got {_short(value)}")
    return value


def _scale(data: dict, manifest: Path) -> float:
    value = data.get("logit_scale", 100.0)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ModelError(
            f"{manifest}: field 'logit_scale' should be a positive number, got {_short(value)}"
        )
    return float(value)


def _optional_batch(extra: dict, key: str, manifest: Path):
    value = extra.get(key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_BATCH:
        raise ModelError(
            f"{manifest}: extra.{key} should be empty or 1..{MAX_BATCH}, got {_short(value)}"
        )


def _extra(data: dict, manifest: Path) -> dict:
    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        raise ModelError(f"{manifest}: field 'extra' should be an object, got {_short(extra)}")
    kind = extra.get("textual_input_type", "int64")
    if kind not in ("int32", "int64"):
        raise ModelError(
            f"{manifest}: extra.textual_input_type should be 'int32' or 'int64', got {_short(kind)}"
        )
    for key in ("visual_batch", "textual_batch"):
        _optional_batch(extra, key, manifest)
    if not isinstance(extra.get("textual_dynamic_length", False), bool):
        raise ModelError(f"{manifest}: extra.textual_dynamic_length should be true or false")
    if not isinstance(extra.get("adapted_from", ""), str):
        raise ModelError(f"{manifest}: extra.adapted_from should be text")
    return extra


def _file_entry(role, entry, manifest: Path) -> PackageFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise ModelError(f"{manifest}: files.{role} with a 'path' is missing")
    rel = entry["path"]
    posix = PurePosixPath(rel.replace("\\", "/"))
    if (
        not rel
        or "\0" in rel
        or Path(rel).is_absolute()
        or posix.is_absolute()
        or ".." in posix.parts
        or ".." in Path(rel).parts
    ):
        raise ModelError(f"{manifest}: files.{role} path {rel!r} leaves the package")
    if posix.name == MANIFEST and len(posix.parts) == 1:
        raise ModelError(f"{manifest}: files.{role} cannot be {MANIFEST} itself")
    digest = entry.get("sha256")
    if (
        not isinstance(digest, str)
        or len(digest) != 64
        or any(c not in "0123456789abcdefABCDEF" for c in digest)
    ):
        raise ModelError(f"{manifest}: files.{role} has no valid sha256")
    return PackageFile(rel, digest.lower())


def _triple(data: dict, key: str, default, manifest: Path) -> tuple[float, float, float]:
    value = data.get(key, list(default))
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    )
    if not ok or (key == "std" and any(v <= 0 for v in value)):
        raise ModelError(f"{manifest}: field '{key}' should be three numbers, got {value!r}")
    return tuple(float(v) for v in value)


def read_manifest(folder: Path) -> ModelSpec:
    """Parse and validate ``model.json``; every failure names the file and the field."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist or is not a folder")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ModelError(f"{folder} is not a photofind model package: {MANIFEST} is missing")
    data = read_json_object(manifest)

    fmt = _need(data, "format", int, manifest)
    if fmt > FORMAT_VERSION:
        raise ModelError(
            f"{manifest} is format {fmt}; this photofind reads up to format "
            f"{FORMAT_VERSION}: update photofind"
        )
    files_raw = _need(data, "files", dict, manifest)
    if len(files_raw) > MAX_FILES:
        raise ModelError(f"{manifest}: more than {MAX_FILES} files listed; refused")
    missing = [role for role in FILE_ROLES if role not in files_raw]
    if missing:
        raise ModelError(f"{manifest}: files.{missing[0]} with a 'path' is missing")
    # The three roles first, then the rest (external data) in the file's order.
    roles = [*FILE_ROLES, *(r for r in files_raw if r not in FILE_ROLES)]
    files = {role: _file_entry(role, files_raw[role], manifest) for role in roles}

    spec = ModelSpec(
        name=_need(data, "name", str, manifest),
        embed_dim=_bounded(data, "embed_dim", MAX_EMBED_DIM, manifest),
        image_size=_bounded(data, "image_size", MAX_IMAGE_SIZE, manifest),
        # Start and end of text, at least; 512 byte tokens and the two specials, at least.
        context_length=_bounded(data, "context_length", MAX_CONTEXT_LENGTH, manifest, 2),
        vocab_size=_bounded(data, "vocab_size", MAX_VOCAB_SIZE, manifest, 514),
        files=files,
        mean=_triple(data, "mean", CLIP_MEAN, manifest),
        std=_triple(data, "std", CLIP_STD, manifest),
        resize=_text(data, "resize", "shortest", manifest),
        interpolation=_text(data, "interpolation", "bicubic", manifest),
        arch=_text(data, "arch", "", manifest),
        description=_text(data, "description", "", manifest),
        source=_text(data, "source", "", manifest),
        license=_text(data, "license", "", manifest),
        logit_scale=_scale(data, manifest),
        format=fmt,
        extra=_extra(data, manifest),
    )
    if not spec.name:
        raise ModelError(f"{manifest}: field 'name' is empty")
    if spec.resize != "shortest" or spec.interpolation != "bicubic":
        raise ModelError(
            f"{manifest}: resize {spec.resize!r} / interpolation {spec.interpolation!r} "
            "is not supported (expected 'shortest' / 'bicubic')"
        )
    return spec


def verify_files(folder: Path, spec: ModelSpec, verified=None) -> dict[str, Path]:
    """Check every listed file exists and matches its sha256; return absolute paths.

    ``verified`` (a :class:`photofind.clip.verified.VerifiedFiles`) skips hashing the files
    that have not changed since it last saw them match.
    """
    folder = Path(folder)
    paths = {}
    for role, entry in spec.files.items():
        if role in paths:
            continue
        path = folder / entry.path
        if not path.is_file():
            raise ModelError(f"{path} is missing (model.json lists it as the {role} file)")
        if verified is not None and verified.sha256_of(path) == entry.sha256:
            paths[role] = path
            continue
        actual = sha256_file(path)
        if verified is not None and actual == entry.sha256:
            verified.remember(path, actual)
        if actual != entry.sha256:
            raise ModelError(
                f"{path} is corrupt or was changed: its sha256 is {actual[:12]}…, "
                f"model.json expects {entry.sha256[:12]}…"
            )
        paths[role] = path
    _check_external_data(folder, spec, paths)
    return paths


def _check_external_data(folder: Path, spec: ModelSpec, paths: dict[str, Path]) -> None:
    """Every file a (verified) graph makes ONNX Runtime read must be one model.json hashes."""
    from photofind.clip.onnx_external import external_locations

    listed = {os.path.normpath(p.absolute()): role for role, p in paths.items()}
    for role in GRAPH_ROLES:
        graph = paths[role]
        for location in external_locations(graph):
            where = os.path.normpath((graph.parent / location).absolute())
            inside = Path(where).is_relative_to(os.path.normpath(folder.absolute()))
            if not inside or listed.get(where) in (None, *GRAPH_ROLES):
                raise ModelError(
                    f"{graph} reads external data from {location!r}, which {MANIFEST} does "
                    "not list with a sha256; refused (every file a model uses must be hashed)"
                )
