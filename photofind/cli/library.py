"""Library subcommands: index, folders, status, list."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from photofind.cli.context import (
    Command,
    Context,
    IndexBar,
    emit_json,
    open_library,
    shown,
)
from photofind.errors import PhotofindError
from photofind.library.companions import companion_paths, companions
from photofind.library.model_id import ModelId
from photofind.terminal import printable


def _index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", type=Path, help="folders to add (default: re-scan all)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="default: 32 on the CPU, 128 on a GPU"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--faces",
        action="store_true",
        help="faces are found and grouped whenever face recognition is on (the default; "
        "the Settings turn it off): this only insists that they are",
    )


def _analysers(args, ctx: Context) -> list:
    """Every analyser the library's settings enable beside CLIP (faces, for now)."""
    from photofind.people import face_analysers

    analysers = face_analysers(ctx.library)
    if args.faces and not analysers:
        raise PhotofindError(
            "--faces: face recognition is off for this library (turn it on in the app's "
            "Settings, or `photofind people on`)"
        )
    return analysers


def _index(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.library.model_session import ModelSession

    model = ctx.load_library_model()
    with open_library(ctx, readonly=False) as library:
        for folder in args.folders:
            library.add_folder(folder)
        if not library.folders():
            raise PhotofindError("the library has no folders: give one, `photofind index FOLDER`")
        report = library.scan()
        r = report.result
        print(
            f"scanned: {len(r.added)} new, {len(r.updated)} changed, {len(r.moved)} moved, "
            f"{len(r.removed)} removed, {r.unchanged} unchanged",
            file=sys.stderr,
        )
        session = ModelSession.open(library, model, provider=ctx.provider, verified=ctx.verified)
        analysers = _analysers(args, ctx)
        if session.target is not None:
            _model_change(session, args, analysers)
            return 0
        stats = _run_with_bar(
            args,
            "indexing",
            lambda bar: library.index_pending(
                model, progress=bar, batch_size=args.batch_size, analysers=analysers
            ),
        )
        print(
            f"indexed {stats.indexed} photos, {stats.failed} failed, "
            f"in {stats.seconds:.1f} s ({stats.images_per_s:.1f} photos/s)",
            file=sys.stderr,
        )
        _say_faces(library, analysers)
        if stats.changed:
            print(
                f"{stats.changed} photos changed on disk while this ran and are still "
                "pending: `photofind index` again takes them",
                file=sys.stderr,
            )
    return 0


def _say_faces(library, analysers) -> None:
    if not analysers:
        return
    catalog = library.catalog
    counts = catalog.analysis_counts(analysers[0].name)
    people = catalog.people()
    print(
        f"faces: {len(catalog.faces())} in {counts['done']} photos ({counts['failed']} "
        f"failed), {len(people)} people ({sum(p.name is not None for p in people)} named)",
        file=sys.stderr,
    )


def _run_with_bar(args, desc: str, run):
    bar = None if args.no_progress else IndexBar(desc)
    try:
        return run(bar)
    finally:
        if bar:
            bar.close()


def _model_change(session, args, analysers) -> None:
    """Run a model change in the session's order, each pass once: new photos first get
    the held model's vectors (searchable at once), then every photo gets the new model's,
    then the swap, then the photos that had no new vector at the swap."""
    from photofind.library.model_session import NEW, STAGED

    target = session.target
    held_name = ModelId.parse(session.held).name
    print(
        f"re-indexing {session.todo():,} photos for model {target.info.name}; "
        f"search uses {held_name} until done",
        file=sys.stderr,
    )
    swapped = False
    ran: set[tuple[str, bool]] = set()
    while (kind := session.next_pass()) is not None:
        if (kind, swapped) in ran and kind == NEW and session.staged is not None:
            kind = STAGED  # photos that changed meanwhile wait for the next run
        if (kind, swapped) in ran:
            break
        ran.add((kind, swapped))
        by = session.active.info.name
        if kind == NEW and not swapped and session.staged is not None:
            desc = f"indexing new photos with {held_name}"
        elif kind == NEW and swapped:
            desc = f"indexing with {by}"
        else:
            desc = f"re-indexing for {target.info.name}"
        stats = _run_with_bar(
            args,
            desc,
            lambda bar, kind=kind: session.run_pass(
                kind, progress=bar, batch_size=args.batch_size, analysers=analysers
            ),
        )
        if desc.startswith("indexing new"):
            print(f"indexed {stats.indexed} new photos with {held_name}", file=sys.stderr)
        elif swapped:
            if stats.indexed or stats.failed:
                print(f"indexed {stats.indexed} photos, {stats.failed} failed", file=sys.stderr)
        else:
            print(
                f"re-indexed {stats.indexed} photos for {target.info.name}, {stats.failed} "
                f"failed, in {stats.seconds:.1f} s ({stats.images_per_s:.1f} photos/s)",
                file=sys.stderr,
            )
            if not getattr(stats, "swapped", False):
                print("re-index not finished: run `photofind index` again", file=sys.stderr)
                return
            swapped = True
            print(
                f"model {target.info.name} is now the library's model; search uses it",
                file=sys.stderr,
            )


def _folders_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("add", "remove", "list"))
    p.add_argument("paths", nargs="*", type=Path)
    p.add_argument("--json", action="store_true")


def _folders(args: argparse.Namespace, ctx: Context) -> int:
    if args.action != "list" and not args.paths:
        raise PhotofindError(f"folders {args.action}: give at least one folder")
    with open_library(ctx, readonly=args.action == "list") as library:
        if args.action == "add":
            for path in args.paths:
                folder = library.add_folder(path)
                print(f"added {printable(folder.path)} (run `photofind index` to index it)")
        elif args.action == "remove":
            for path in args.paths:
                n = library.remove_folder(os.path.abspath(path))
                print(f"removed {printable(str(path))} and its {n} indexed photos")
        else:
            folders = [f.path for f in library.folders()]
            if args.json:
                emit_json([{"path": p} for p in folders])
            else:
                for p in folders:
                    print(printable(p))
    return 0


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def _status(args: argparse.Namespace, ctx: Context) -> int:
    with open_library(ctx, readonly=True) as library:
        status = library.status()
    if args.json:
        emit_json(status)
    else:
        for key, value in status.items():
            print(f"{key:>17}: {value}")
        if "staged_model" in status:
            print(
                f"re-indexing for model {ModelId.parse(status['staged_model']).name}: "
                f"{status['staged_done']:,} / {status['staged_total']:,} photos; search uses "
                f"{ModelId.parse(status['model'] or '').name} until done "
                "(`photofind index` continues it)"
            )
    return 0


def _list(args: argparse.Namespace, ctx: Context) -> int:
    with open_library(ctx, readonly=True) as library:
        photos = list(library.catalog.photos())
    if args.json:
        # A RAW beside its JPEG (a Live Photo's clip beside its still) is listed with it.
        groups = companions(p.path for p in photos)
        inside = companion_paths(groups)
        rows = []
        for p in photos:
            if p.path in inside:
                continue
            row = {
                "path": shown(p.path),
                "kind": p.kind,
                "status": p.status,
                "error": p.error and shown(p.error),
            }
            if p.duration_ms is not None:
                row["duration_s"] = p.duration_ms / 1000
            if p.path in groups:
                row["companions"] = [shown(c) for c in groups[p.path]]
            rows.append(row)
        emit_json(rows)
    else:
        # An error message quotes the file's name, so it is escaped too.
        for p in photos:
            line = f"{p.status:>8}  {printable(p.path)}"
            print(line + (f"  ({printable(p.error)})" if p.error else ""))
    return 0


COMMANDS = (
    Command("index", "add folders to the library and index them until done", _index, _index_args),
    Command("folders", "add, remove or list the library's folders", _folders, _folders_args),
    Command(
        "status", "counts of indexed, pending and failed photos, and the model", _status, _json_flag
    ),
    Command("list", "every photo of the library with its status and error", _list, _json_flag),
)
