"""The capture date of a photo, from its EXIF header (no pixel decoding)."""

from __future__ import annotations

from datetime import datetime

from PIL import UnidentifiedImageError

from photofind.clip.preprocess import open_photo
from photofind.errors import ImageError

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
