"""The model package: a folder that describes itself in ``model.json``.

A package holds ``model.json``, ``visual.onnx`` (float32 [N,3,H,W] -> [N,D]),
``textual.onnx`` (int64 [N,context_length] -> [N,D]) and the BPE vocabulary the
tokenizer reads. ``model.json`` lists every file with its sha256; nothing is used
before it has been checked against that list.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from photofind.errors import ModelError

FORMAT_VERSION = 1
MANIFEST = "model.json"
FILE_ROLES = ("visual", "textual", "vocab")

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


def _need(data: dict, key: str, kind, manifest: Path):
    if key not in data:
        raise ModelError(f"{manifest}: required field '{key}' is missing")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(f"{manifest}: field '{key}' should be {kind.__name__}, got {value!r}")
    return value


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
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest} cannot be read as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{manifest} should hold a JSON object")

    fmt = _need(data, "format", int, manifest)
    if fmt > FORMAT_VERSION:
        raise ModelError(
            f"{manifest} is format {fmt}; this photofind reads up to format "
            f"{FORMAT_VERSION}: update photofind"
        )
    files_raw = _need(data, "files", dict, manifest)
    files: dict[str, PackageFile] = {}
    for role in FILE_ROLES:
        entry = files_raw.get(role)
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ModelError(f"{manifest}: files.{role} with a 'path' is missing")
        rel = entry["path"]
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ModelError(f"{manifest}: files.{role} path {rel!r} leaves the package")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ModelError(f"{manifest}: files.{role} has no valid sha256")
        files[role] = PackageFile(rel, digest.lower())

    spec = ModelSpec(
        name=_need(data, "name", str, manifest),
        embed_dim=_need(data, "embed_dim", int, manifest),
        image_size=_need(data, "image_size", int, manifest),
        context_length=_need(data, "context_length", int, manifest),
        vocab_size=_need(data, "vocab_size", int, manifest),
        files=files,
        mean=_triple(data, "mean", CLIP_MEAN, manifest),
        std=_triple(data, "std", CLIP_STD, manifest),
        resize=data.get("resize", "shortest"),
        interpolation=data.get("interpolation", "bicubic"),
        arch=data.get("arch", ""),
        description=data.get("description", ""),
        source=data.get("source", ""),
        license=data.get("license", ""),
        logit_scale=float(data.get("logit_scale", 100.0)),
        format=fmt,
        extra=data.get("extra", {}),
    )
    for key in ("embed_dim", "image_size", "context_length", "vocab_size"):
        if getattr(spec, key) <= 0:
            raise ModelError(f"{manifest}: field '{key}' must be positive")
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
    return paths
