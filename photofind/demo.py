"""The offline demo: a library of generated photos that the tiny model can search.

``photofind --demo`` calls :func:`build_demo_library` and then opens it; everything is made
on the spot (no network, no downloads): the photos come from :mod:`photofind.synthetic`,
the model is the bundled ``tiny-synthetic``, which knows exactly that world of coloured
shapes on plain, striped, checkered, gradient and noisy backgrounds.

The photos are spread over three album folders and dated (file time) across 2019-2024, so
the folder and date filters have something to show. Building is idempotent: a second call
writes nothing that exists and indexes nothing that is indexed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from photofind.atomic import atomic_write_bytes
from photofind.synthetic import STREAM_PUBLIC, encode, generate

DEMO_MODEL = "tiny-synthetic"
DEMO_COUNT = 300
DEMO_SEED = 2024
ALBUMS = ("holiday", "garden", "studio")
PHOTOS_DIR = "photos"

#: Searches that show what the tiny model understands, for the demo's first screen.
EXAMPLE_SEARCHES = (
    "a red circle",
    "a large blue square",
    "a yellow star on a purple background",
    "a red circle - blue background",
    "2*a green heart + striped background",
)

_FIRST_DAY = datetime(2019, 1, 1, 9, 0, 0)
_SPAN_DAYS = 6 * 365


def demo_photo_path(root: Path, index: int, fmt: str) -> Path:
    album = ALBUMS[index % len(ALBUMS)]
    return root / PHOTOS_DIR / album / f"demo_{index:04d}.{fmt}"


def _taken(index: int, count: int) -> float:
    """A date for photo ``index``: evenly over six years, in index order."""
    when = _FIRST_DAY + timedelta(days=_SPAN_DAYS * index / max(count - 1, 1))
    return when.timestamp()


def write_demo_photos(root: Path, count: int = DEMO_COUNT, seed: int = DEMO_SEED) -> list[Path]:
    """Write the demo photos under ``root/photos`` (skipping those already there)."""
    paths = []
    for index in range(count):
        scene, image, _ = generate(seed, index, STREAM_PUBLIC, captions_per_image=1)
        target = demo_photo_path(root, index, scene.format)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, encode(image, scene.format))
            stamp = _taken(index, count)
            os.utime(target, (stamp, stamp))
        paths.append(target)
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
    from photofind.library.library import Library

    root = Path(path)
    write_demo_photos(root, count, seed)
    with Library.open(root) as library:
        library.add_folder(root / PHOTOS_DIR)
        library.scan()
        library.index_pending(model, progress=progress)
    return root
