"""The offline demo: a library of generated photos that the tiny model can search.

``photofind --demo`` calls :func:`build_demo_library` and then opens it; everything is made
on the spot (no network, no downloads): the photos come from :mod:`photofind.synthetic`,
the model is the bundled ``tiny-synthetic``, which knows exactly that world of coloured
shapes on plain, striped, checkered, gradient and noisy backgrounds.

The photos are spread over three album folders and dated (file time) across 2019-2024, so
the folder and date filters have something to show. Every fifth photo is planted for one of
the example searches (:mod:`photofind.demo_scenes`), so that each example has right answers
to find. Building is idempotent: a second call writes nothing that exists and indexes
nothing that is indexed; a demo made by an older generation (``DEMO_VERSION``) is written
again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from photofind.atomic import atomic_write_bytes
from photofind.demo_scenes import demo_scene
from photofind.synthetic import Scene, encode, render

DEMO_MODEL = "tiny-synthetic"
DEMO_COUNT = 300
DEMO_SEED = 2024
ALBUMS = ("holiday", "garden", "studio")
PHOTOS_DIR = "photos"
#: The demo is its own library, in this folder of the user's library folder (never mixed in).
DEMO_DIR = "demo"
#: Which generation of scenes the demo's photos are; a demo of another is written again.
#: 2: photos planted for the example searches.
DEMO_VERSION = 2
_VERSION_FILE = "demo-version"

#: Searches that show what the tiny model understands: the app's first screen offers the
#: first three, ``photofind --demo COMMAND`` prints them all. Each finds at least five right
#: photos in its top ten (tests/test_demo.py measures it against the scenes' attributes).
EXAMPLE_SEARCHES = (
    "a red circle",
    "two green squares",
    "a yellow star on a purple background",
    "a red circle - white background",
    "2*a blue heart + checkered background",
)
#: The ones the app's first screen offers as links.
FIRST_SCREEN_EXAMPLES = EXAMPLE_SEARCHES[:3]

_FIRST_DAY = datetime(2019, 1, 1, 9, 0, 0)
_SPAN_DAYS = 6 * 365


def demo_root(library_root: str | os.PathLike) -> Path:
    """Where the demo library of the library at ``library_root`` lives."""
    return Path(library_root) / DEMO_DIR


def is_demo_library(root: str | os.PathLike) -> bool:
    """Was the library at ``root`` made by :func:`build_demo_library`?"""
    return (Path(root) / _VERSION_FILE).is_file()


def demo_photo_path(root: Path, index: int, fmt: str) -> Path:
    album = ALBUMS[index % len(ALBUMS)]
    return root / PHOTOS_DIR / album / f"demo_{index:04d}.{fmt}"


def _taken(index: int, count: int) -> float:
    """A date for photo ``index``: evenly over six years, in index order."""
    when = _FIRST_DAY + timedelta(days=_SPAN_DAYS * index / max(count - 1, 1))
    return when.timestamp()


def demo_scenes(root: Path, count: int = DEMO_COUNT, seed: int = DEMO_SEED) -> dict[str, Scene]:
    """Each demo photo's path and the scene drawn in it (what it truly shows)."""
    out = {}
    for index in range(count):
        scene = demo_scene(seed, index, EXAMPLE_SEARCHES)
        out[str(demo_photo_path(Path(root), index, scene.format))] = scene
    return out


def _forget_older_generation(root: Path) -> None:
    """Delete the photos of a demo made by another ``DEMO_VERSION`` (only the demo's own
    generated files: ``demo_NNNN`` in its album folders)."""
    stamp = root / _VERSION_FILE
    try:
        version = int(stamp.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        version = 1  # demos made before the stamp existed
    if version == DEMO_VERSION:
        return
    for album in ALBUMS:
        for old in (root / PHOTOS_DIR / album).glob("demo_[0-9][0-9][0-9][0-9].*"):
            old.unlink()


def write_demo_photos(root: Path, count: int = DEMO_COUNT, seed: int = DEMO_SEED) -> list[Path]:
    """Write the demo photos under ``root/photos`` (skipping those already there)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _forget_older_generation(root)
    paths = []
    for path, scene in demo_scenes(root, count, seed).items():
        target = Path(path)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, encode(render(scene), scene.format))
            index = int(target.stem.rsplit("_", 1)[1])
            # The version in the nanoseconds: a photo rewritten at the same path with the
            # same size still differs from the catalog's record, so it is indexed again.
            stamp_ns = int(_taken(index, count)) * 1_000_000_000 + DEMO_VERSION
            os.utime(target, ns=(stamp_ns, stamp_ns))
        paths.append(target)
    atomic_write_bytes(root / _VERSION_FILE, f"{DEMO_VERSION}\n".encode())
    return paths


def build_demo_library(
    path: str | os.PathLike,
    model,
    *,
    count: int = DEMO_COUNT,
    seed: int = DEMO_SEED,
    progress: Callable | None = None,
) -> Path:
    """Make (or complete) a demo library in ``path`` indexed with ``model``; returns ``path``.

    ``model`` is a loaded :class:`photofind.clip.ClipModel` (the demo means
    ``tiny-synthetic``; any model works, only less well). ``progress`` is the indexer's
    progress callback.
    """
    from photofind import settings
    from photofind.library.library import Library

    root = Path(path)
    write_demo_photos(root, count, seed)
    # Generated shapes show nobody: a face pass over them (the app's two face worker
    # processes, HOG over every photo) would cost the demo's first minute for nothing.
    settings.update(root, {"faces.enabled": False})
    with Library.open(root) as library:
        library.add_folder(root / PHOTOS_DIR)
        library.scan()
        library.index_pending(model, progress=progress)
    return root
