"""Write a photofind model package (two ONNX graphs, the vocabulary, model.json) from a CLIP.

Both graphs output **L2-normalised** float32 embeddings [N, D], so a dot product is a cosine;
model.json says so in ``extra.normalized``. Inputs:

- ``visual.onnx``:   ``pixel_values`` float32 [N, 3, S, S], already normalised with mean/std;
- ``textual.onnx``:  ``input_ids`` int64 [N, L], SOT ... EOT then zeros, L ≤ context_length.

The batch axis N is dynamic, and so is the token axis L of ``textual.onnx``: the runtime cuts
the ids after the last end-of-text token (a query of a few words runs 10 positions, not 77,
and the embedding is the same: the mask is causal). model.json's
``extra.textual_dynamic_length`` tells the runtime it may; packages without it get the full
context_length.

We use torch's TorchScript-based ("legacy") exporter: it needs nothing beyond torch and
onnx, and handles this architecture completely.

This module also holds the ``convert`` subcommand (``python -m export convert``).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time
import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch

from export import ExportError
from export.model import (
    ACTIVATIONS,
    ARCHS,
    CLIP,
    CLIPConfig,
    NormalizedImageEncoder,
    NormalizedTextEncoder,
    arch_config,
    clip_from_state_dict,
    config_from_state_dict,
    random_init_model,
)
from photofind.clip.package import (
    CLIP_MEAN,
    CLIP_STD,
    ModelSpec,
    PackageFile,
    sha256_file,
    write_manifest,
)

VISUAL_FILE = "visual.onnx"
TEXTUAL_FILE = "textual.onnx"
# Agreement the export must reach with torch before a package is called good.
MIN_COSINE = 0.9999


def _export_graph(
    module: torch.nn.Module,
    example: torch.Tensor,
    input_name: str,
    target: Path,
    opset: int,
    dynamic_input_axes: dict[int, str] | None = None,
) -> None:
    export_graph(
        module,
        (example,),
        (input_name,),
        target,
        opset,
        {input_name: {0: "batch", **(dynamic_input_axes or {})}},
    )


def export_graph(
    module: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    target: Path,
    opset: int,
    input_axes: dict[str, dict[int, str]],
    output_name: str = "embeddings",
) -> None:
    """Trace ``module`` on ``examples`` into ``target`` (atomically) with the legacy
    exporter; ``input_axes`` names the dynamic axes of each input, the output's batch axis
    is dynamic."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # We choose the legacy exporter on purpose (see the module docstring); its
            # deprecation notices, and those it raises about its own internals, are not news.
            warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            # Its notes on constant folding and index lowering, and the tracer's on Python
            # branches, are about graphs in general: each export here is checked against
            # torch on inputs other than the traced ones (check_package, check_hf_package).
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                tuple(examples),
                str(tmp),
                dynamo=False,
                input_names=list(input_names),
                output_names=[output_name],
                dynamic_axes={**input_axes, output_name: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
            )
        os.replace(tmp, target)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def example_ids(
    config: CLIPConfig, batch: int, generator: torch.Generator, max_words: int | None = None
) -> torch.Tensor:
    """Random token rows shaped like the tokenizer's: SOT, random ids, EOT, zero padding."""
    sot, eot = config.vocab_size - 2, config.vocab_size - 1
    ids = torch.zeros(batch, config.context_length, dtype=torch.int64)
    longest = config.context_length - 1 if max_words is None else max_words + 1
    for row in range(batch):
        length = int(torch.randint(0, longest, (1,), generator=generator))
        ids[row, 0] = sot
        ids[row, 1 : 1 + length] = torch.randint(0, sot, (length,), generator=generator)
        ids[row, 1 + length] = eot
    return ids


def export_package(
    model: CLIP,
    config: CLIPConfig,
    out_dir,
    *,
    name: str,
    vocab_path,
    description: str = "",
    source: str = "",
    license: str = "",
    opset: int = 17,
    arch: str = "",
    extra: dict | None = None,
) -> Path:
    """Export ``model`` as a photofind model package in ``out_dir``; return the folder."""
    out_dir = Path(out_dir)
    vocab_path = Path(vocab_path)
    if not vocab_path.is_file():
        raise ExportError(f"vocabulary {vocab_path} does not exist or is not a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, config.image_size, config.image_size, generator=generator)
    ids = example_ids(config, 2, generator)

    _export_graph(
        NormalizedImageEncoder(model), pixels, "pixel_values", out_dir / VISUAL_FILE, opset
    )
    _export_graph(
        NormalizedTextEncoder(model),
        ids,
        "input_ids",
        out_dir / TEXTUAL_FILE,
        opset,
        dynamic_input_axes={1: "tokens"},
    )
    _copy_atomic(vocab_path, out_dir / vocab_path.name)

    files = {
        role: PackageFile(file_name, sha256_file(out_dir / file_name))
        for role, file_name in (
            ("visual", VISUAL_FILE),
            ("textual", TEXTUAL_FILE),
            ("vocab", vocab_path.name),
        )
    }
    spec = ModelSpec(
        name=name,
        embed_dim=config.embed_dim,
        image_size=config.image_size,
        context_length=config.context_length,
        vocab_size=config.vocab_size,
        files=files,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        arch=arch,
        description=description,
        source=source,
        license=license,
        logit_scale=min(math.exp(model.logit_scale.item()), 100.0),
        extra={
            "normalized": True,
            "outputs": "embeddings: L2-normalised float32 [N, embed_dim]",
            "activation": config.activation,
            "config": config.to_dict(),
            "opset": opset,
            "textual_dynamic_length": True,
            "exporter": f"torch {torch.__version__} TorchScript-based ONNX exporter",
            **(extra or {}),
        },
    )
    write_manifest(out_dir, spec)
    return out_dir


def _cpu_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; the CPU-only test machines warn about CUDA
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _compare(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    cosine = (expected * actual).sum(-1) / (
        np.linalg.norm(expected, axis=-1) * np.linalg.norm(actual, axis=-1)
    )
    return float(np.abs(expected - actual).max()), float(cosine.min())


def check_package(model: CLIP, out_dir, n_images: int = 4, n_texts: int = 4, seed: int = 0) -> dict:
    """Run torch and onnxruntime (CPU) side by side on random inputs; compare unit vectors.

    Returns ``max_abs_diff`` and ``min_cosine`` over both towers, and the same per tower.
    """
    out_dir = Path(out_dir)
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n_images, 3, config.image_size, config.image_size, generator=generator)
    ids = example_ids(config, n_texts, generator)
    # Query-like rows (a few words), for the graph run on ids cut after the last EOT.
    short = example_ids(config, n_texts, generator, max_words=8)
    model = model.eval()
    with torch.no_grad():
        torch_image = NormalizedImageEncoder(model)(pixels).numpy()
        torch_text = NormalizedTextEncoder(model)(ids).numpy()
        torch_short = NormalizedTextEncoder(model)(short).numpy()
    onnx_image = _cpu_session(out_dir / VISUAL_FILE).run(None, {"pixel_values": pixels.numpy()})[0]
    text_session = _cpu_session(out_dir / TEXTUAL_FILE)
    onnx_text = text_session.run(None, {"input_ids": ids.numpy()})[0]
    # The runtime cuts the ids after the last end-of-text token: the graph must give the
    # vectors of the full rows.
    length = int(short.argmax(dim=-1).max()) + 1
    onnx_cut = text_session.run(None, {"input_ids": short[:, :length].numpy()})[0]
    for label, got, want in (
        ("visual", onnx_image, torch_image),
        ("textual", onnx_text, torch_text),
    ):
        if got.shape != want.shape or got.dtype != np.float32:
            raise ExportError(
                f"{out_dir / (label + '.onnx')}: output {got.dtype} {got.shape}, "
                f"expected float32 {want.shape}"
            )
    image_diff, image_cos = _compare(torch_image, onnx_image)
    text_diff, text_cos = _compare(torch_text, onnx_text)
    if onnx_cut.shape != torch_short.shape:
        raise ExportError(
            f"{out_dir / TEXTUAL_FILE}: ids cut to {length} tokens gave {onnx_cut.shape}, "
            f"expected {torch_short.shape}"
        )
    cut_diff, cut_cos = _compare(torch_short, onnx_cut)
    text_diff, text_cos = max(text_diff, cut_diff), min(text_cos, cut_cos)
    return {
        "max_abs_diff": max(image_diff, text_diff),
        "min_cosine": min(image_cos, text_cos),
        "visual": {"max_abs_diff": image_diff, "min_cosine": image_cos},
        "textual": {"max_abs_diff": text_diff, "min_cosine": text_cos},
    }


# ---- the `convert` subcommand ------------------------------------------------------------


def add_convert_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS), help="architecture name")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument(
        "--checkpoint", type=Path, help="OpenAI .pt, OpenCLIP .bin/.pt or .safetensors"
    )
    weights.add_argument(
        "--random-init", action="store_true", help="OpenAI's initialisation, seeded"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="package folder to write")
    parser.add_argument("--name", help="model name in model.json (default from arch and weights)")
    parser.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        help="override the activation (default: guessed from the checkpoint, or the arch's)",
    )
    parser.add_argument("--vocab", type=Path, help="BPE vocabulary (default: from open_clip_torch)")
    parser.add_argument("--description", default="")
    parser.add_argument("--source", default="")
    parser.add_argument("--license", default="")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"compare torch and onnxruntime outputs; fail below cosine {MIN_COSINE}",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write int8 encoders, checked against fp32 (export/quantize.py)",
    )


def _differences(inferred: CLIPConfig, published: CLIPConfig) -> list[str]:
    want = published.structure()
    return [
        f"{k} {v} (the {k} of the arch is {want[k]})"
        for k, v in inferred.structure().items()
        if want[k] != v
    ]


def load_model(args) -> tuple[CLIP, str, str]:
    """The CLIP the arguments ask for, its default name, and a line about its activation."""
    if args.random_init:
        config = arch_config(args.arch, args.activation)
        why = "--activation" if args.activation else f"the {args.arch} default"
        return (
            random_init_model(config, args.seed),
            f"{args.arch}-random-seed{args.seed}",
            f"activation: {config.activation} ({why})",
        )
    from export.checkpoint import load_checkpoint

    state, info = load_checkpoint(args.checkpoint)
    activation = args.activation or info.activation
    why = "set with --activation" if args.activation else info.activation_reason
    config = config_from_state_dict(state, activation)
    if differences := _differences(config, ARCHS[args.arch]):
        raise ExportError(
            f"{args.checkpoint} is not a {args.arch}: its " + "; ".join(differences[:4])
        )
    model = clip_from_state_dict(state, config, source=str(args.checkpoint))
    return (
        model,
        args.checkpoint.stem,
        f"activation: {activation} ({why}; override with --activation)",
    )


def run_convert(args) -> int:
    from export.vocab import find_clip_vocab

    start = time.perf_counter()
    vocab = args.vocab or find_clip_vocab()
    model, default_name, activation_line = load_model(args)
    print(activation_line)
    out = export_package(
        model,
        model.config,
        args.out,
        name=args.name or default_name,
        vocab_path=vocab,
        description=args.description
        or (f"{args.arch} with random weights (seed {args.seed})" if args.random_init else ""),
        source=args.source or (str(args.checkpoint.name) if args.checkpoint else "random init"),
        license=args.license,
        opset=args.opset,
        arch=args.arch,
    )
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    if getattr(args, "int8", False):
        from export.quantize import add_int8, check

        add_int8(out)
        verdict = check(out)
        print(
            f"int8: image cosine >= {verdict['image_cosine_min']}, image encoder "
            f"{verdict['image_speedup']}x; "
            + ("used by precision 'fast'" if verdict["passed"] else "not used: ")
            + "; ".join(verdict["refused_because"])
        )
    if not args.check:
        return 0
    result = check_package(model, out)
    print(
        f"check: max abs diff {result['max_abs_diff']:.3g}, "
        f"min cosine {result['min_cosine']:.7f} (torch vs onnxruntime CPU)"
    )
    if not result["min_cosine"] >= MIN_COSINE:
        print(f"check FAILED: cosine below {MIN_COSINE}")
        return 1
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0
