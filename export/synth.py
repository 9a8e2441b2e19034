"""``python -m export synth``: write generated shape photos with COCO-format captions.

The generator itself lives in :mod:`photofind.synthetic` (the app's offline demo draws the
same scenes); this module re-exports it for the training code and adds the subcommand.
``python -m export synth --out DIR --count N --seed S`` writes the images and
``DIR/captions.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from photofind.synthetic import (
    BACKGROUND_COLOURS,
    BACKGROUND_KINDS,
    COLOURS,
    FORMATS,
    IMAGE_SIZES,
    PLURALS,
    POSITIONS,
    SHAPES,
    SIZES,
    STREAM_PUBLIC,
    STREAM_TRAIN,
    Scene,
    SynthObject,
    captions,
    describe,
    encode,
    generate,
    make_scene,
    render,
    scene_rng,
    write_dataset,
)

__all__ = [
    "BACKGROUND_COLOURS",
    "BACKGROUND_KINDS",
    "COLOURS",
    "FORMATS",
    "IMAGE_SIZES",
    "PLURALS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "STREAM_PUBLIC",
    "STREAM_TRAIN",
    "Scene",
    "SynthObject",
    "add_args",
    "captions",
    "describe",
    "encode",
    "generate",
    "make_scene",
    "render",
    "run",
    "scene_rng",
    "write_dataset",
]


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write into")
    parser.add_argument("--count", type=int, default=500, help="number of images (500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes (0)")
    parser.add_argument("--captions-per-image", type=int, default=3, help="captions per image (3)")


def run(args) -> int:
    if args.count < 1 or args.captions_per_image < 1:
        raise SystemExit("error: --count and --captions-per-image must be at least 1")
    target = write_dataset(args.out, args.count, args.seed, args.captions_per_image)
    print(f"wrote {args.count} images and {target}")
    return 0
