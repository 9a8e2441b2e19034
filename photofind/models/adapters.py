"""Turn other projects' published CLIP ONNX exports into photofind model packages.

Immich (immich-app on Hugging Face, written by machine-learning/export in its repository)
publishes, per model::

    config.json                  OpenCLIP model config: embed_dim, vision_cfg, text_cfg
    visual/model.onnx            input "image" float32 [N|1, 3, S, S] -> L2-normalised [N, D]
    visual/preprocess_cfg.json   size, mean, std, interpolation, resize_mode
    textual/model.onnx           input "text" int32 [N|1, 77] -> L2-normalised [N, D]
    textual/tokenizer.json       Hugging Face tokenizer (BPE vocab + merges)

What differs from a photofind package, and what this adapter does about it:

* The vocabulary: photofind reads CLIP's gzip'ed merges file. The merges are taken from
  tokenizer.json and the resulting id table (bytes, bytes + ``</w>``, one id per merge,
  then the two specials) is checked entry by entry against tokenizer.json's own vocab, so a
  tokenizer that would give different ids is refused rather than silently mis-tokenised.
  A model whose config names a Hugging Face tokenizer other than CLIP's (multilingual
  models) is refused: the runtime only speaks CLIP's BPE.
* Preprocessing: only "shortest side, bicubic, centre crop" is supported by the runtime;
  anything else in preprocess_cfg.json is refused.
* Input names and the output name differ: harmless, the runtime looks them up.
* Outputs are already normalised by Immich's exporter; the runtime normalises again anyway.
* Token ids are int32 in both generations of Immich's exporter, and the newer one exports
  without a dynamic batch axis (batch fixed at 1). photofind's runtime today feeds int64
  batches. The adapter cannot rewrite the graphs (the onnx package stays out of the app), so
  it records both facts in ``model.json`` under ``extra`` (``textual_input_type``,
  ``visual_batch``, ``textual_batch``) for the runtime to honour, and the store's load probe
  decides whether this photofind can run the package.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path, PurePosixPath

import numpy as np

from photofind.clip.model import check_batch_axes
from photofind.clip.package import (
    MANIFEST,
    MAX_CONTEXT_LENGTH,
    MAX_EMBED_DIM,
    MAX_IMAGE_SIZE,
    MAX_VOCAB_SIZE,
    ModelSpec,
    PackageFile,
    read_json_object,
    sha256_file,
    write_manifest,
)
from photofind.errors import ModelError

VOCAB_FILE = "vocab.txt.gz"
IMMICH_REQUIRED = (
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
)
_ONNX_TYPES = {"tensor(int32)": (np.int32, "int32"), "tensor(int64)": (np.int64, "int64")}


def detect_layout(folder: Path) -> str | None:
    """``"photofind"``, ``"immich"`` or None for a folder that is neither."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return "photofind"
    if all((folder / rel).is_file() for rel in IMMICH_REQUIRED):
        return "immich"
    return None


def find_package_root(folder: Path) -> tuple[Path, str]:
    """The folder holding a package inside an unpacked archive: itself or its only child."""
    folder = Path(folder)
    layout = detect_layout(folder)
    if layout:
        return folder, layout
    children = [c for c in folder.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir():
        layout = detect_layout(children[0])
        if layout:
            return children[0], layout
    raise ModelError(
        f"{folder} holds no model package: expected {MANIFEST} (a photofind package) or "
        f"Immich's layout ({', '.join(IMMICH_REQUIRED)}), at the top or in one folder"
    )


# CLIP's tokenizer.json is 3.5 MB; the catalogue allows 64 MB for the download.
MAX_TOKENIZER_JSON = 64 << 20


def _json(path: Path, max_bytes: int | None = None) -> dict:
    return read_json_object(path, max_bytes) if max_bytes else read_json_object(path)


def _positive_int(value, what: str, path: Path, most: int, least: int = 1) -> int:
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # OpenCLIP allows image_size as [H, W]
    if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most:
        text = repr(value)
        raise ModelError(
            f"{path}: {what} should be an integer in {least:,}..{most:,}, got "
            f"{text if len(text) <= 80 else text[:77] + '...'}"
        )
    return value


# -- the tokenizer -------------------------------------------------------------------------


def _merges_from_tokenizer(path: Path) -> tuple[list[tuple[str, str]], dict[str, int]]:
    data = _json(path, MAX_TOKENIZER_JSON)
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise ModelError(
            f"{path}: expected a BPE tokenizer model, found {model and model.get('type')!r}"
        )
    raw_merges, vocab = model.get("merges"), model.get("vocab")
    if not isinstance(raw_merges, list) or not isinstance(vocab, dict):
        raise ModelError(f"{path}: model.merges or model.vocab is missing")
    merges = []
    for number, item in enumerate(raw_merges):
        # tokenizers < 0.20 write "a b"; newer versions write ["a", "b"].
        pair = item.split(" ") if isinstance(item, str) else item
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(p, str) for p in pair)
        ):
            raise ModelError(f"{path}: merge #{number} is malformed: {item!r}")
        merges.append((pair[0], pair[1]))
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("content"), str):
            vocab.setdefault(added["content"], added.get("id"))
    return merges, vocab


def write_clip_vocab(tokenizer_json: Path, out: Path, vocab_size: int) -> int:
    """Write the gzip'ed merges file the runtime reads; return the merge count used.

    Refuses a tokenizer whose ids differ from the CLIP id layout photofind's tokenizer
    produces (checked for every one of the ``vocab_size`` ids).
    """
    from photofind.clip.tokenizer import EOT_TOKEN, SOT_TOKEN, base_vocabulary

    merges, vocab = _merges_from_tokenizer(tokenizer_json)
    count = vocab_size - 514
    if count <= 0 or len(merges) < count:
        raise ModelError(
            f"{tokenizer_json}: {len(merges)} merges, but a vocabulary of {vocab_size} ids "
            f"needs {count}"
        )
    table = base_vocabulary() + ["".join(m) for m in merges[:count]] + [SOT_TOKEN, EOT_TOKEN]
    for expected_id, token in enumerate(table):
        if vocab.get(token) != expected_id:
            raise ModelError(
                f"{tokenizer_json}: token {token!r} has id {vocab.get(token)!r} there, "
                f"CLIP's layout gives it {expected_id}; this tokenizer is not CLIP's BPE"
            )
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges[:count]]
    out.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0))
    return count


# -- the graphs ----------------------------------------------------------------------------


def inspect_graph(path: Path, want_dim: int) -> dict:
    """Input name/type/batch and output width of an ONNX graph, read by onnxruntime."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path} cannot be opened by ONNX Runtime: {exc}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelError(
            f"{path}: expected one input, found {names} (an attention-mask model is not supported)"
        )
    batch = inputs[0].shape[0] if inputs[0].shape else None
    out_shape = outputs[0].shape
    if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != want_dim):
        raise ModelError(f"{path}: output shape {out_shape}, expected [N, {want_dim}]")
    check_batch_axes(
        path,
        [d if isinstance(d, int) else None for d in inputs[0].shape],
        [d if isinstance(d, int) else None for d in out_shape],
    )
    return {
        "session": session,
        "input": inputs[0].name,
        "type": inputs[0].type,
        "shape": list(inputs[0].shape),
        "batch": batch if isinstance(batch, int) else None,
    }


def probe_graphs(visual: dict, textual: dict, spec: ModelSpec, ids: np.ndarray) -> None:
    """Run each graph once with inputs of its own types; check shape and finiteness."""
    s = spec.image_size
    pixels = np.zeros((1, 3, s, s), dtype=np.float32)
    dtype = _ONNX_TYPES[textual["type"]][0]
    for info, feed, tower in (
        (visual, pixels, "visual"),
        (textual, ids[:1].astype(dtype), "textual"),
    ):
        try:
            out = info["session"].run(None, {info["input"]: feed})[0]
        except Exception as exc:
            raise ModelError(f"the {tower} graph fails on one input: {exc}") from exc
        if out.shape != (1, spec.embed_dim) or not np.all(np.isfinite(out)):
            raise ModelError(
                f"the {tower} graph returned shape {out.shape} (finite: "
                f"{bool(np.all(np.isfinite(out)))}), expected (1, {spec.embed_dim})"
            )


# -- Immich --------------------------------------------------------------------------------


def adapt_immich(
    src: Path,
    out: Path,
    *,
    name: str,
    description: str = "",
    source: str = "",
    license: str = "",
    move: bool = False,
) -> ModelSpec:
    """Build a photofind package in the new folder ``out`` from Immich's layout in ``src``.

    ``move``: move the ONNX files instead of copying (``src`` is a staging folder of ours).
    """
    src, out = Path(src), Path(out)
    config_path = src / "config.json"
    config = _json(config_path)
    text_cfg, vision_cfg = config.get("text_cfg") or {}, config.get("vision_cfg") or {}
    if not isinstance(text_cfg, dict) or not isinstance(vision_cfg, dict):
        raise ModelError(f"{config_path}: text_cfg and vision_cfg should be objects")
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if text_cfg.get(key):
            raise ModelError(
                f"{config_path}: the text tower uses the Hugging Face model/tokenizer "
                f"{text_cfg[key]!r}; photofind's runtime only has CLIP's own BPE tokenizer"
            )
    embed_dim = _positive_int(config.get("embed_dim"), "embed_dim", config_path, MAX_EMBED_DIM)
    image_size = _positive_int(
        vision_cfg.get("image_size"), "vision_cfg.image_size", config_path, MAX_IMAGE_SIZE
    )
    context_length = _positive_int(
        text_cfg.get("context_length", 77),
        "text_cfg.context_length",
        config_path,
        MAX_CONTEXT_LENGTH,
        2,
    )
    vocab_size = _positive_int(
        text_cfg.get("vocab_size", 49408), "text_cfg.vocab_size", config_path, MAX_VOCAB_SIZE, 514
    )

    pre_path = src / "visual" / "preprocess_cfg.json"
    pre = _json(pre_path)
    size = _positive_int(pre.get("size", image_size), "size", pre_path, MAX_IMAGE_SIZE)
    if size != image_size:
        raise ModelError(f"{pre_path}: size {size} differs from config.json's {image_size}")
    resize, interp = pre.get("resize_mode", "shortest"), pre.get("interpolation", "bicubic")
    if resize != "shortest" or interp != "bicubic":
        raise ModelError(
            f"{pre_path}: resize_mode {resize!r} / interpolation {interp!r}; photofind supports "
            "only 'shortest' / 'bicubic'"
        )
    mean, std = pre.get("mean"), pre.get("std")
    for key, value in (("mean", mean), ("std", std)):
        numbers = isinstance(value, list) and len(value) == 3
        numbers = numbers and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            for v in value
        )
        if not numbers or (key == "std" and any(v <= 0 for v in value)):
            raise ModelError(f"{pre_path}: {key} should be three numbers, got {value!r:.80}")

    out.mkdir(parents=True)
    merges = write_clip_vocab(src / "textual" / "tokenizer.json", out / VOCAB_FILE, vocab_size)
    place = shutil.move if move else shutil.copyfile
    placed = [*_place_graph(src, out, "visual", place), *_place_graph(src, out, "textual", place)]
    visual_path, textual_path = out / dict(placed)["visual"], out / dict(placed)["textual"]

    visual = inspect_graph(visual_path, embed_dim)
    textual = inspect_graph(textual_path, embed_dim)
    if visual["type"] != "tensor(float)":
        raise ModelError(f"{visual_path}: input type {visual['type']}, expected float")
    if textual["type"] not in _ONNX_TYPES:
        raise ModelError(f"{textual_path}: input type {textual['type']}, expected int")
    shape = textual["shape"]
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != context_length):
        raise ModelError(
            f"{textual_path}: input shape {textual['shape']}, expected [N, {context_length}]"
        )

    spec = ModelSpec(
        name=name,
        embed_dim=embed_dim,
        image_size=image_size,
        context_length=context_length,
        vocab_size=vocab_size,
        files={
            role: PackageFile(path, sha256_file(out / path))
            for role, path in (*placed, ("vocab", VOCAB_FILE))
        },
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        arch=str(config.get("arch", "")) or _arch_guess(vision_cfg),
        description=description,
        source=source,
        license=license,
        extra={
            "adapted_from": "immich",
            "bpe_merges": merges,
            "textual_input_type": _ONNX_TYPES[textual["type"]][1],
            "visual_batch": visual["batch"],
            "textual_batch": textual["batch"],
        },
    )
    from photofind.clip.tokenizer import ClipTokenizer

    ids = ClipTokenizer(out / VOCAB_FILE, context_length=context_length, vocab_size=vocab_size)(
        ["a photo of a cat"]
    )
    probe_graphs(visual, textual, spec, ids)
    write_manifest(out, spec)
    return spec


def _place_graph(src: Path, out: Path, tower: str, place) -> list[tuple[str, str]]:
    """Move or copy one tower's graph and its external-data files; (role, path) of each.

    A graph without external data becomes ``TOWER.onnx``. One with external data keeps a
    folder of its own (``TOWER/model.onnx`` beside its data files), since the graph names
    them relative to itself; each data file is listed in model.json, so it is hashed.
    """
    from photofind.clip.onnx_external import external_locations

    graph = src / tower / "model.onnx"
    locations = external_locations(graph)
    if not locations:
        place(os.fspath(graph), os.fspath(out / f"{tower}.onnx"))
        return [(tower, f"{tower}.onnx")]
    pairs = [(tower, f"{tower}/model.onnx")]
    for number, location in enumerate(locations, start=1):
        rel = PurePosixPath(location.replace("\\", "/"))
        bad = rel.is_absolute() or ".." in rel.parts or rel == PurePosixPath("model.onnx")
        if bad or not (src / tower / rel).is_file():
            raise ModelError(
                f"{graph}: its external data {location!r} is not a file beside the graph"
            )
        target = out / tower / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        place(os.fspath(src / tower / rel), os.fspath(target))
        pairs.append(
            (f"{tower}_data" if number == 1 else f"{tower}_data{number}", f"{tower}/{rel}")
        )
    place(os.fspath(graph), os.fspath(out / tower / "model.onnx"))
    return pairs


def _arch_guess(vision_cfg: dict) -> str:
    width, patch = vision_cfg.get("width"), vision_cfg.get("patch_size")
    names = {(768, 32): "ViT-B-32", (768, 16): "ViT-B-16", (1024, 14): "ViT-L-14"}
    return names.get((width, patch), "")
