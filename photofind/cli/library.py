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
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--faces", action="store_true", help="also find and group faces (photofind people)"
    )


def _analysers(args) -> list:
    """The analysers the user opted into beside CLIP (faces only, for now)."""
    if not args.faces:
        return []
    from photofind.library.face_analyser import FaceAnalyser
    from photofind.people import regroup

    return [FaceAnalyser(after_pass=regroup)]


def _index(args: argparse.Namespace, ctx: Context) -> int:
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
        if _model_change(ctx, library, model, args):
            return 0
        bar = None if args.no_progress else IndexBar()
        try:
            stats = library.index_pending(
                model, progress=bar, batch_size=args.batch_size, analysers=_analysers(args)
            )
        finally:
            if bar:
                bar.close()
        print(
            f"indexed {stats.indexed} photos, {stats.failed} failed, "
            f"in {stats.seconds:.1f} s ({stats.images_per_s:.1f} photos/s)",
            file=sys.stderr,
        )
        if stats.changed:
            print(
                f"{stats.changed} photos changed on disk while this ran and are still "
                "pending: `photofind index` again takes them",
                file=sys.stderr,
            )
    return 0


def _run_with_bar(args, desc: str, run):
    bar = None if args.no_progress else IndexBar(desc)
    try:
        return run(bar)
    finally:
        if bar:
            bar.close()


def _model_change(ctx: Context, library, model, args) -> bool:
    """Continue (or begin) a staged change to ``model`` when the library holds another
    model's vectors: new photos first get the active model's vectors (searchable at once),
    then every photo gets ``model``'s, then the swap. False when there is no change to run."""
    from photofind.library.library import model_id

    held = library.catalog.model_id
    if held is None or held == model_id(model) or not library.begin_model_change(model):
        return False
    done, total = library.catalog.staged_progress()
    held_name = ModelId.parse(held).name
    print(
        f"re-indexing {total - done:,} photos for model {model.info.name}; "
        f"search uses {held_name} until done",
        file=sys.stderr,
    )
    active = library.load_model_by_id(held, provider=ctx.provider)
    if active is not None and library.catalog.counts().get("pending", 0):
        stats = _run_with_bar(
            args,
            f"indexing new photos with {held_name}",
            lambda bar: library.index_pending(active, progress=bar, batch_size=args.batch_size),
        )
        print(f"indexed {stats.indexed} new photos with {held_name}", file=sys.stderr)
    stats = _run_with_bar(
        args,
        f"re-indexing for {model.info.name}",
        lambda bar: library.reindex_staged(model, progress=bar, batch_size=args.batch_size),
    )
    print(
        f"re-indexed {stats.indexed} photos for {model.info.name}, {stats.failed} failed, "
        f"in {stats.seconds:.1f} s ({stats.images_per_s:.1f} photos/s)",
        file=sys.stderr,
    )
    if not stats.swapped:
        print("re-index not finished: run `photofind index` again", file=sys.stderr)
        return True
    print(f"model {model.info.name} is now the library's model; search uses it", file=sys.stderr)
    # Photos without a new vector at the swap (offline ones, those added in the last moment)
    stats = library.index_pending(model, batch_size=args.batch_size)
    if stats.indexed or stats.failed:
        print(f"indexed {stats.indexed} photos, {stats.failed} failed", file=sys.stderr)
    return True


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
            row = {"path": shown(p.path), "status": p.status, "error": p.error and shown(p.error)}
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
