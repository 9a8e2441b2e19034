"""The capture date of a photo, from its metadata (no pixel decoding).

JPEG, HEIC, AVIF, JPEG XL, TIFF, PNG and WebP: the EXIF block Pillow (and pillow-heif)
read from the header. Camera RAW: LibRaw's reading of the RAW's own metadata.
"""

from __future__ import annotations

from datetime import datetime

from PIL import UnidentifiedImageError

from photofind.errors import ImageError
from photofind.formats import raw
from photofind.formats.decode import is_raw
from photofind.formats.stills import open_photo

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_DATETIME_DIGITIZED = 0x9004
_DATETIME = 0x0132


def _parse(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip().rstrip("\x00")
    try:
        return datetime.strptime(value[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None  # cameras write "0000:00:00 00:00:00" and worse


def capture_date(path) -> str | None:
    """ISO 8601 local date and time the photo was taken, or None when unknown."""
    if is_raw(path):
        taken = raw.capture_time(path)
        return None if taken is None else taken.replace(microsecond=0).isoformat()
    try:
        with open_photo(path) as img:
            exif = img.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
            for value in (
                sub.get(_DATETIME_ORIGINAL),
                sub.get(_DATETIME_DIGITIZED),
                exif.get(_DATETIME),
            ):
                if (parsed := _parse(value)) is not None:
                    return parsed
    except (OSError, ImageError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    return None
