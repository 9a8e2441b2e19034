"""People subcommands: ``faces index`` (the face pass) and ``people list|name|merge|photos``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from photofind.cli.context import Command, Context, IndexBar, emit_json, open_library, shown
from photofind.errors import PhotofindError
from photofind.terminal import printable


def _faces_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="faces_command", metavar="ACTION", required=True)
    index = sub.add_parser(
        "index",
        help="index the library (CLIP first), then find and group the faces of every photo",
    )
    index.add_argument("folders", nargs="*", type=Path, help="folders to add first")
    index.add_argument("--batch-size", type=int, default=8)
    index.add_argument(
        "--min-faces",
        type=int,
        default=None,
        metavar="N",
        help="faces an unnamed group needs to be shown (default 3)",
    )
    index.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _faces(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.library.face_analyser import FaceAnalyser
    from photofind.people import MIN_FACES, regroup

    model = ctx.load_library_model()
    with open_library(ctx, readonly=False) as library:
        for folder in args.folders:
            library.add_folder(folder)
        if not library.folders():
            raise PhotofindError(
                "the library has no folders: give one, `photofind faces index FOLDER`"
            )
        library.scan()
        grouped = []
        min_faces = MIN_FACES if args.min_faces is None else args.min_faces
        if min_faces < 1:
            raise PhotofindError(f"--min-faces must be at least 1, not {min_faces}")

        def group(catalog) -> None:
            grouped.append(regroup(catalog, min_faces=min_faces))

        faces = FaceAnalyser(after_pass=group)
        bar = None if args.no_progress else IndexBar("faces")
        try:
            stats = library.index_pending(
                model, analysers=[faces], progress=bar, batch_size=args.batch_size
            )
        finally:
            if bar:
                bar.close()
        catalog = library.catalog
        counts = catalog.analysis_counts(faces.name)
        people = catalog.people()
        print(
            f"faces: {len(faces.analysed)} photos analysed in {stats.seconds:.1f} s, "
            f"{counts['failed']} failed in all; {len(catalog.faces())} faces, "
            f"{len(people)} people ({sum(p.name is not None for p in people)} named)",
            file=sys.stderr,
        )
        if not grouped:
            print(
                "the face pass did not finish: run `photofind faces index` again", file=sys.stderr
            )
    return 0


def _people_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every person: id, name, faces, photos, an example")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--all", action="store_true", help="hidden people too")
    name = sub.add_parser("name", help="name (or rename) a person")
    name.add_argument("id", type=int)
    name.add_argument("name")
    merge = sub.add_parser("merge", help="merge person B into person A (B's faces become A's)")
    merge.add_argument("a", type=int)
    merge.add_argument("b", type=int)
    photos = sub.add_parser("photos", help="the photos of a person, by name or id")
    photos.add_argument("person")
    photos.add_argument("--json", action="store_true")


def _people(args: argparse.Namespace, ctx: Context) -> int:
    action = args.people_command
    with open_library(ctx, readonly=action in ("list", "photos")) as library:
        catalog = library.catalog
        if action == "list":
            _list(catalog, args)
        elif action == "name":
            catalog.name_person(args.id, args.name)
            print(f"person {args.id} is {args.name.strip()}", file=sys.stderr)
        elif action == "merge":
            catalog.merge_people(args.a, args.b)
            print(f"person {args.b} merged into person {args.a}", file=sys.stderr)
        else:
            _photos(catalog, args)
    return 0


def _list(catalog, args) -> None:
    people = catalog.people(include_hidden=args.all)
    if args.json:
        emit_json(
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "face_count": p.face_count,
                    "photos": p.photo_count,
                    "hidden": p.hidden,
                    "example": p.example_path and shown(p.example_path),
                }
                for p in people
            ]
        )
        return
    if not people:
        print("no people yet: run `photofind faces index`", file=sys.stderr)
    for p in people:
        name = printable(p.name) if p.name is not None else "(unnamed)"
        example = printable(p.example_path) if p.example_path else ""
        print(f"{p.id:>6}  {name:<24} {p.face_count:>5} faces {p.photo_count:>5} photos  {example}")


def _photos(catalog, args) -> None:
    person = catalog.person_by_name(args.person)
    if person is None and args.person.isdigit():
        person = catalog.person(int(args.person))
    if person is None:
        raise PhotofindError(
            f"no person named or numbered {args.person!r} in {catalog.path} "
            "(`photofind people list` shows them)"
        )
    photos = catalog.photos_of(person.id)
    if args.json:
        emit_json([{"id": p.id, "path": shown(p.path)} for p in photos])
    else:
        for p in photos:
            print(printable(p.path))


COMMANDS = (
    Command(
        "faces",
        "find the faces in the library's photos and group them into people",
        _faces,
        _faces_args,
    ),
    Command("people", "list, name and merge the people the face pass found", _people, _people_args),
)
