"""The ``photofind`` command line: the same engine as the app, for headless use.

Subcommands register themselves in :data:`COMMANDS`; each gets the parsed arguments and
a :class:`Context` holding the global options. Errors print one line (the traceback only
with ``--verbose``) and exit non-zero; library code never calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from photofind import __version__
from photofind.errors import PhotofindError
from photofind.paths import library_dir
from photofind.terminal import printable

log = logging.getLogger("photofind")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


@dataclass
class Context:
    library: Path
    model: str | None
    provider: str
    verbose: int

    def load_model(self):
        from photofind.clip import load_model
        from photofind.models.store import active_model

        # --model wins; else the library's choice from `photofind models use NAME`.
        model = self.model or active_model(self.library)
        if not model:
            raise PhotofindError(
                "no model chosen: pass --model NAME_OR_DIR or choose one with "
                "`photofind models use NAME` (for example tiny-synthetic, the small demo "
                "model that knows only generated shapes)"
            )
        return load_model(model, provider=self.provider, library=self.library)

    def load_library_model(self):
        """The model to index the library with: ``--model``, else the choice of
        ``photofind models use``, else the model whose vectors the library already holds
        (a library indexed from the app or with ``--model`` needs no second choice)."""
        from photofind.library.catalog import CATALOG_NAME, Catalog
        from photofind.library.library import load_model_by_id
        from photofind.models.store import active_model

        if self.model or active_model(self.library):
            return self.load_model()
        held = None
        if (self.library / CATALOG_NAME).is_file():
            with Catalog.open(self.library, readonly=True) as catalog:
                held = catalog.model_id
        if held is None:
            return self.load_model()  # nothing indexed yet: the "no model chosen" error
        model = load_model_by_id(self.library, held, provider=self.provider)
        if model is None:
            raise PhotofindError(
                f"the library {self.library} was indexed with model "
                f"{held.rpartition('@')[0]!r}, which is not installed here: install it, "
                "pass its package folder with --model, or choose another model with "
                "`photofind models use NAME` (the library is then re-indexed for it)"
            )
        return model


@dataclass
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int | None]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str):
    """Register a subcommand; the decorated function's ``arguments`` attribute adds flags."""

    def wrap(fn):
        adder = getattr(fn, "arguments", lambda parser: None)
        COMMANDS[name] = Command(help, adder, fn)
        return fn

    return wrap


def arguments(adder: Callable[[argparse.ArgumentParser], None]):
    def wrap(fn):
        fn.arguments = adder
        return fn

    return wrap


class StageProgress:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage on stderr."""

    def __init__(self):
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=stage, unit="", file=sys.stderr, leave=False)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def emit_json(value) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


# -- subcommands ------------------------------------------------------------------------


def _encode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", action="append", default=[], help="a sentence to embed")
    p.add_argument("--image", action="append", default=[], help="a photo to embed")


@command("embed", "print the embedding vectors of photos and sentences as JSON")
@arguments(_encode_args)
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


@command("eval", "Recall@1/5/10 of the model, text->image and image->text, on a caption set")
@arguments(_eval_args)
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


# -- the parser and the entry point -----------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Subcommand modules register themselves into COMMANDS when imported.
    import photofind.cli_gui  # noqa: F401
    import photofind.cli_library  # noqa: F401
    import photofind.cli_models  # noqa: F401
    import photofind.cli_people  # noqa: F401
    import photofind.cli_search  # noqa: F401
    import photofind.cli_watch  # noqa: F401

    parser = argparse.ArgumentParser(
        prog="photofind",
        description="Find photos on your own disk by what they show.",
    )
    parser.add_argument("--version", action="version", version=f"photofind {__version__}")
    parser.add_argument(
        "--library",
        metavar="DIR",
        help="library folder (default: $PHOTOFIND_HOME or the user data folder)",
    )
    parser.add_argument("--model", metavar="NAME_OR_DIR", help="model package name or folder")
    parser.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the model runs (default: CUDA when it works, else the CPU)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging and full tracebacks"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="build a library of generated photos (offline, tiny model) and open it "
        "(with a COMMAND: print example searches instead)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        cmd.add_arguments(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def _log_to_stderr(level: int) -> None:
    """Log records of ``level`` and above to stderr. The level is set on the terminal's
    handler itself: the app lowers the root logger to INFO for its log file, and the
    terminal must not show those lines unless ``--verbose`` asked for them."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, None):
            handler.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stderr(
        logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    )
    open_app = not args.command
    if open_app:
        args.command, args.no_index = "gui", False  # the app is the front door
    ctx = Context(
        library=library_dir(args.library),
        model=args.model,
        provider=args.provider,
        verbose=args.verbose,
    )
    try:
        if args.demo:
            from photofind.cli_search import run_demo

            if not open_app:
                return run_demo(ctx)
            from photofind.gui.app import run as run_app

            return run_demo(ctx, open_gui=lambda root, model: run_app(root, model))
        return COMMANDS[args.command].run(args, ctx) or 0
    except BrokenPipeError:
        # The reader of our output went away (`photofind list | head`): not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("photofind: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.verbose:
            log.exception("%s failed", args.command)
        known = isinstance(exc, (PhotofindError, OSError))
        what = str(exc) if known else f"unexpected {type(exc).__name__}: {exc}"
        # One line, whatever a file name quoted in the message holds (photofind.terminal).
        print(f"photofind: error: {printable(what)}", file=sys.stderr)
        if not known and not args.verbose:
            print("photofind: run with --verbose for the full traceback", file=sys.stderr)
        return EXIT_ERROR
