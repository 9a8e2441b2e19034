"""People subcommands: ``faces index`` (the face pass) and ``people list|name|merge|photos``."""

from __future__ import annotations

import argparse
import os
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
        help="faces an unnamed group needs to be shown (default 3); kept for the library",
    )
    index.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _faces(args: argparse.Namespace, ctx: Context) -> int:
    from photofind import settings
    from photofind.library.face_analyser import FaceAnalyser, worker_count
    from photofind.library.model_session import NEW, ModelSession
    from photofind.people import face_recognition_on, min_faces_setting, regroup

    if not face_recognition_on(ctx.library):
        raise PhotofindError(
            "face recognition is off for this library: `photofind people on` turns it on"
        )
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
        min_faces = min_faces_setting(ctx.library) if args.min_faces is None else args.min_faces
        if min_faces < 1:
            raise PhotofindError(f"--min-faces must be at least 1, not {min_faces}")
        if args.min_faces is not None:
            # The library's from now on: the groupings after corrections use it too.
            settings.update(ctx.library, {"faces.min_faces": min_faces})

        def group(catalog) -> None:
            grouped.append(regroup(catalog, min_faces=min_faces))

        faces = FaceAnalyser(after_pass=group, processes=worker_count())
        bar = None if args.no_progress else IndexBar("faces")
        try:
            # One pass of new work, the faces with it (the session's order: a staged re-index
            # is `photofind index`'s to run).
            stats = ModelSession(library, model).run_pass(
                NEW, analysers=[faces], progress=bar, batch_size=args.batch_size
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
    name = sub.add_parser(
        "name",
        help="name (or rename) a person: `name ID NAME`, or `name --photo PATH NAME` for the "
        "person of the one face in that photo",
    )
    name.add_argument("--photo", type=Path, help="the photo holding the person's face")
    name.add_argument("words", nargs="+", metavar="ID NAME", help="the person's id, and the name")
    merge = sub.add_parser("merge", help="merge person B into person A (B's faces become A's)")
    merge.add_argument("a", type=int)
    merge.add_argument("b", type=int)
    hide = sub.add_parser("hide", help="hide a person from the list (--show shows again)")
    hide.add_argument("id", type=int)
    hide.add_argument("--show", action="store_true", help="show the person again")
    split = sub.add_parser("split", help="move faces (by face id) to a new person")
    split.add_argument("faces", type=int, nargs="+", metavar="FACE_ID")
    split.add_argument("--name", help="the new person's name")
    faces = sub.add_parser("faces", help="the faces of a person (ids, photos, boxes)")
    faces.add_argument("person")
    faces.add_argument("--json", action="store_true")
    sub.add_parser(
        "forget",
        help="delete all face data: faces, people, embeddings, face thumbnails (found "
        "again at the next index while face recognition is on)",
    )
    sub.add_parser("off", help="turn face recognition off and delete all face data")
    sub.add_parser("on", help="turn face recognition on (the next index finds the faces)")
    photos = sub.add_parser("photos", help="the photos of a person, by name or id")
    photos.add_argument("person")
    photos.add_argument("--json", action="store_true")


def _people(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.people import corrected, set_face_recognition

    action = args.people_command
    with open_library(ctx, readonly=action in ("list", "photos", "faces")) as library:
        catalog = library.catalog
        if action == "list":
            _list(catalog, args)
        elif action == "photos":
            _photos(catalog, args)
        elif action == "faces":
            _faces_of(catalog, args)
        elif action in ("forget", "off"):
            if action == "off":
                gone = set_face_recognition(library, False)
                print(f"face recognition is off; {gone} faces deleted", file=sys.stderr)
            else:
                gone = catalog.forget_faces()
                print(
                    f"{gone} faces deleted, with every person; `photofind people off` keeps "
                    "them from being found again",
                    file=sys.stderr,
                )
        elif action == "on":
            set_face_recognition(library, True)
            print("face recognition is on: `photofind index` finds the faces", file=sys.stderr)
        elif action == "hide":
            catalog.hide_person(args.id, not args.show)
            print(f"person {args.id} {'shown' if args.show else 'hidden'}", file=sys.stderr)
        else:
            _correct(catalog, args)
            corrected(catalog, ctx.library)
    return 0


def _correct(catalog, args) -> None:
    """The user's word on who is who: name, merge, split."""
    action = args.people_command
    if action == "merge":
        catalog.merge_people(args.a, args.b)
        print(f"person {args.b} merged into person {args.a}", file=sys.stderr)
    elif action == "split":
        person = catalog.split_faces(args.faces, args.name)
        print(f"{len(args.faces)} faces moved to person {person}", file=sys.stderr)
    elif args.photo is not None:
        if len(args.words) != 1:
            raise PhotofindError("people name --photo PATH NAME: give the name only")
        face = _the_face(catalog, args.photo)
        person = catalog.name_face(face.id, args.words[0])
        print(f"person {person} is {args.words[0].strip()}", file=sys.stderr)
    else:
        if len(args.words) != 2 or not args.words[0].isdigit():
            raise PhotofindError(
                "people name ID NAME (or --photo PATH NAME): give a person's id and a name"
            )
        catalog.name_person(int(args.words[0]), args.words[1])
        print(f"person {args.words[0]} is {args.words[1].strip()}", file=sys.stderr)


def _the_face(catalog, path: Path):
    """The one face of the photo at ``path``; a clear error when it has none or several."""
    from photofind.faces import MIN_FACE, MODEL_ID
    from photofind.library.face_records import FACES

    photo = catalog.photo_by_path(os.path.abspath(os.path.expanduser(path)))
    if photo is None:
        raise PhotofindError(f"{printable(str(path))} is not a photo of the library")
    faces = catalog.faces(photo.id)
    if len(faces) == 1:
        return faces[0]
    if not faces:
        model = catalog.analyser_model(FACES) or MODEL_ID
        why = (
            "its faces have not been looked for yet (`photofind index`)"
            if photo.id in catalog.analysis_pending_among(FACES, model, [photo.id])
            else f"no face was found in it (faces under {MIN_FACE} px are not kept)"
        )
        raise PhotofindError(f"{printable(str(path))}: no face to name: {why}")
    boxes = ", ".join(f"face {f.id} at {f.box[0]},{f.box[1]}" for f in faces)
    raise PhotofindError(
        f"{printable(str(path))} holds {len(faces)} faces ({boxes}): name one person of it "
        "with `photofind people name ID NAME` (`photofind people faces` lists the faces)"
    )


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


def _person(catalog, wanted: str):
    person = catalog.person_by_name(wanted)
    if person is None and wanted.isdigit():
        person = catalog.person(int(wanted))
    if person is None:
        raise PhotofindError(
            f"no person named or numbered {wanted!r} in {catalog.path} "
            "(`photofind people list` shows them)"
        )
    return person


def _faces_of(catalog, args) -> None:
    person = _person(catalog, args.person)
    faces = catalog.faces_of(person.id)
    photos = catalog.photos_by_id({f.item_id for f in faces})
    rows = [
        {
            "id": f.id,
            "path": shown(photos[f.item_id].path) if f.item_id in photos else None,
            "box": list(f.box),
            "score": round(float(f.score), 4),
            "by": f.assigned_by,
        }
        for f in faces
    ]
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            print(f"{r['id']:>6}  {r['box']}  {r['by'] or '-':<5} {printable(r['path'] or '')}")


def _photos(catalog, args) -> None:
    person = _person(catalog, args.person)
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
    Command(
        "people",
        "list, name, merge, split and hide the people the face pass found; forget them",
        _people,
        _people_args,
    ),
)
