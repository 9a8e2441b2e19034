"""The one list of the file types photofind reads, by kind.

A kind is what the user sees a file as (``photo``, ``raw``, ``video``); the extensions are
compared lower-case because Windows and NAS names vary in case.
"""

from __future__ import annotations

import os

PHOTO = "photo"
RAW = "raw"
VIDEO = "video"

PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
RAW_EXTENSIONS: frozenset[str] = frozenset()
# What PyAV (FFmpeg) reads and phones, cameras and camcorders write: MPEG-4 and QuickTime
# (phones), Matroska and WebM, AVI, 3GP (older phones), AVCHD's MPEG-TS (.mts/.m2ts) and
# MPEG-1/2 program streams (DVD rips, old camcorders).
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".mts", ".m2ts", ".mpg", ".mpeg"}
)

_KIND_OF = {
    **{ext: PHOTO for ext in PHOTO_EXTENSIONS},
    **{ext: RAW for ext in RAW_EXTENSIONS},
    **{ext: VIDEO for ext in VIDEO_EXTENSIONS},
}
SUPPORTED_EXTENSIONS = frozenset(_KIND_OF)


def kind_of(name: str) -> str | None:
    """The kind of a file by its name, or None for a type photofind does not read."""
    return _KIND_OF.get(os.path.splitext(name)[1].lower())


def is_supported(name: str) -> bool:
    return kind_of(name) is not None
