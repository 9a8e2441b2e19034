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

from photofind.formats.kinds import PHOTO, RAW, VIDEO, kind_of

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
#: A Live Photo's clip: a QuickTime movie of the still's name (only when the scanner
#: catalogues videos: photofind.formats.kinds.VIDEO_EXTENSIONS).
LIVE_PHOTO_CLIP_EXTENSIONS = frozenset({".mov"})


def _shot(path: str) -> tuple[str, str]:
    """The shot a file belongs to: its folder and its name without the extension, compared
    without case (a card read on Windows and copied on a Mac may change either)."""
    folder, name = os.path.split(path)
    return os.path.normcase(folder), os.path.splitext(name)[0].casefold()


def _is_companion(path: str) -> bool:
    kind = kind_of(path)
    if kind == RAW:
        return True
    return kind == VIDEO and os.path.splitext(path)[1].lower() in LIVE_PHOTO_CLIP_EXTENSIONS


def companions(paths: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``{lead path: its companions' paths}`` for every shot of ``paths`` that has both.

    A companion (a RAW, a Live Photo clip) whose folder holds a still of the same base name
    (JPEG, HEIC, ...) belongs to that still; the RAW or clip of a shot without one is
    its own item and appears in no list here.
    """
    leads: dict[tuple[str, str], str] = {}
    pending: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        shot = _shot(path)
        if _is_companion(path):
            pending.setdefault(shot, []).append(path)
            continue
        ext = os.path.splitext(path)[1].lower()
        if kind_of(path) != PHOTO or ext not in _LEAD_RANK:
            continue
        held = leads.get(shot)
        if held is None or _LEAD_RANK[ext] < _LEAD_RANK[os.path.splitext(held)[1].lower()]:
            leads[shot] = path
    return {leads[shot]: tuple(sorted(found)) for shot, found in pending.items() if shot in leads}


def companion_paths(groups: dict[str, tuple[str, ...]]) -> set[str]:
    """Every path that is shown through its lead rather than by itself."""
    return {path for found in groups.values() for path in found}
