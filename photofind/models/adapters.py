"""Turn other projects' published CLIP ONNX exports into photofind model packages.

Immich (immich-app on Hugging Face, written by machine-learning/export in its repository)
publishes, per model::

    config.json                  OpenCLIP model config: embed_dim, vision_cfg, text_cfg
    visual/model.onnx            input "image" float32 [N|1, 3, S, S] -> [N, D]
    visual/preprocess_cfg.json   size, mean, std, interpolation, resize_mode, fill_color
    textual/model.onnx           "text" int32 [N|1, L] (M-CLIP: "input_ids" and
                                 "attention_mask") -> [N, D]
    textual/tokenizer.json       the Hugging Face tokenizer (BPE, Unigram or WordPiece)
    textual/tokenizer_config.json  its pad token (and more)
    */<anything>                 external data of large graphs (UUID-named, Constant_*,
                                 *.bias, model.onnx_data, ...)

What the adapter does with it:

* The tokenizer: a plain OpenCLIP config (no ``hf_tokenizer_name`` / ``hf_model_name``)
  means CLIP's BPE: its merges are taken from tokenizer.json, checked id by id against
  CLIP's layout, and run by photofind's ``clip-bpe`` tokenizer, which reproduces OpenCLIP's
  ids (ftfy clean-up included) that the model was trained with. Every other model
  (SigLIP, NLLB, XLM-R, M-CLIP) keeps its tokenizer.json as the ``hf`` tokenizer, with
  tokenizer_config.json's pad token, the config's context length, SigLIP's
  "canonicalize" clean (``text_cfg.tokenizer_kwargs.clean``) and, for NLLB models, the
  Flores-200 language token before the text: what Immich's service does with these files.
* Preprocessing: preprocess_cfg.json's resize mode ("shortest", "squash", OpenCLIP's
  "longest" = letterbox) and interpolation go into model.json.
* The graphs and all their external-data files are moved in, each listed with its sha256.
  Input names, integer types and a batch fixed at 1 are read from the graphs by the runtime.
* The package is probed: loaded by the runtime, one sentence and one image encoded.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path, PurePosixPath

import numpy as np

from photofind.clip.package import (
    INTERPOLATIONS,
    MANIFEST,
    MAX_CONTEXT_LENGTH,
    MAX_EMBED_DIM,
    MAX_IMAGE_SIZE,
    MAX_VOCAB_SIZE,
    RESIZE_MODES,
    ModelSpec,
    PackageFile,
    TokenizerSpec,
    read_json_object,
    sha256_file,
    write_manifest,
)
from photofind.errors import ModelError, PhotofindError
from photofind.models.languages import FLORES_200

VOCAB_FILE = "vocab.txt.gz"
HF_TOKENIZER_FILE = "tokenizer.json"
# OpenCLIP's names for the resize modes that photofind names otherwise.
RESIZE_ALIASES = {"longest": "letterbox"}
# What Immich's preprocess_cfg.json can say (squash-then-crop needs a resize_size it lacks).
IMMICH_RESIZE_MODES = tuple(m for m in RESIZE_MODES if m != "squash-then-crop")
IMMICH_REQUIRED = (
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
)


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


# -- Immich --------------------------------------------------------------------------------


def _pad_token(src: Path):
    """tokenizer_config.json's pad token (text; older files write an AddedToken object)."""
    path = src / "textual" / "tokenizer_config.json"
    if not path.is_file():
        return None
    pad = _json(path).get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    return pad if isinstance(pad, str) and pad else None


def _preprocessing(src: Path, image_size: int) -> dict:
    pre_path = src / "visual" / "preprocess_cfg.json"
    pre = _json(pre_path)
    size = _positive_int(pre.get("size", image_size), "size", pre_path, MAX_IMAGE_SIZE)
    if size != image_size:
        raise ModelError(f"{pre_path}: size {size} differs from config.json's {image_size}")
    resize = pre.get("resize_mode", "shortest")
    resize = RESIZE_ALIASES.get(resize, resize)
    interp = pre.get("interpolation", "bicubic")
    if resize not in IMMICH_RESIZE_MODES or interp not in INTERPOLATIONS:
        raise ModelError(
            f"{pre_path}: resize_mode {pre.get('resize_mode')!r} / interpolation {interp!r}; "
            f"photofind supports {IMMICH_RESIZE_MODES} (and 'longest') / {INTERPOLATIONS}"
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
    fill = pre.get("fill_color", 0)
    fill = fill if isinstance(fill, int) and not isinstance(fill, bool) and 0 <= fill <= 255 else 0
    return {
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "resize": resize,
        "interpolation": interp,
        "fill": fill,
    }


def _is_nllb(name: str, text_cfg: dict) -> bool:
    hf_name = str(text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name") or "")
    return name.lower().startswith("nllb") or "nllb" in hf_name.lower()


def adapt_immich(
    src: Path,
    out: Path,
    *,
    name: str,
    description: str = "",
    source: str = "",
    license: str = "",
    move: bool = False,
    repo: str = "",
    probe: bool = True,
    extra: dict | None = None,
    arch: str = "",
) -> ModelSpec:
    """Build a photofind package in the new folder ``out`` from Immich's layout in ``src``.

    ``move``: move the files instead of copying (``src`` is a staging folder of ours).
    ``repo``: the Immich model name (NLLB models are known by it, as Immich knows them).
    ``probe``: load the package and encode one sentence and one image (the store probes
    itself and passes False). ``extra``: more for model.json's extra (the hub commit).
    """
    src, out = Path(src), Path(out)
    config_path = src / "config.json"
    config = _json(config_path)
    text_cfg, vision_cfg = config.get("text_cfg") or {}, config.get("vision_cfg") or {}
    if not isinstance(text_cfg, dict) or not isinstance(vision_cfg, dict):
        raise ModelError(f"{config_path}: text_cfg and vision_cfg should be objects")
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
    pre = _preprocessing(src, image_size)
    hf = bool(text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name"))
    tokenizer_json = src / "textual" / "tokenizer.json"
    model = _json(tokenizer_json, MAX_TOKENIZER_JSON).get("model")
    if not hf and not (isinstance(model, dict) and model.get("type") == "BPE"):
        hf = True  # M-CLIP configs describe the image tower only; the text is XLM-R / LaBSE

    out.mkdir(parents=True)
    place = shutil.move if move else shutil.copyfile
    placed = [*_place_graph(src, out, "visual", place), *_place_graph(src, out, "textual", place)]
    extra = {"adapted_from": "immich", **({"immich_name": repo} if repo else {}), **(extra or {})}
    if hf:
        vocab_size = 0
        shutil.copyfile(tokenizer_json, out / HF_TOKENIZER_FILE)
        placed.append(("tokenizer", HF_TOKENIZER_FILE))
        kwargs = text_cfg.get("tokenizer_kwargs") or {}
        nllb = _is_nllb(repo or name, text_cfg)
        tokenizer = TokenizerSpec(
            kind="hf",
            file="tokenizer",
            context_length=context_length,
            pad=_pad_token(src),
            canonicalize=isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize",
            language_codes=dict(FLORES_200) if nllb else {},
            default_language="eng_Latn" if nllb else "",
        )
    else:
        vocab_size = _positive_int(
            text_cfg.get("vocab_size", 49408),
            "text_cfg.vocab_size",
            config_path,
            MAX_VOCAB_SIZE,
            514,
        )
        extra["bpe_merges"] = write_clip_vocab(tokenizer_json, out / VOCAB_FILE, vocab_size)
        placed.append(("vocab", VOCAB_FILE))
        tokenizer = TokenizerSpec(context_length=context_length)

    spec = ModelSpec(
        name=name,
        embed_dim=embed_dim,
        image_size=image_size,
        context_length=context_length,
        vocab_size=vocab_size,
        files={
            role: PackageFile(path, sha256_file(out / path), (out / path).stat().st_size)
            for role, path in placed
        },
        arch=str(config.get("arch", "")) or arch or _arch_guess(vision_cfg),
        description=description,
        source=source,
        license=license,
        extra=extra,
        tokenizer=tokenizer,
        **pre,
    )
    write_manifest(out, spec)
    if probe:
        probe_package(out, spec)
    return spec


def probe_package(folder: Path, spec: ModelSpec, provider: str = "cpu", verified=None) -> None:
    """Load the package as the app will and encode one sentence and one blank image."""
    from photofind.clip.model import ClipModel

    try:
        model = ClipModel(folder, spec, provider=provider, verified=verified)
        text = model.encode_texts(["a photo of a cat"])
        size = spec.image_size
        image = model.encode_pixels(np.zeros((1, 3, size, size), dtype=np.float32))
    except PhotofindError as exc:
        raise ModelError(f"the package does not load: {exc}") from exc
    for what, vectors in (("text", text), ("image", image)):
        if vectors.shape != (1, spec.embed_dim) or not np.all(np.isfinite(vectors)):
            raise ModelError(
                f"the package's {what} encoder gives shape {vectors.shape} or non-finite "
                "values on a test input"
            )


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
