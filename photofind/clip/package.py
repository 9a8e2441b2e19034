"""The model package: a folder that describes itself in ``model.json``.

A package holds ``model.json``, the two ONNX graphs (image: float32 [N|1, 3, S, S] -> [N, D];
text: int32 or int64 ids [N|1, L], optionally with an attention mask, -> [N, D]), their
external-data files, and the tokenizer's files. ``model.json`` lists every file with its
sha256; nothing is used before it has been checked against that list (hashed as a stream,
so a file of any size, over 2 GiB included, is checked in constant memory), and a graph that
reads a file the list does not name is refused, so every byte a model uses is hashed.

Format 2 (written by photofind's exporters and adapters; format 1 packages still load)::

    {
      "format": 2,
      "name": "ViT-B-32-openai",          # required, text
      "arch": "ViT-B-32", "description": "...", "source": "...", "license": "...",
      "embed_dim": 512,                    # required, 1..16384
      "image_size": 224,                   # required, 1..2048
      "mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276],   # default: CLIP's
      "resize": "shortest",                # "shortest" (short side to S, centre crop),
                                           # "squash" (both sides to S, aspect not kept),
                                           # "letterbox" (long side to S, padded with fill),
                                           # "squash-then-crop" (both sides to resize_size,
                                           # then the centre S x S: EfficientNet / ALIGN)
      "resize_size": 256,                  # squash-then-crop only, required: S..2048
      "interpolation": "bicubic",          # bicubic | bilinear | nearest | lanczos | box
                                           # | hamming (Pillow's filters)
      "fill": 0,                           # letterbox padding, 0..255 (default 0)
      "context_length": 77,                # required unless tokenizer.context_length is set
      "vocab_size": 49408,                 # clip-bpe: required, 514..; hf: optional
      "logit_scale": 100.0,
      "tokenizer": {                       # default: clip-bpe on files.vocab
        "kind": "hf",                      # "clip-bpe" | "hf"
        "file": "tokenizer",               # the role in "files" (default: "vocab" for
                                           # clip-bpe, "tokenizer" for hf)
        "context_length": 64,              # default: the top-level context_length
        "pad": "<pad>",                    # hf: pad token (text) or id (int); default: the
                                           # tokenizer.json padding token, else id 0; every
                                           # row is padded to context_length (the mask says
                                           # where the text ends)
        "canonicalize": false,             # hf: strip ASCII punctuation and lower-case
                                           # first (SigLIP's "canonicalize" clean); a
                                           # tokenizer.json that lower-cases in its own
                                           # normalizer needs nothing here
        "language_prefix": {               # hf, optional: a token put before the text,
          "codes": {"en": "eng_Latn", "vi": "vie_Latn"},   # per language (BCP 47 / POSIX
          "default": "eng_Latn"            # code, matched whole, then its first part)
        },
        "inputs": {"input_ids": "ids", "attention_mask": "mask"}
                                           # optional: which graph input gets the ids and
                                           # which the mask; default: a one-input graph gets
                                           # the ids, a two-input one by name (*mask* = mask)
      },
      "files": {                           # role -> {path, sha256, size (optional)}
        "visual":   {"path": "visual/model.onnx", "sha256": "..."},
        "textual":  {"path": "textual/model.onnx", "sha256": "..."},
        "tokenizer": {"path": "tokenizer.json", "sha256": "..."},
        "visual_data": {"path": "visual/4f1e....", "sha256": "...", "size": 4051000000},
        "visual_int8": {"path": "visual_int8.onnx", "sha256": "..."}
      },
      "extra": {...}                       # free-form; see _extra for the keys checked
    }

Roles: ``visual`` and ``textual`` (the graphs) and the tokenizer's file are required; any
other role name is allowed (external-data files of any name, ``visual_int8`` /
``textual_int8`` variants, tokenizer_config.json, ...), each hashed like the rest. Integer
input types and fixed batch axes are read from the graphs themselves when they are opened:
a graph whose batch axis is 1 runs one row at a time. Format 1 is the same without the
``tokenizer`` object (always clip-bpe on ``files.vocab``), with ``context_length`` and
``vocab_size`` required and only "shortest" / "bicubic" preprocessing.

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

FORMAT_VERSION = 2
MANIFEST = "model.json"
# Format 1's three required roles; format 2 requires the graphs and the tokenizer's file.
FILE_ROLES = ("visual", "textual", "vocab")
GRAPH_ROLES = ("visual", "textual")
TOKENIZER_KINDS = ("clip-bpe", "hf")
RESIZE_MODES = ("shortest", "squash", "letterbox", "squash-then-crop")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
INPUT_PARTS = ("ids", "mask")
MAX_LANGUAGE_CODES = 1_000
# Bounds on what model.json may claim, far above any published CLIP (ViT-bigG: 1280-d,
# 224 px, 77 tokens, 49,408 ids) and low enough that nothing sized by them is dangerous.
MAX_EMBED_DIM = 16_384
MAX_IMAGE_SIZE = 2_048  # a [1, 3, S, S] float32 probe: 50 MB
MAX_CONTEXT_LENGTH = 4_096  # a [64, L] int64 token batch: 2 MB
MAX_VOCAB_SIZE = 1_000_000
MAX_BATCH = 4_096
# Old M-CLIP exports keep every tensor in a file of its own: hundreds of files.
MAX_FILES = 4_096
# A manifest is a few kilobytes; a JSON reader is not a place for a gigabyte.
MAX_JSON_BYTES = 1 << 20

# CLIP's published preprocessing constants (OpenAI and OpenCLIP ViT models alike).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PackageFile:
    path: str
    sha256: str
    size: int | None = None  # bytes, when model.json says (listing only; the hash decides)


@dataclass(frozen=True)
class TokenizerSpec:
    """How text becomes the text graph's inputs (model.json's ``tokenizer`` object)."""

    kind: str = "clip-bpe"
    file: str = "vocab"  # the role in ModelSpec.files
    context_length: int = 77
    pad: str | int | None = None
    canonicalize: bool = False
    language_codes: dict[str, str] = field(default_factory=dict)
    default_language: str = ""
    inputs: dict[str, str] = field(default_factory=dict)  # graph input name -> ids | mask

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind, "file": self.file, "context_length": self.context_length}
        if self.pad is not None:
            out["pad"] = self.pad
        if self.canonicalize:
            out["canonicalize"] = True
        if self.language_codes:
            out["language_prefix"] = {
                "codes": dict(self.language_codes),
                "default": self.default_language,
            }
        if self.inputs:
            out["inputs"] = dict(self.inputs)
        return out

    def prefix_for(self, language: str | None) -> str:
        """The language token to put before a text ("" when the model takes none)."""
        if not self.language_codes:
            return ""
        if language:
            code = language.split(".")[0].replace("_", "-")
            for key in (code, code.split("-")[0]):
                for known, token in self.language_codes.items():
                    if known.lower() == key.lower():
                        return token
        return self.default_language


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
    tokenizer: TokenizerSpec | None = None  # None: clip-bpe on files.vocab
    fill: int = 0  # letterbox padding
    resize_size: int = 0  # squash-then-crop: the side squashed to before the centre crop

    @property
    def text(self) -> TokenizerSpec:
        """The tokenizer (format 1 and a missing object: CLIP's BPE on files.vocab)."""
        if self.tokenizer is not None:
            return self.tokenizer
        return TokenizerSpec(context_length=self.context_length)

    @property
    def graphs(self) -> dict[str, PackageFile]:
        """Every ONNX graph of the package by role (the two towers and any variants)."""
        return {
            r: f
            for r, f in self.files.items()
            if r in GRAPH_ROLES or f.path.lower().endswith(".onnx")
        }

    def to_json(self) -> dict:
        fmt = max(self.format, 2) if (self.tokenizer or self.resize != "shortest") else self.format
        return {
            "format": fmt,
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
            **({"vocab_size": self.vocab_size} if self.vocab_size else {}),
            "logit_scale": self.logit_scale,
            **({"fill": self.fill} if self.resize == "letterbox" else {}),
            **({"resize_size": self.resize_size} if self.resize == "squash-then-crop" else {}),
            **({"tokenizer": self.text.to_json()} if fmt >= 2 else {}),
            "files": {role: _file_json(f) for role, f in self.files.items()},
            **({"extra": self.extra} if self.extra else {}),
        }


def _file_json(entry: PackageFile) -> dict:
    out: dict = {"path": entry.path, "sha256": entry.sha256}
    if entry.size is not None:
        out["size"] = entry.size
    return out


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
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ModelError(f"{manifest}: files.{role}.size should be a byte count")
    return PackageFile(rel, digest.lower(), size)


def _tokenizer(data: dict, files: dict, manifest: Path, fmt: int) -> TokenizerSpec | None:
    """model.json's ``tokenizer`` object, checked (None in format 1 / when absent)."""
    raw = data.get("tokenizer")
    if fmt < 2 or raw is None:
        if "vocab" not in files:
            raise ModelError(f"{manifest}: files.vocab with a 'path' is missing")
        return None
    where = f"{manifest}: tokenizer"
    if not isinstance(raw, dict):
        raise ModelError(f"{where} should be an object, got {_short(raw)}")
    kind = raw.get("kind")
    if kind not in TOKENIZER_KINDS:
        raise ModelError(f"{where}.kind should be one of {TOKENIZER_KINDS}, got {_short(kind)}")
    role = raw.get("file", "vocab" if kind == "clip-bpe" else "tokenizer")
    if not isinstance(role, str) or role not in files:
        raise ModelError(f"{where}.file {_short(role)} is not a role listed in files")
    length = raw.get("context_length", data.get("context_length"))
    if not isinstance(length, int) or isinstance(length, bool):
        raise ModelError(f"{where}.context_length (or context_length) is missing")
    if not 2 <= length <= MAX_CONTEXT_LENGTH:
        raise ModelError(f"{where}.context_length should be 2..{MAX_CONTEXT_LENGTH:,}")
    pad = raw.get("pad")
    if pad is not None and not (
        isinstance(pad, str) or (isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0)
    ):
        raise ModelError(f"{where}.pad should be a token or an id, got {_short(pad)}")
    if not isinstance(raw.get("canonicalize", False), bool):
        raise ModelError(f"{where}.canonicalize should be true or false")
    codes, default = {}, ""
    prefix = raw.get("language_prefix")
    if prefix is not None:
        codes, default = prefix.get("codes") if isinstance(prefix, dict) else None, ""
        default = prefix.get("default", "") if isinstance(prefix, dict) else None
        ok = isinstance(codes, dict) and 0 < len(codes) <= MAX_LANGUAGE_CODES
        ok = ok and all(isinstance(k, str) and isinstance(v, str) for k, v in codes.items())
        if not ok or not isinstance(default, str):
            raise ModelError(
                f"{where}.language_prefix should be {{codes: {{language: token}}, default}}"
            )
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict) or not all(
        isinstance(k, str) and v in INPUT_PARTS for k, v in inputs.items()
    ):
        raise ModelError(f"{where}.inputs should map graph input names to 'ids' or 'mask'")
    return TokenizerSpec(
        kind=kind,
        file=role,
        context_length=length,
        pad=pad,
        canonicalize=raw.get("canonicalize", False),
        language_codes=dict(codes),
        default_language=default,
        inputs=dict(inputs),
    )


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
    required = FILE_ROLES if fmt < 2 else GRAPH_ROLES
    missing = [role for role in required if role not in files_raw]
    if missing:
        raise ModelError(f"{manifest}: files.{missing[0]} with a 'path' is missing")
    # The graphs first, then the rest (tokenizer, external data) in the file's order.
    roles = [*required, *(r for r in files_raw if r not in required)]
    files = {role: _file_entry(role, files_raw[role], manifest) for role in roles}
    tokenizer = _tokenizer(data, files, manifest, fmt)
    clip_bpe = tokenizer is None or tokenizer.kind == "clip-bpe"
    if fmt < 2 or "context_length" in data or tokenizer is None:
        # Start and end of text, at least.
        context_length = _bounded(data, "context_length", MAX_CONTEXT_LENGTH, manifest, 2)
    else:
        context_length = tokenizer.context_length
    if clip_bpe or "vocab_size" in data:
        # 512 byte tokens and the two specials, at least, for CLIP's BPE.
        vocab_size = _bounded(data, "vocab_size", MAX_VOCAB_SIZE, manifest, 514 if clip_bpe else 1)
    else:
        vocab_size = 0
    fill = data.get("fill", 0)
    if not isinstance(fill, int) or isinstance(fill, bool) or not 0 <= fill <= 255:
        raise ModelError(f"{manifest}: field 'fill' should be 0..255, got {_short(fill)}")

    resize_size = 0
    if data.get("resize") == "squash-then-crop":
        image_size = _bounded(data, "image_size", MAX_IMAGE_SIZE, manifest)
        resize_size = _bounded(data, "resize_size", MAX_IMAGE_SIZE, manifest, image_size)

    spec = ModelSpec(
        name=_need(data, "name", str, manifest),
        embed_dim=_bounded(data, "embed_dim", MAX_EMBED_DIM, manifest),
        image_size=_bounded(data, "image_size", MAX_IMAGE_SIZE, manifest),
        context_length=context_length,
        vocab_size=vocab_size,
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
        tokenizer=tokenizer,
        fill=fill,
        resize_size=resize_size,
    )
    if tokenizer is not None and tokenizer.context_length != context_length:
        raise ModelError(
            f"{manifest}: context_length {context_length} and tokenizer.context_length "
            f"{tokenizer.context_length} differ"
        )
    if not spec.name:
        raise ModelError(f"{manifest}: field 'name' is empty")
    modes = RESIZE_MODES if fmt >= 2 else ("shortest",)
    filters = INTERPOLATIONS if fmt >= 2 else ("bicubic",)
    if spec.resize not in modes or spec.interpolation not in filters:
        raise ModelError(
            f"{manifest}: resize {spec.resize!r} / interpolation {spec.interpolation!r} "
            f"is not supported (format {fmt}: resize one of {modes}, interpolation one of "
            f"{filters})"
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
    graph_roles = tuple(spec.graphs)
    for role in graph_roles:
        graph = paths[role]
        for location in external_locations(graph):
            where = os.path.normpath((graph.parent / location).absolute())
            inside = Path(where).is_relative_to(os.path.normpath(folder.absolute()))
            if not inside or listed.get(where) in (None, *graph_roles):
                raise ModelError(
                    f"{graph} reads external data from {location!r}, which {MANIFEST} does "
                    "not list with a sha256; refused (every file a model uses must be hashed)"
                )
