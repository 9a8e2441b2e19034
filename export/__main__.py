"""``python -m export <subcommand>``: the torch-side tools.

Subcommands live in their own modules, imported only when chosen, so ``--help`` and the
subcommands that do not need torch start without it. A module registered in SUBCOMMANDS
provides ``add_args(parser)`` and ``run(args) -> int`` (names configurable per entry).

Errors the tools raise on purpose (ExportError, and photofind's own) print one line and exit
2; ``-v`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    module: str
    help: str
    add_args: str = "add_args"
    run: str = "run"


SUBCOMMANDS: dict[str, Subcommand] = {
    "convert": Subcommand(
        "export.onnx_export",
        "CLIP checkpoint (or random weights) -> photofind model package",
        add_args="add_convert_args",
        run="run_convert",
    ),
    "convert-hf": Subcommand(
        "export.hf_convert",
        "transformers CLIPModel / SiglipModel / AlignModel folder -> photofind model package",
    ),
    "synth": Subcommand("export.synth", "generate synthetic images and captions"),
    "train-tiny": Subcommand("export.train_tiny", "train the tiny CLIP on synthetic data"),
    "train-multilingual": Subcommand(
        "export.train_multilingual",
        "train tiny-multilingual's text tower (English, Vietnamese, French) against "
        "tiny-synthetic's image tower",
    ),
    "eval-multilingual": Subcommand(
        "export.multilingual_eval",
        "precision@10 and Recall@K of a package per language on held-out generated shapes",
    ),
    "int8": Subcommand(
        "export.quantize", "add int8 encoders to a model package, checked against fp32"
    ),
    "fp16": Subcommand(
        "export.fp16", "add float16 encoders (for a GPU) to a model package, checked against fp32"
    ),
}


def _load(name: str):
    entry = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as exc:
        if exc.name == entry.module:
            raise SystemExit(f"error: subcommand {name!r} is not available: {exc}") from None
        raise
    return getattr(module, entry.add_args), getattr(module, entry.run)


def build_parser(chosen: str | None) -> tuple[argparse.ArgumentParser, object]:
    """The parser, with arguments only for the chosen subcommand (others stay unimported)."""
    parser = argparse.ArgumentParser(
        prog="python -m export", description="photofind's torch tooling"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    # Also accepted after the subcommand; SUPPRESS keeps it from resetting a -v given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    run = None
    for name, entry in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=entry.help, description=entry.help, parents=[common])
        if name == chosen:
            add_args, run = _load(name)
            add_args(sub)
    return parser, run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if arg in SUBCOMMANDS), None)
    parser, run = build_parser(chosen)
    args = parser.parse_args(argv)
    from photofind.errors import PhotofindError

    try:
        return int(run(args) or 0)
    except PhotofindError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
