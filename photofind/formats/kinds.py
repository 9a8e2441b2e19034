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
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".apng",
        ".gif",
        ".webp",
        ".bmp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".hif",  # Canon and Fujifilm cameras name their HEIF files so
        ".avif",
        ".jxl",
        ".psd",
    }
)
#: Camera RAW, read through LibRaw (photofind.formats.raw): Adobe DNG, Canon CR2/CR3, Nikon
#: NEF/NRW, Sony ARW/SRF/SR2, Fujifilm RAF, Olympus ORF, Panasonic RW2, Pentax PEF, Samsung
#: SRW, Hasselblad 3FR, Phase One IIQ, Leaf MOS, Epson ERF, Mamiya MEF, Sigma X3F.
RAW_EXTENSIONS = frozenset(
    {
        ".dng",
        ".cr2",
        ".cr3",
        ".nef",
        ".nrw",
        ".arw",
        ".srf",
        ".sr2",
        ".raf",
        ".orf",
        ".rw2",
        ".pef",
        ".srw",
        ".3fr",
        ".iiq",
        ".erf",
        ".mef",
        ".mos",
        ".x3f",
    }
)
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


#: File types the user picks by one name (the type filter, ``--type``), with the extensions
#: each covers. "RAW" is every camera RAW extension.
TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "jpeg": (".jpg", ".jpeg", ".jpe"),
    "png": (".png", ".apng"),
    "heic": (".heic", ".heif", ".hif"),
    "avif": (".avif",),
    "jxl": (".jxl",),
    "webp": (".webp",),
    "gif": (".gif",),
    "tiff": (".tif", ".tiff"),
    "bmp": (".bmp",),
    "psd": (".psd",),
    "raw": tuple(sorted(RAW_EXTENSIONS)),
    "video": tuple(sorted(VIDEO_EXTENSIONS)),
}
# Names a user may type for a group.
_TYPE_NAMES = {"jpg": "jpeg", "jpe": "jpeg", "tif": "tiff", "heif": "heic", "hif": "heic"}


def type_extensions(name: str) -> tuple[str, ...]:
    """The extensions (without the dot) a type name covers: ``jpg`` -> jpg, jpeg, jpe;
    ``raw`` -> every RAW extension; a plain extension -> itself."""
    key = name.strip().lower().lstrip(".")
    group = TYPE_GROUPS.get(_TYPE_NAMES.get(key, key))
    if group is None:
        return (key,) if key else ()
    return tuple(ext[1:] for ext in group)


#: The type filter's choices, in the order shown: (label, TYPE_GROUPS key).
TYPE_LABELS = (
    ("JPEG", "jpeg"),
    ("HEIC", "heic"),
    ("RAW", "raw"),
    ("PNG", "png"),
    ("AVIF", "avif"),
    ("JPEG XL", "jxl"),
    ("WebP", "webp"),
    ("GIF", "gif"),
    ("TIFF", "tiff"),
    ("PSD", "psd"),
    ("BMP", "bmp"),
    ("Videos", "video"),
)
