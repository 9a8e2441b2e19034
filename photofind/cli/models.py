"""``photofind models list|install|use|remove``: the model store on the command line."""

from __future__ import annotations

import argparse
import sys

from photofind.cli.context import Command, Context, emit_json
from photofind.errors import PhotofindError
from photofind.library.model_id import ModelId


class _DownloadBar:
    """A download progress callback: one tqdm bar in bytes per URL, on stderr."""

    def __init__(self):
        self._bar = None
        self._url = None

    def __call__(self, p) -> None:
        from tqdm import tqdm

        if p.url != self._url:
            self.close()
            self._url = p.url
            name = p.url.rsplit("/", 1)[-1]
            self._bar = tqdm(
                total=p.total,
                initial=p.resumed_from,
                desc=name + (" (resumed)" if p.resumed_from else ""),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=False,
            )
        self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _models_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="installed and bundled models; --catalogue for known ones")
    ls.add_argument("--catalogue", action="store_true", help="list the catalogue instead")
    ls.add_argument("--json", action="store_true")
    inst = sub.add_parser(
        "install",
        help="install a package folder, an archive, an https URL of one, or a catalogue name",
    )
    inst.add_argument(
        "source",
        help="folder, .tar.gz/.tgz/.zip, https URL, catalogue name or an Immich model "
        "(immich-app/NAME; the hub is HF_ENDPOINT when set)",
    )
    inst.add_argument("--name", help="install under this name (default: the package's)")
    inst.add_argument("--sha256", help="expected sha256 of the archive (downloaded or local)")
    inst.add_argument("--replace", action="store_true", help="overwrite an installed namesake")
    inst.add_argument("--use", action="store_true", help="make it the library's model")
    inst.add_argument(
        "--int8",
        action="store_true",
        help="also make its int8 encoders, checked against fp32 (needs the export tools)",
    )
    inst.add_argument(
        "--fp16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also make its fp16 encoders for a GPU, checked against fp32 (needs the export "
        "tools; default: where CUDA can run here)",
    )
    inst.add_argument("--no-progress", action="store_true", help="no progress bar")
    inst.add_argument(
        "--min-rate",
        type=float,
        metavar="KB/S",
        default=4.0,
        help="give up on a server slower than this over a minute (default 4; resumable)",
    )
    inst.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        default=4 * 3600.0,
        help="give up on one download after this long (default 14400; resumable)",
    )
    use = sub.add_parser("use", help="make NAME the library's model")
    use.add_argument("name")
    rm = sub.add_parser("remove", help="delete an installed model")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="even when it is the active model")


def _store(ctx: Context):
    from photofind.models.store import ModelStore

    return ModelStore(ctx.library, provider="cpu" if ctx.provider == "auto" else ctx.provider)


def _models(args: argparse.Namespace, ctx: Context) -> int:
    action = args.models_action
    if action == "list":
        return _list(args, ctx)
    store = _store(ctx)
    if action == "install":
        from photofind.models.download import DownloadLimits

        bar = None if args.no_progress else _DownloadBar()
        limits = DownloadLimits(deadline=args.deadline, min_rate=args.min_rate * 1024)
        try:
            report = store.install(
                args.source,
                name=args.name,
                sha256=args.sha256,
                replace=args.replace,
                progress=bar,
                limits=limits,
                int8=args.int8,
                # --provider cpu: no graphs that only CUDA makes faster, unless asked for.
                fp16=False if args.fp16 is None and ctx.provider == "cpu" else args.fp16,
            )
        finally:
            if bar:
                bar.close()
        spec = report.spec
        print(
            f"installed {report.name} ({spec.arch or 'CLIP'}, {spec.embed_dim}-d, "
            f"{report.layout} layout) at {report.path}"
        )
        for what, digest in report.unpinned.items():
            print(f"  sha256 {digest}  {what}  (NOT pinned: compare with the publisher's listing)")
        for note in report.notes:
            print(f"  note: {note}")
        if report.speed is not None:
            print(
                f"  speed here: {report.speed.images_per_s:,.1f} photos/s (decoding aside), "
                f"a query in {report.speed.query_ms:,.1f} ms"
            )
        if args.use:
            store.use(report.name)
            print(f"{report.name} is now the library's model; run `photofind index` to re-index")
        return 0
    if action == "use":
        store.use(args.name)
        print(_begin_change(args.name, ctx))
        return 0
    if action == "remove":
        path = store.remove(args.name, force=args.force)
        print(f"removed {args.name} ({path})")
        return 0
    raise PhotofindError(f"models: unknown action {action!r}")


def _begin_change(name: str, ctx: Context) -> str:
    """Start the staged re-index of an indexed library for the newly chosen model; the
    sentence that tells the user where things stand. The model's id comes from its
    manifest, its image tower's from its checked files: no encoder is opened (the next
    `photofind index` opens it); a model sharing the image tower needs no re-index."""
    from photofind.clip import resolve_model
    from photofind.library.catalog import CATALOG_NAME
    from photofind.library.library import Library
    from photofind.library.lockfile import LibraryLockedError
    from photofind.library.model_session import ModelSession

    if not (ctx.library / CATALOG_NAME).exists():
        return f"{name} is now the library's model"
    folder = resolve_model(name, ctx.library)
    try:
        library = Library.open(ctx.library)
    except LibraryLockedError:
        return (
            f"{name} is now the library's model; another photofind writes the library, so "
            "the re-index begins with the next `photofind index` (search keeps the old model)"
        )
    from photofind import settings

    with library:
        before = library.catalog.model_id
        change = ModelSession(library, provider=ctx.provider).choose_package(
            folder, verified=ctx.verified, precision=settings.load(ctx.library)["precision"]
        )
        kept = library.catalog.model_id != before and library.catalog.embedding_count() > 0
    if kept:
        return (
            f"{name} is now the library's model; it shares the image tower of "
            f"{ModelId.parse(before).name}, so the photo vectors are kept (no re-index)"
        )
    if not change.staged:
        if change.cancelled:
            return (
                f"{name} is the library's model again; the re-index for "
                f"{ModelId.parse(change.cancelled).name} was cancelled"
            )
        return f"{name} is now the library's model"
    return (
        f"{name} is now the library's model: `photofind index` re-indexes {change.todo:,} "
        f"photos for it; search uses {ModelId.parse(change.held).name} until done"
    )


def _list(args: argparse.Namespace, ctx: Context) -> int:
    if args.catalogue:
        return _list_catalogue(args)
    models = _store(ctx).list()
    rows = [
        {
            "name": m.name,
            "active": m.active,
            "bundled": m.bundled,
            "path": str(m.path),
            "embed_dim": m.spec.embed_dim if m.spec else None,
            "arch": m.spec.arch if m.spec else None,
            "description": m.spec.description if m.spec else None,
            "problem": m.problem,
        }
        for m in models
    ]
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no models installed: `photofind models install ViT-B-32` or a package folder")
    for r in rows:
        mark = "*" if r["active"] else " "
        where = "bundled" if r["bundled"] else "installed"
        detail = r["problem"] or f"{r['arch'] or ''} {r['embed_dim']}-d  {r['description'] or ''}"
        print(f"{mark} {r['name']:<32} {where:<9}  {detail}")
    return 0


def _list_catalogue(args: argparse.Namespace) -> int:
    from photofind.models import catalogue

    rows = [
        {
            "name": e.name,
            "kind": e.kind,
            "arch": e.arch,
            "installs_as": e.package_name,
            "embed_dim": e.embed_dim or None,
            "languages": list(e.languages),
            "languages_text": e.languages_text,
            "multilingual": e.multilingual,
            # Estimated from the parameter count; the install lists the real sizes.
            "approx_bytes": e.approx_bytes or None,
            "pinned": e.pinned,
            "source": e.source,
            "description": e.description,
            **({"image_tower_of": e.image_tower_of} if e.image_tower_of else {}),
            **({"convert": e.export_command()} if e.kind == "checkpoint" else {}),
        }
        for e in catalogue.entries()
    ]
    if args.json:
        emit_json(rows)
        return 0
    for r in rows:
        pinned = "pinned" if r["pinned"] else "NOT pinned"
        size = f"~{r['approx_bytes'] / 1e9:.1f} GB" if r["approx_bytes"] else "size ?"
        dim = f"{r['embed_dim']}-d" if r["embed_dim"] else "?-d"
        print(
            f"{r['name']:<54} {size:>9} {dim:>7}  {r['languages_text']:<20} {pinned:<10} "
            f"{r['kind']}"
        )
        if "convert" in r:
            print(f"{'':<54} convert with: {r['convert']}")
    return 0


COMMANDS = (
    Command("models", "list, install, choose or remove CLIP model packages", _models, _models_args),
)
