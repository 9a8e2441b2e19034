"""Search subcommands: search, similar, doctor; and the ``--demo`` flow.

``search`` and ``similar`` open the library read-only, so they work while another process
indexes it. Without ``--model`` they use the model whose vectors the library holds (so a
search keeps working while a newly chosen model re-indexes in the background).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

from photofind import __version__
from photofind.cli.context import Command, Context, emit_json, open_library, shown
from photofind.errors import PhotofindError
from photofind.terminal import printable

DEFAULT_RESULTS = 20
# More photos than any library holds, and small enough for hnswlib's C integers (an -n of
# 20 digits reached it as "unexpected TypeError: set_ef(): incompatible function arguments").
MAX_COUNT = 10**9


# -- choosing the model -------------------------------------------------------------------


def _search_model(ctx: Context, library):
    """``--model`` when given; else the model that made the library's vectors."""
    if ctx.model:
        return ctx.load_model()
    held = library.catalog.model_id
    if held is None:
        return ctx.load_model()  # nothing indexed yet: whatever the user chose, or the error
    return ctx.load_held_model(held)


# -- search, similar ----------------------------------------------------------------------


def _filter_args(p: argparse.ArgumentParser) -> None:
    # Read as text and checked by _count: one clear line for "1e20" or 20 digits.
    p.add_argument("-n", default=str(DEFAULT_RESULTS), metavar="K", help="results (20)")
    p.add_argument("--offset", default="0", help="skip the first N results (paging)")
    p.add_argument(
        "--json",
        action="store_true",
        help='a JSON list of {"path", "score"} (a video\'s also "time_s")',
    )
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="F",
        help="only photos inside folder F (repeatable)",
    )
    p.add_argument("--after", metavar="DATE", help="taken on or after DATE (YYYY[-MM[-DD]])")
    p.add_argument("--before", metavar="DATE", help="taken on or before DATE (YYYY[-MM[-DD]])")
    p.add_argument(
        "--type",
        metavar="TYPES",
        help="file types, comma-separated: jpg,png,heic; raw is every camera RAW (dng, cr3, "
        "nef, ...), video every video",
    )
    p.add_argument(
        "--person",
        action="append",
        default=[],
        metavar="NAME",
        help="only photos of this person (name or id, `photofind people list`; repeatable)",
    )


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "query",
        help='what the photos show; "beach + sunset - people", "2*cat", '
        '"img:PATH + in winter" combine terms (see the README)',
    )
    _filter_args(p)
    p.add_argument("--all", action="store_true", help="no relevance cut-off: K results always")
    p.add_argument(
        "--language",
        metavar="CODE",
        help="the query's language (vi, pt-BR, ...) for models that take one (NLLB-CLIP); "
        "default: the system's",
    )


def _similar_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a photo of the library, or any picture file")
    p.add_argument(
        "--at",
        type=float,
        metavar="SECONDS",
        help="PATH is a video of the library: look for its frame at SECONDS",
    )
    _filter_args(p)
    p.add_argument("--all", action="store_true", help="no relevance cut-off: K results always")


def _filter(args):
    from photofind.search import SearchFilter

    return SearchFilter(
        folders=tuple(os.fspath(f) for f in args.folder),
        after=args.after,
        before=args.before,
        types=tuple(args.type.split(",")) if args.type else (),
        people=tuple(args.person),
    )


def _hit(r) -> dict:
    """A result as JSON: a video's also says the time of its best frame."""
    out = {"path": shown(r.path), "score": round(r.score, 6)}
    if r.time_s is not None:
        out["time_s"] = round(r.time_s, 3)
    if r.companions:  # its RAW, its Live Photo clip (photofind.library.companions)
        out["companions"] = [shown(c) for c in r.companions]
    return out


def _print(results, args) -> None:
    if args.json:
        emit_json([_hit(r) for r in results])
    else:
        for r in results:
            at = "" if r.time_s is None else f"  @ {r.time_s:.1f} s"
            print(f"{r.score:.4f}  {printable(r.path)}{at}")
    if results.cut and not args.json:
        print(
            f"({results.below} more below the relevance cut-off {results.threshold:.3f}; "
            "--all shows them)",
            file=sys.stderr,
        )


def _count(flag: str, text: str) -> int:
    """A count option's value: a whole number from 0 to MAX_COUNT, else PhotofindError."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise PhotofindError(
            f"{flag} {text[:40]!r} is not a whole number: give 0 to {MAX_COUNT:,} (digits only)"
        )
    if len(text.lstrip("0")) > len(str(MAX_COUNT)) or int(text) > MAX_COUNT:
        raise PhotofindError(f"{flag} {text[:40]} is too large: at most {MAX_COUNT:,}")
    return int(text)


def _engine_run(ctx: Context, args, run) -> int:
    from photofind.search import SearchEngine

    args.n, args.offset = _count("-n", args.n), _count("--offset", args.offset)
    search_filter = _filter(args)
    with open_library(ctx, readonly=True) as library:
        _check_folders(library, args.folder)
        model = _search_model(ctx, library)
        if getattr(args, "language", None):
            model.language = args.language
        engine = SearchEngine(library, model)
        results = run(engine, search_filter)
        nothing = None if len(results) else _nothing_found(library, args, results)
    _print(results, args)
    if nothing:
        print(f"photofind: {nothing}", file=sys.stderr)
    return 0


def _check_folders(library, wanted) -> None:
    """Each ``--folder`` must be a library folder, inside one, or hold one: any other
    filters out every photo, which is a mistake to name, not an empty result."""
    folders = [f.path for f in library.folders()]

    def related(path: str, folder: str) -> bool:
        a, b = os.path.normcase(path), os.path.normcase(folder)
        return a == b or a.startswith(os.path.join(b, "")) or b.startswith(os.path.join(a, ""))

    for f in wanted:
        path = os.path.abspath(os.path.expanduser(os.fspath(f)))
        if not any(related(path, folder) for folder in folders):
            listed = ", ".join(shown(p) for p in folders) or "none yet"
            raise PhotofindError(
                f"--folder {shown(path)} is not in the library (its folders: {listed})"
            )


def _nothing_found(library, args, results) -> str | None:
    """Why a search found nothing, for stderr (the relevance cut-off says so itself)."""
    if results.cut and not args.json:
        return None  # _print's note counts what lies below the cut-off
    if results.cut:
        return (
            f"nothing found above the relevance cut-off: {results.cut} photos lie below "
            f"{results.threshold:.3f} (--all shows them)"
        )
    if args.offset:
        return f"nothing found past the first {args.offset} results (--offset)"
    held = {os.path.splitext(p.path)[1][1:].lower() for p in library.catalog.photos()}
    if not held:
        return "nothing found: the library holds no photos yet"
    reasons = []
    if args.type:
        wanted = _filter(args).extensions()
        if not wanted & held:
            reasons.append(
                f"no photo of type {args.type} (the library holds "
                f"{', '.join(sorted(t or '(no extension)' for t in held))})"
            )
    if not reasons:
        active = [
            f"{flag} {value}"
            for flag, value in (
                *(("--folder", f) for f in args.folder),
                ("--after", args.after),
                ("--before", args.before),
                ("--type", args.type),
                *(("--person", p) for p in args.person),
            )
            if value
        ]
        reasons.append(f"no photo matches {' '.join(active)}" if active else "no photo matches")
    return "nothing found: " + "; ".join(reasons)


def _search(args: argparse.Namespace, ctx: Context) -> int:
    return _engine_run(
        ctx,
        args,
        lambda engine, f: engine.search(
            args.query, k=args.n, offset=args.offset, filter=f, cutoff=not args.all
        ),
    )


def _similar(args: argparse.Namespace, ctx: Context) -> int:
    if args.path.is_dir():
        raise PhotofindError(
            f"{shown(str(args.path))} is a folder: similar needs one picture file "
            "(photos inside a folder: `photofind search TEXT --folder FOLDER`)"
        )
    return _engine_run(
        ctx,
        args,
        lambda engine, f: engine.similar(
            args.path, k=args.n, offset=args.offset, filter=f, cutoff=not args.all, time_s=args.at
        ),
    )


# -- doctor -------------------------------------------------------------------------------


def _version(dist: str, *alternatives: str) -> str:
    for name in (dist, *alternatives):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _read_int(path: str) -> int | str:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return "n/a"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def doctor_report(ctx: Context) -> dict:
    """Everything a bug report needs; never raises for a missing part, it reports it."""
    import onnxruntime

    from photofind.clip import available_models
    from photofind.library.catalog import CATALOG_NAME
    from photofind.library.vector_index import INDEX_NAME
    from photofind.paths import bundled_models_dir, log_dir, models_dir

    report: dict = {
        "versions": {
            "photofind": __version__,
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "numpy": _version("numpy"),
            "Pillow": _version("Pillow"),
            "hnswlib": _version("hnswlib", "chroma-hnswlib"),
            "PySide6": _version("PySide6-Essentials", "PySide6"),
            "platform": platform.platform(),
        },
        "providers": {"available": onnxruntime.get_available_providers()},
        "paths": {
            "library": str(ctx.library),
            "models": str(models_dir(ctx.library)),
            "bundled_models": str(bundled_models_dir()),
            "logs": str(log_dir()),
        },
        "models": {name: str(path) for name, path in available_models(ctx.library).items()},
    }
    library_info: dict = {"exists": (ctx.library / CATALOG_NAME).exists()}
    library = None
    if library_info["exists"]:
        try:
            library = open_library(ctx, readonly=True)
            library_info.update(library.status())
        except PhotofindError as exc:
            library_info["error"] = str(exc)
    library_info["catalog_bytes"] = _size(ctx.library / CATALOG_NAME)
    library_info["index_bytes"] = _size(ctx.library / INDEX_NAME)
    report["library"] = library_info
    try:
        model = _search_model(ctx, library) if library is not None else ctx.load_model()
        model.check()  # encoders open on first use: the doctor opens both
        report["model"] = {
            "name": model.info.name,
            "path": str(model.info.path),
            "dim": model.info.dim,
            "image_size": model.info.image_size,
            # Which graphs run (fp32, int8 or fp16) and how (photofind.clip.io_binding).
            "variant": model.variant,
            "io_binding": model.io_binding,
        }
        from photofind.clip.pipeline_plan import plan_for
        from photofind.clip.providers import cpu_threads

        plan = plan_for(model, cpu_threads())
        report["indexing"] = {
            "batch_size": plan.batch_size,
            "decode_workers": plan.decode_workers,
            "why": plan.why,
        }
        held = library_info.get("model")
        if held:
            from photofind.library.library import model_id

            # A different model cannot search these vectors: the library needs a re-index.
            report["model"]["matches_library"] = held == model_id(model)
        report["providers"]["in_use"] = model.info.provider
        report["providers"]["reason"] = model.info.provider_reason
    except PhotofindError as exc:
        report["model"] = {"error": str(exc)}
        report["providers"]["in_use"] = None
        report["providers"]["reason"] = "no model loaded"
    finally:
        if library is not None:
            library.close()
    report["watch_limits"] = {
        "max_user_watches": _read_int("/proc/sys/fs/inotify/max_user_watches"),
        "max_user_instances": _read_int("/proc/sys/fs/inotify/max_user_instances"),
    }
    return report


def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def _doctor(args: argparse.Namespace, ctx: Context) -> int:
    report = doctor_report(ctx)
    if args.json:
        emit_json(report)
        return 0
    for section, values in report.items():
        print(f"{section}:")
        if isinstance(values, dict):
            if not values:
                print("  (none)")
            for key, value in values.items():
                if isinstance(value, (list, dict)):
                    value = json.dumps(value, ensure_ascii=False)
                print(f"  {key:>18}: {value}")
        else:
            print(f"  {values}")
    return 0


# -- the demo -----------------------------------------------------------------------------

DEMO_DIR = "demo"


def run_demo(ctx: Context, *, open_gui=None) -> int:
    """``photofind --demo``: build the demo library in ``<library>/demo`` with the tiny model
    (unless it is built), then hand it to ``open_gui(library_dir, model)`` if given, else
    print a few searches on it.

    A built demo is only read here, so this works while the app holds it open; the app's
    own read-only offer then covers a second window."""
    from photofind.clip import load_model
    from photofind.demo import DEMO_MODEL, EXAMPLE_SEARCHES, build_demo_library
    from photofind.library.library import Library
    from photofind.library.lockfile import LibraryLockedError
    from photofind.search import SearchEngine

    root = ctx.library / DEMO_DIR
    try:
        model = load_model(
            ctx.model or DEMO_MODEL,
            provider=ctx.provider,
            library=ctx.library,
            verified=ctx.verified,
        )
    except PhotofindError as exc:
        raise PhotofindError(f"the demo needs the {DEMO_MODEL} model: {exc}") from exc
    if not _demo_built(root, model):
        print(f"building the demo library in {root} (once) ...", file=sys.stderr)
        try:
            build_demo_library(root, model)
        except LibraryLockedError as exc:
            raise PhotofindError(
                f"the demo library {root} is being built by another photofind process "
                f"(pid {exc.pid or 'unknown'}): run this again once it is done"
            ) from None
    if open_gui is not None:
        return open_gui(root, model) or 0
    with Library.open(root, readonly=True) as library:
        engine = SearchEngine(library, model)
        print(f"demo library {root}: {len(library.index)} photos, model {model.info.name}")
        for text in EXAMPLE_SEARCHES:
            results = engine.search(text, k=3)
            print(f'\nphotofind --library {root} search "{text}"')
            for r in results:
                print(f"  {r.score:.4f}  {printable(r.path)}")
            if not results:
                print("  (nothing stands out)")
    return 0


def _demo_built(root: Path, model) -> bool:
    """Whether the demo library in ``root`` is complete for ``model``: every demo photo
    indexed with it, nothing pending (read-only: another process may hold it)."""
    from photofind.demo import DEMO_COUNT
    from photofind.library.catalog import CATALOG_NAME, Catalog
    from photofind.library.library import model_id

    if not (root / CATALOG_NAME).is_file():
        return False
    try:
        with Catalog.open(root, readonly=True) as catalog:
            counts = catalog.counts()
            return (
                counts.get("indexed", 0) >= DEMO_COUNT
                and not counts.get("pending", 0)
                and catalog.model_id == model_id(model)
                and catalog.staged_model_id is None
            )
    except PhotofindError:
        return False  # unreadable or of an older schema: building repairs it


COMMANDS = (
    Command("search", "photos that show what the text says, best first", _search, _search_args),
    Command(
        "similar",
        "photos that look like a photo, best first (the photo itself first)",
        _similar,
        _similar_args,
    ),
    Command(
        "doctor",
        "versions, providers, model, paths, library size and watch limits",
        _doctor,
        _doctor_args,
    ),
)
