"""The ``photofind`` command line: the same engine as the app, for headless use.

The parser is built from :data:`COMMAND_MODULES`, each of which lists its subcommands in
its ``COMMANDS``; a command gets the parsed arguments and a
:class:`~photofind.cli.context.Context` holding the global options. Errors print one line
(the traceback only with ``--verbose``) and exit non-zero; library code never calls
``sys.exit``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from photofind import __version__
from photofind.cli import embedding, gui, library, models, people, search, watch
from photofind.cli.context import Command, Context
from photofind.errors import PhotofindError
from photofind.paths import library_dir
from photofind.terminal import printable

log = logging.getLogger("photofind")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


# -- the parser and the entry point -----------------------------------------------------


#: the command groups, in the order ``photofind --help`` lists their commands
COMMAND_MODULES = (embedding, gui, library, models, people, search, watch)


def commands() -> dict[str, Command]:
    """Every subcommand by name; two modules naming one command is a programming error."""
    found: dict[str, Command] = {}
    for module in COMMAND_MODULES:
        for cmd in module.COMMANDS:
            if cmd.name in found:
                raise RuntimeError(f"{module.__name__} names the command {cmd.name!r} again")
            found[cmd.name] = cmd
    return found


def build_parser() -> argparse.ArgumentParser:
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
    for name, cmd in commands().items():
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    open_app = not args.command
    if open_app:
        # The app is the front door. Without a command the arguments hold only global
        # options, so parsing them again with "gui" gives the gui command its own defaults.
        args = parser.parse_args([*argv, "gui"])
    _log_to_stderr(
        logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    )
    ctx = Context(
        library=library_dir(args.library),
        model=args.model,
        provider=args.provider,
        verbose=args.verbose,
    )
    try:
        if args.demo:
            if not open_app:
                return search.run_demo(ctx)
            from photofind.gui.app import run as run_app

            return search.run_demo(ctx, open_gui=lambda root, model: run_app(root, model))
        return commands()[args.command].run(args, ctx) or 0
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
