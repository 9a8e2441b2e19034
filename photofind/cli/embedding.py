"""``photofind embed`` and ``photofind eval``: the model on its own, without a library."""

from __future__ import annotations

import argparse
from pathlib import Path

from photofind.cli.context import Command, Context, StageProgress, emit_json
from photofind.errors import PhotofindError


def _encode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", action="append", default=[], help="a sentence to embed")
    p.add_argument("--image", action="append", default=[], help="a photo to embed")


def _embed(args: argparse.Namespace, ctx: Context) -> int:
    model = ctx.load_model()
    out = {"model": model.info.name, "provider": model.info.provider, "items": []}
    if args.image:
        for path, vec in zip(args.image, model.encode_images(args.image)):
            out["items"].append({"image": path, "vector": [round(float(v), 6) for v in vec]})
    if args.text:
        for text, vec in zip(args.text, model.encode_texts(args.text)):
            out["items"].append({"text": text, "vector": [round(float(v), 6) for v in vec]})
    if not out["items"]:
        raise PhotofindError("nothing to embed: give --text and/or --image")
    emit_json(out)
    return 0


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, type=Path, help="folder of the images")
    p.add_argument("--captions", required=True, type=Path, help="COCO-format captions JSON")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def _eval(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.evaluate import evaluate

    model = ctx.load_model()
    with StageProgress() as progress:
        figures = evaluate(model, args.images, args.captions, progress=progress)
    if args.json:
        emit_json(figures)
        return 0
    print(f"model {figures['model']}: {figures['images']} images, {figures['captions']} captions")
    for direction in ("text_to_image", "image_to_text"):
        cells = "  ".join(f"{k} {v:.3f}" for k, v in figures[direction].items())
        print(f"{direction.replace('_', ' '):>14}: {cells}")
    return 0


COMMANDS = (
    Command(
        "embed", "print the embedding vectors of photos and sentences as JSON", _embed, _encode_args
    ),
    Command(
        "eval",
        "Recall@1/5/10 of the model, text->image and image->text, on a caption set",
        _eval,
        _eval_args,
    ),
)
