"""Camera RAW files through LibRaw (rawpy): the embedded preview when it is large enough,
else a half-size demosaic; upright by the RAW's own orientation.

Nearly every camera stores a full-size or screen-size JPEG preview beside the sensor data.
Decoding it is a JPEG decode (libjpeg may even scale it down while decoding); a demosaic of
a 24 MP sensor is about two orders of magnitude slower (tests/bench/bench_formats.py). So
the preview is used whenever both its sides are at least what the caller asked for (the
analysers ask 1.5x the model's input side, the thumbnails 320, the preview 1600). A RAW
without a usable preview, or with only a small thumbnail, is demosaiced at half size
(LibRaw's ``half_size``: one RGB pixel per 2x2 Bayer block, no interpolation), which is
large enough for everything photofind shows and far faster than a full demosaic.
"""

from __future__ import annotations

import io
import os
from datetime import datetime
from typing import NamedTuple

import rawpy
from PIL import Image

from photofind.formats.files import open_regular_file

#: LibRaw's ``flip`` (sizes.flip) -> the EXIF orientation that means the same. LibRaw reads
#: the TIFF orientation tag as ``"50132467"[orientation] - '0'``; this is its inverse.
FLIP_TO_EXIF = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: How a decode was made: from the embedded JPEG (or bitmap) preview, or demosaiced.
PREVIEW = "preview"
DEMOSAIC = "demosaic"


class RawPicture(NamedTuple):
    image: Image.Image  # upright; "RGB" (a JPEG preview may be another mode until converted)
    full_size: tuple[int, int]  # upright size of what was decoded (the preview, undrafted)
    sensor_size: tuple[int, int]  # upright size of the full sensor image
    scale: int  # libjpeg's reduction of the preview (1: none)
    orientation: int  # the EXIF orientation that was applied
    source: str  # PREVIEW or DEMOSAIC


class RawTooLarge(Exception):
    """The sensor image has more pixels than allowed (the caller words the message)."""

    def __init__(self, size: tuple[int, int]):
        super().__init__(size)
        self.size = size


def _open(path: str | os.PathLike) -> rawpy.RawPy:
    # rawpy reads a file object whole into memory; opening it ourselves keeps the regular
    # file check (a FIFO named photo.dng must not block LibRaw's own open).
    with open_regular_file(path) as fp:
        return rawpy.imread(fp)


def _open_metadata(path: str | os.PathLike) -> rawpy.RawPy:
    """The RAW opened by LibRaw's own file reader, which reads the headers only (a whole
    RAW is 20-80 MB): for its size and date. Checked to be a regular file first."""
    with open_regular_file(path):
        pass
    return rawpy.imread(os.fspath(path))


def sensor_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the RAW's image as stored (before its orientation)."""
    with _open_metadata(path) as raw:
        return raw.sizes.width, raw.sizes.height


def _preview(raw: rawpy.RawPy) -> Image.Image | None:
    """The embedded preview, opened lazily (a JPEG's header only), or None."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None  # a damaged preview: the sensor data may still be good
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            img = Image.open(io.BytesIO(thumb.data), formats=("JPEG",))
        except Exception:  # noqa: BLE001 - a damaged preview falls back to the demosaic
            return None
        return img
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        return Image.fromarray(thumb.data)
    return None


def decode_raw(
    path: str | os.PathLike,
    max_pixels: int | None,
    draft_size: tuple[int, int] | None,
) -> RawPicture:
    """Decode the RAW at ``path`` upright, at least ``draft_size`` (displayed orientation)
    when the preview allows, else half size. Raises :class:`RawTooLarge`, rawpy's
    ``LibRawError`` subclasses and ``OSError``; the caller turns them into one message."""
    with _open(path) as raw:
        sizes = raw.sizes
        width, height = sizes.width, sizes.height
        if max_pixels is not None and width * height > max_pixels:
            raise RawTooLarge((width, height))
        orientation = FLIP_TO_EXIF.get(sizes.flip, 1)
        swaps = orientation in _SWAPS_AXES
        upright = (height, width) if swaps else (width, height)
        # Without a wanted size, half the sensor is what the demosaic would give.
        want = draft_size or (max(1, upright[0] // 2), max(1, upright[1] // 2))
        preview = _preview(raw)
        if preview is not None:
            pw, ph = preview.size
            shown = (ph, pw) if swaps else (pw, ph)
            if shown[0] >= want[0] and shown[1] >= want[1]:
                scale = 1
                if preview.format == "JPEG":
                    stored_want = (want[1], want[0]) if swaps else want
                    drafted = preview.draft("RGB", stored_want)
                    if drafted is not None:
                        scale = max(1, round(pw / drafted[1][2]))
                preview.load()
                img = preview.transpose(UPRIGHT[orientation]) if orientation != 1 else preview
                return RawPicture(img, shown, upright, scale, orientation, PREVIEW)
        # LibRaw applies the orientation itself (user_flip left at the file's own).
        rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        img = Image.fromarray(rgb)
        return RawPicture(img, img.size, upright, 1, orientation, DEMOSAIC)


def capture_time(path: str | os.PathLike) -> datetime | None:
    """When the RAW was taken, from LibRaw's reading of its metadata (local time), or None.

    LibRaw parses the camera's date (EXIF DateTimeOriginal in TIFF-based RAWs, the maker's
    own fields elsewhere) with ``mktime`` and rawpy turns it back with
    ``datetime.fromtimestamp``: the same local wall-clock time the camera wrote."""
    try:
        with _open_metadata(path) as raw:
            stamp = raw.other.timestamp
    except (OSError, rawpy.LibRawError):
        return None
    if stamp is None or stamp.timestamp() <= 0:
        return None  # 0: LibRaw found no date
    return stamp
