"""``photofind watch``: keep the library equal to the disk, in the foreground.

Runs the watcher and the indexer until SIGINT or SIGTERM, then stops cleanly: the index
batch in flight is committed, the rest stays pending for the next start. Everything it does
is told on stderr, one line each.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings
from pathlib import Path

from photofind.cli.context import Command, Context, emit_json, open_library
from photofind.errors import PhotofindError
from photofind.terminal import printable


def _say(message: str) -> None:
    # Messages quote file names: escaped, one line each whatever the names hold.
    print(f"photofind watch: {printable(message)}", file=sys.stderr, flush=True)


def _watch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", type=Path, help="folders to add before watching")
    p.add_argument(
        "--quiet", type=float, default=0.5, metavar="S", help="wait for S s without events"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        metavar="S",
        help="a file must stay unchanged S s before it is read (default 1)",
    )
    p.add_argument(
        "--reconcile",
        type=float,
        default=600.0,
        metavar="S",
        help="full re-scan of every folder every S s (default 600)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="check folders that cannot be watched live every S s (default 30)",
    )
    p.add_argument("--poll", action="store_true", help="poll every folder, never watch live")
    p.add_argument(
        "--batch-size", type=int, default=None, help="default: 32 on the CPU, 128 on a GPU"
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print the status of the watcher running on this library (JSON) and exit",
    )


def _watch(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.library.watcher import read_status_file

    if args.status:
        status = read_status_file(ctx.library)
        if status is None:
            raise PhotofindError(f"no watcher has run on the library {ctx.library}")
        emit_json(status)
        return 0

    # watchdog warns when a folder moved mid-walk gets its watch re-added; the watch is right
    # afterwards and the reconcile covers the moment, so this is noise on the terminal. The
    # filter holds while this command runs (watchdog's threads warn too) and is then undone.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Callback with id", RuntimeWarning, "watchdog")
        return _watch_until_stopped(args, ctx)


def _watch_until_stopped(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.library.model_session import ModelSession
    from photofind.library.watcher import Watcher, WatchOptions

    model = ctx.load_library_model()
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum, frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()
        # A second signal while shutting down ends the process the default way.
        signal.signal(signum, signal.SIG_DFL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open_library(ctx, readonly=False) as library:
            for folder in args.folders:
                library.add_folder(folder)
            if not library.folders():
                raise PhotofindError(
                    "the library has no folders: give one, `photofind watch FOLDER`"
                )
            options = WatchOptions(
                quiet_s=args.quiet,
                max_delay_s=max(3.0, args.quiet * 4),
                settle_s=args.settle,
                reconcile_s=args.reconcile,
                poll_s=args.poll_interval,
                force_polling=args.poll,
                batch_size=args.batch_size,
            )
            # A model change (`photofind models use`) continues here once new photos are
            # indexed with the library's model, which searches keep using until the swap.
            from photofind.people import face_analysers

            session = ModelSession.open(
                library, model, provider=ctx.provider, verified=ctx.verified
            )
            watcher = Watcher(
                library,
                options=options,
                say=_say,
                session=session,
                analysers=face_analysers(ctx.library),
            )
            watcher.start()
            _say(
                f"watching {len(library.folders())} folder(s) of {ctx.library}; "
                "stop with Ctrl+C or SIGTERM"
            )
            while not stop.wait(0.5):
                if watcher.wait(0):
                    break  # the worker ended by itself: an error
            if received:
                _say(f"{received[0]}: stopping (committing the batch in flight)")
            watcher.stop()
            status = watcher.status()
            _say(
                "stopped: "
                + json.dumps({k: status["counters"][k] for k in ("encoded", "moved", "removed")})
            )
            if watcher.error is not None:
                raise PhotofindError(f"the watcher failed: {watcher.error}")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


COMMANDS = (
    Command(
        "watch",
        "watch the library's folders and keep the index up to date until stopped",
        _watch,
        _watch_args,
    ),
)
