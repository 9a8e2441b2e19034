"""Files of one shot shown as one item: a RAW beside its JPEG or HEIC, a Live Photo's clip
beside its still.

Cameras set to RAW+JPEG write ``IMG_0042.CR2`` and ``IMG_0042.JPG`` into one folder; an
iPhone's Live Photo is ``IMG_0042.HEIC`` with ``IMG_0042.MOV``. Each file stays its own row
of the catalog (scanned, hashed, indexed, and searchable on its own by a type filter), and
the grouping is made where results are shown, from the names alone: the *lead* (the JPEG
or HEIC) is what the grid, ``search`` and ``list`` show, and it lists its *companions*
(the RAW, the clip) so the user can reach them. A RAW without a sibling is its own lead.

Made from the paths at list and search time, so it needs no schema change and follows
renames and deletions at once: rename the JPEG away and the RAW shows by itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from photofind.formats.kinds import PHOTO_EXTENSIONS, RAW_EXTENSIONS, VIDEO_EXTENSIONS

# Which sibling leads, best first: the camera's or phone's own rendering of the shot.
_LEAD_ORDER = (
    ".heic",
    ".heif",
    ".hif",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".avif",
    ".jxl",
    ".png",
    ".tif",
    ".tiff",
)
_LEAD_RANK = {ext: rank for rank, ext in enumerate(_LEAD_ORDER)}
assert set(_LEAD_RANK) <= PHOTO_EXTENSIONS
#: A Live Photo's clip: a QuickTime movie of the still's name (only when the scanner
#: catalogues videos: photofind.formats.kinds.VIDEO_EXTENSIONS).
LIVE_PHOTO_CLIP_EXTENSIONS = frozenset({".mov"})


def _shot(path: str) -> tuple[str, str]:
    """The shot a file belongs to: its folder and its name without the extension, compared
    without case (a card read on Windows and copied on a Mac may change either)."""
    cut = max(path.rfind(os.sep), path.rfind("/"))
    folder, name = path[: max(cut, 0)], path[cut + 1 :]
    dot = name.rfind(".")
    stem = name[:dot] if dot > 0 else name
    return os.path.normcase(folder), stem.casefold()


def _ext(path: str) -> str:
    """The extension, lower-case (os.path.splitext is the cost here: 100,000s of paths)."""
    dot = path.rfind(".")
    return path[dot:].lower() if dot > max(path.rfind(os.sep), path.rfind("/")) else ""


def _is_companion(path: str) -> bool:
    ext = _ext(path)
    return ext in RAW_EXTENSIONS or (ext in LIVE_PHOTO_CLIP_EXTENSIONS and ext in VIDEO_EXTENSIONS)


def companions(paths: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``{lead path: its companions' paths}`` for every shot of ``paths`` that has both.

    A companion (a RAW, a Live Photo clip) whose folder holds a still of the same base name
    (JPEG, HEIC, ...) belongs to that still; the RAW or clip of a shot without one is
    its own item and appears in no list here.
    """
    paths = paths if isinstance(paths, (list, tuple)) else list(paths)
    # Only the shots that have a companion are looked at closely: a library without RAWs
    # costs one extension test a file (100,000 paths: a few tens of milliseconds).
    pending: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        if _is_companion(path):
            pending.setdefault(_shot(path), []).append(path)
    if not pending:
        return {}
    leads: dict[tuple[str, str], str] = {}
    for path in paths:
        rank = _LEAD_RANK.get(_ext(path))  # every lead extension is a photo's
        if rank is None:
            continue
        shot = _shot(path)
        if shot not in pending:
            continue
        held = leads.get(shot)
        if held is None or rank < _LEAD_RANK[_ext(held)]:
            leads[shot] = path
    return {leads[shot]: tuple(sorted(found)) for shot, found in pending.items() if shot in leads}


def companion_paths(groups: dict[str, tuple[str, ...]]) -> set[str]:
    """Every path that is shown through its lead rather than by itself."""
    return {path for found in groups.values() for path in found}
