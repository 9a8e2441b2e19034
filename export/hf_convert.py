"""Hugging Face ``transformers`` checkpoints of CLIP, SigLIP and ALIGN -> photofind packages.

``python -m export convert-hf --model DIR --out PKG [--check]``: DIR is a ``save_pretrained``
folder (config.json, the weights, the tokenizer's files, preprocessor_config.json), read
locally. What each family needs:

| family | image tower | text tower | text inputs | pooled at |
|---|---|---|---|---|
| CLIPModel | ViT (or ResNet in OpenAI's code; HF has ViT only) | causal Transformer | input_ids | first end-of-text |
| SiglipModel | ViT, attention-pool head | Transformer | input_ids padded to full length | last position |
| AlignModel | EfficientNet | BERT | input_ids, attention_mask | [CLS] |

Both graphs output L2-normalised float32 vectors [N, D] (the exporter's contract,
``extra.normalized``). The package is format 2 (:mod:`export.package2`): the tokenizer is the
checkpoint's own ``tokenizer.json`` (``backend_tokenizer``, so a fast tokenizer is needed),
the pad id and context length from the tokenizer and the text config, the preprocessing from
the image processor's config: its size, the resize mode (CLIP: shortest side then centre
crop; SigLIP: "squash", both sides to the size; EfficientNet: squash to ``size`` then crop),
and its rescale/normalise steps folded into one mean/std on pixels / 255.

The graphs come from torch's TorchScript-based exporter (as :mod:`export.onnx_export`), with
``attn_implementation="eager"`` so attention traces to plain matmuls.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from export import ExportError
from export.package2 import TOKENIZER_FILE, hashed_files, hf_tokenizer, write_manifest_v2
from photofind.clip.package import ModelSpec

MIN_COSINE = 0.9999
FAMILIES = {"clip": "CLIPModel", "siglip": "SiglipModel", "align": "AlignModel"}
# PIL's resampling numbers, as image processors store them.
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
SAMPLE_TEXTS = (
    "a photo of a cat",
    "a diagram",
    "two dogs playing in the snow at night",
    "ảnh một hình tròn màu đỏ",
    "x",
)


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str  # "shortest" | "squash" | "squash-then-crop"
    interpolation: str
    resize_size: int  # the side resized to before any crop

    def to_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "interpolation": self.interpolation,
            "resize_size": self.resize_size,
        }


def _side(value, what: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value:
            if value["height"] != value["width"]:
                raise ExportError(f"{what} {value} is not square; photofind's towers take squares")
            return int(value["height"])
    raise ExportError(f"{what} {value!r} is not a size photofind understands")


def preprocessing_from_processor(config: dict) -> Preprocessing:
    """The runtime's preprocessing for an image processor's settings (its attributes or its
    preprocessor_config.json), or ExportError for a step it cannot express.

    The runtime computes (pixel / 255 - mean) / std. A processor computes pixel × factor,
    minus 1 with ``rescale_offset``, then (· - m) / s when it normalises: the same thing with
    std = s / (255 factor) and mean = (offset + m) / (255 factor).
    """
    size = config.get("size")
    shortest = isinstance(size, dict) and "shortest_edge" in size
    resize_side = _side(size, "size")
    crop = config.get("do_center_crop", False)
    image_size = _side(config["crop_size"], "crop_size") if crop else resize_side
    if shortest:
        resize = "shortest"
        if not crop:
            raise ExportError("a shortest-edge resize without a centre crop gives no square")
    elif crop and image_size != resize_side:
        resize = "squash-then-crop"
    else:
        resize = "squash"
    if config.get("include_top"):
        raise ExportError("include_top (a second division by std, for classifiers) is unsupported")
    factor = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    offset = 1.0 if config.get("rescale_offset") else 0.0
    if config.get("do_normalize", True):
        m = [float(v) for v in config["image_mean"]]
        s = [float(v) for v in config["image_std"]]
    else:
        m, s = [0.0] * 3, [1.0] * 3
    mean = tuple((offset + mi) / (255 * factor) for mi in m)
    std = tuple(si / (255 * factor) for si in s)
    resample = config.get("resample", 3)
    interpolation = RESAMPLE.get(int(resample), str(resample))
    return Preprocessing(image_size, mean, std, resize, interpolation, resize_side)


def _processor_settings(processor) -> dict:
    """The processor's settings as preprocessor_config.json spells them (sizes as dicts
    without their empty fields)."""
    settings = processor.to_dict()
    for key in ("size", "crop_size"):
        if isinstance(settings.get(key), dict):
            settings[key] = {k: v for k, v in settings[key].items() if v is not None}
    if settings.get("resample") is not None:
        settings["resample"] = int(settings["resample"])
    return settings


# ---- the towers ------------------------------------------------------------------------------


def _features(output) -> torch.Tensor:
    """transformers 5 returns the projected vectors as ``pooler_output``; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFImageTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(
            _features(self.model.get_image_features(pixel_values=pixel_values)), dim=-1
        )


class HFTextTower(nn.Module):
    """ids (and mask) -> unit vectors; ALIGN's BERT also gets zero token types."""

    def __init__(self, model, family: str):
        super().__init__()
        self.model = model
        self.family = family

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        kwargs = {"input_ids": input_ids}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if self.family == "align":
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        return F.normalize(_features(self.model.get_text_features(**kwargs)), dim=-1)


@dataclass
class HFModel:
    family: str
    model: nn.Module
    tokenizer: object  # a PreTrainedTokenizerFast
    preprocessing: Preprocessing
    context_length: int
    inputs: tuple[str, ...]
    dynamic_length: bool
    canonicalize: bool

    def embed_dim(self) -> int:
        """The width of the image vectors (which the text vectors share)."""
        size = self.preprocessing.image_size
        with torch.no_grad():
            return int(HFImageTower(self.model).eval()(torch.zeros(1, 3, size, size)).shape[-1])


def family_of(config) -> str:
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise ExportError(
            f"model type {family!r} is not one of {', '.join(FAMILIES)} "
            f"({', '.join(FAMILIES.values())})"
        )
    return family


def prepare(model, tokenizer, processor_settings: dict) -> HFModel:
    """What the export needs from a loaded model, its fast tokenizer and its processor's
    settings; ExportError for what cannot be exported faithfully."""
    family = family_of(model.config)
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError("the tokenizer is not a fast (tokenizers) one: no tokenizer.json to ship")
    if tokenizer.pad_token_id is None:
        raise ExportError("the tokenizer has no pad token")
    positions = int(model.config.text_config.max_position_embeddings)
    limit = getattr(tokenizer, "model_max_length", positions) or positions
    context_length = min(positions, int(limit))
    inputs = ("input_ids", "attention_mask") if family == "align" else ("input_ids",)
    return HFModel(
        family=family,
        model=model.eval().float(),
        tokenizer=tokenizer,
        preprocessing=preprocessing_from_processor(processor_settings),
        context_length=context_length,
        inputs=inputs,
        # SigLIP reads the last position: its ids must be padded to the full length.
        dynamic_length=family != "siglip",
        # SigLIP was trained on text without punctuation, in lower case (big_vision's and
        # open_clip's "canonicalize", which Immich applies too); its tokenizer.json does
        # neither, so the runtime's canonicalize does both. CLIP's and BERT's tokenizer.json
        # lower-case in their own normalizer and keep punctuation: nothing to add.
        canonicalize=family == "siglip",
    )


def load_pretrained(folder: Path) -> HFModel:
    """A ``save_pretrained`` folder, read locally (never the network)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder} has no config.json: not a save_pretrained folder")
    try:
        family_of(AutoConfig.from_pretrained(folder, local_files_only=True))
        model = AutoModel.from_pretrained(
            folder, attn_implementation="eager", local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{folder}: cannot be loaded by transformers: {exc}") from exc
    return prepare(model, tokenizer, _processor_settings(processor))


# ---- export and check ------------------------------------------------------------------------


def sample_text_inputs(
    hf: HFModel, texts=SAMPLE_TEXTS, padding: str | None = None
) -> dict[str, torch.Tensor]:
    """The tokenizer's own rows for ``texts``, padded (to the longest, or for SigLIP to the
    full context) as the runtime will pad them."""
    padding = padding or ("longest" if hf.dynamic_length else "max_length")
    batch = hf.tokenizer(
        list(texts),
        padding=padding,
        truncation=True,
        max_length=hf.context_length,
        return_tensors="pt",
    )
    return {name: batch[name].to(torch.int64) for name in hf.inputs}


def write_tokenizer_json(tokenizer, target: Path) -> None:
    """The fast tokenizer's own tokenizer.json, without the padding and truncation state a
    transformers call leaves in it: model.json's tokenizer entry (pad_id, context_length)
    tells the runtime how to pad and cut."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    data["padding"] = None
    data["truncation"] = None
    target.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def export_hf_package(hf: HFModel, out: Path, *, name: str, source: str = "", opset: int = 17):
    from export.onnx_export import export_graph

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer_json(hf.tokenizer, out / TOKENIZER_FILE)
    size = hf.preprocessing.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    export_graph(
        HFImageTower(hf.model).eval(),
        (pixels,),
        ("pixel_values",),
        out / "visual.onnx",
        opset,
        {"pixel_values": {0: "batch"}},
    )
    text = sample_text_inputs(hf, SAMPLE_TEXTS[:2])
    axes = {0: "batch", 1: "tokens"} if hf.dynamic_length else {0: "batch"}
    export_graph(
        HFTextTower(hf.model, hf.family).eval(),
        tuple(text[n] for n in hf.inputs),
        hf.inputs,
        out / "textual.onnx",
        opset,
        {n: axes for n in hf.inputs},
    )
    files = hashed_files(
        out, {"visual": "visual.onnx", "textual": "textual.onnx", "tokenizer": TOKENIZER_FILE}
    )
    config = hf.model.config
    if hf.family == "align":
        logit_scale = 1.0 / float(hf.model.temperature.item())
    else:
        logit_scale = float(hf.model.logit_scale.exp().item())
    extra = {
        "normalized": True,
        "outputs": "embeddings: L2-normalised float32 [N, embed_dim]",
        "hf_family": FAMILIES[hf.family],
        "preprocess": hf.preprocessing.to_dict(),
        "opset": opset,
        "textual_dynamic_length": hf.dynamic_length,
        "textual_input_type": "int64",
        "exporter": f"torch {torch.__version__} TorchScript-based ONNX exporter from transformers",
    }
    if hf.family == "siglip":
        # SigLIP scores pairs with a sigmoid: sigmoid(scale × cosine + bias). The scale is
        # model.json's logit_scale; the format has no field for the bias, so it is kept here.
        extra["logit_bias"] = float(hf.model.logit_bias.item())
    spec = ModelSpec(
        name=name,
        embed_dim=hf.embed_dim(),
        image_size=hf.preprocessing.image_size,
        context_length=hf.context_length,
        vocab_size=int(config.text_config.vocab_size),
        files=files,
        mean=hf.preprocessing.mean,
        std=hf.preprocessing.std,
        resize=hf.preprocessing.resize,
        interpolation=hf.preprocessing.interpolation,
        resize_size=hf.preprocessing.resize_size
        if hf.preprocessing.resize == "squash-then-crop"
        else 0,
        arch=FAMILIES[hf.family],
        description=f"{FAMILIES[hf.family]} exported from a transformers checkpoint",
        source=source,
        logit_scale=min(logit_scale, 1e4),
        extra=extra,
    )
    entry = hf_tokenizer(
        pad_id=hf.tokenizer.pad_token_id,
        context_length=hf.context_length,
        inputs=hf.inputs,
        canonicalize=hf.canonicalize,
    )
    write_manifest_v2(out, spec, entry)
    return out


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.min())


def check_hf_package(hf: HFModel, folder: Path, n_images: int = 3) -> dict:
    """torch vs ONNX Runtime (CPU) on random pixels and the tokenizer's rows of sample texts,
    read back through the shipped tokenizer.json; min cosine per tower."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    size = hf.preprocessing.image_size
    pixels = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(1))
    text = sample_text_inputs(hf)
    with torch.no_grad():
        want_image = HFImageTower(hf.model).eval()(pixels).numpy()
        want_text = HFTextTower(hf.model, hf.family).eval()(*(text[n] for n in hf.inputs)).numpy()
    got_image = _session(folder / "visual.onnx").run(None, {"pixel_values": pixels.numpy()})[0]
    feeds = {n: text[n].numpy() for n in hf.inputs}
    got_text = _session(folder / "textual.onnx").run(None, feeds)[0]
    # The shipped tokenizer.json, truncated at the context as the runtime will, gives the
    # ids the checkpoint's tokenizer gives.
    shipped = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    shipped.enable_truncation(max_length=hf.context_length)
    same_ids = all(
        shipped.encode(t).ids
        == hf.tokenizer(t, truncation=True, max_length=hf.context_length)["input_ids"]
        for t in SAMPLE_TEXTS
    )
    if hf.dynamic_length:
        # Rows padded to the whole context (as a runtime that does not cut them sends).
        full = sample_text_inputs(hf, padding="max_length")
        with torch.no_grad():
            want_full = HFTextTower(hf.model, hf.family).eval()(*(full[n] for n in hf.inputs))
        got_full = _session(folder / "textual.onnx").run(
            None, {n: full[n].numpy() for n in hf.inputs}
        )[0]
        want_text = np.concatenate([want_text, want_full.numpy()])
        got_text = np.concatenate([got_text, got_full])
    return {
        "visual_min_cosine": _min_cosine(want_image, got_image),
        "textual_min_cosine": _min_cosine(want_text, got_text),
        "min_cosine": min(_min_cosine(want_image, got_image), _min_cosine(want_text, got_text)),
        "tokenizer_json_ids_match": same_ids,
    }


# ---- the `convert-hf` subcommand -------------------------------------------------------------


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="a save_pretrained folder")
    parser.add_argument("--out", required=True, type=Path, help="package folder to write")
    parser.add_argument("--name", help="model name in model.json (default: the folder's name)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"compare torch and onnxruntime outputs; fail below cosine {MIN_COSINE}",
    )


def run(args) -> int:
    start = time.perf_counter()
    hf = load_pretrained(args.model)
    out = export_hf_package(
        hf, args.out, name=args.name or Path(args.model).resolve().name, source=str(args.model)
    )
    print(f"wrote {out} ({FAMILIES[hf.family]}) in {time.perf_counter() - start:.1f} s")
    if not args.check:
        return 0
    result = check_hf_package(hf, out)
    print(
        f"check: min cosine visual {result['visual_min_cosine']:.7f}, textual "
        f"{result['textual_min_cosine']:.7f}; tokenizer.json ids match: "
        f"{result['tokenizer_json_ids_match']}"
    )
    if not (result["min_cosine"] >= MIN_COSINE and result["tokenizer_json_ids_match"]):
        print(f"check FAILED: cosine below {MIN_COSINE} or tokenizer ids differ")
        return 1
    return 0
