"""One function decodes every still kind to an upright 8-bit sRGB picture: :func:`decode`.

Indexing (the analysers' shared :class:`photofind.clip.preprocess.Picture`), thumbnails,
the preview and the face pass all come here, so a format that decodes for one decodes for
all, and every way it can fail becomes one :class:`~photofind.errors.ImageError` naming the
file and the reason.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import rawpy
from PIL import Image, UnidentifiedImageError

from photofind.errors import ImageError, ImageTooLarge
from photofind.formats import raw as raw_files
from photofind.formats.colour import to_rgb, to_srgb
from photofind.formats.files import NotARegularFile, read_head
from photofind.formats.kinds import RAW, kind_of
from photofind.formats.stills import open_photo

ImageItem = str | os.PathLike | Image.Image

_ORIENTATION_TAG = 0x0112
# EXIF orientations 5..8 swap width and height; draft sizes are asked in stored orientation.
SWAPS_AXES = frozenset({5, 6, 7, 8})
# Whether, after ImageOps.exif_transpose, the displayed x / y axis runs opposite to the stored
# axis it comes from. Needed to map libjpeg's partial last block (which sits at the stored
# right/bottom edge) to the correct displayed edge.
FLIPS = {
    1: (False, False),
    2: (True, False),
    3: (True, True),
    4: (False, True),
    5: (False, False),
    6: (True, False),
    7: (True, True),
    8: (False, True),
}
# What ImageOps.exif_transpose does for each orientation.
_UPRIGHT = raw_files.UPRIGHT
_DRAFTABLE_FORMATS = frozenset({"JPEG", "MPO"})

# First bytes of files we refuse by design, to say what they are rather than "not an image".
_EPS = "a PostScript (EPS) file, not a photo; photofind never opens those (they run Ghostscript)"
_REFUSED_SIGNATURES = (
    (b"%!PS", _EPS),
    (b"\xc5\xd0\xd3\xc6", _EPS),  # the binary header of a DOS EPS file
    (b"%PDF", "a PDF document, not a photo"),
)
# ISO base media files (HEIC, AVIF, and video): "ftyp" at byte 4, then the major brand.
_HEIF_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


class Decoded(NamedTuple):
    image: Image.Image  # upright, "RGB", sRGB
    full_size: tuple[int, int]  # upright size at full resolution (of what was decoded)
    scale: int  # 1, or 2/4/8 when libjpeg decoded at reduced scale
    orientation: int  # the EXIF orientation that was applied
    #: the upright size of the picture itself when what was decoded is a smaller copy the
    #: file stores (a HEIC's thumbnail): positions found in ``image`` (faces) are mapped to
    #: it; None when ``full_size`` is the picture's own
    picture_size: tuple[int, int] | None = None


def label(item: ImageItem) -> str:
    if isinstance(item, Image.Image):
        return str(getattr(item, "filename", "") or "<in-memory image>")
    return os.fspath(item)


def _path_of(item: ImageItem):
    if isinstance(item, Image.Image):
        return getattr(item, "filename", None) or None
    return item


def _refused_kind(item: ImageItem) -> str | None:
    """What a file Pillow could not identify is, when it is a kind we refuse by design."""
    head = read_head(item, 16)
    for signature, kind in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def _unidentified(item: ImageItem) -> str:
    """Why a file no decoder recognised was not read."""
    try:
        if os.path.getsize(item) == 0:
            return "the file is empty (0 bytes)"
    except OSError:
        pass
    refused = _refused_kind(item)
    if refused is not None:
        return f"it is {refused}"
    head = read_head(item, 12)
    brand = _HEIF_BRANDS.get(head[8:12]) if head[4:8] == b"ftyp" else None
    if brand is not None:
        # The box structure says HEIC/AVIF, yet libheif found no image in it: the file ends
        # early or its boxes are damaged (a copy cut short, a sync that did not finish).
        return f"the {brand} file is truncated or damaged (libheif found no image in it)"
    return "not an image, or in a format photofind cannot read"


def reason(exc: BaseException, item: ImageItem) -> str:
    """A one-line, human reason for a decode failure."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, NotARegularFile):
        return exc.strerror
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(exc, UnidentifiedImageError):
        if isinstance(item, Image.Image):
            return "not an image, or in a format photofind cannot read"
        return _unidentified(item)
    if isinstance(exc, rawpy.LibRawError):
        return _raw_reason(exc, item)
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text or isinstance(exc, EOFError):
        return f"the file is truncated or damaged ({text})"
    return f"the file is damaged or unsupported ({type(exc).__name__}: {text})"


def _raw_reason(exc: rawpy.LibRawError, item: ImageItem) -> str:
    said = exc.args[0] if exc.args else ""
    said = (said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)).strip()
    try:
        if os.path.getsize(item) == 0:
            return "the file is empty (0 bytes)"
    except OSError:
        pass
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return f"not a camera RAW file LibRaw can read ({said or 'unsupported'})"
    if isinstance(exc, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
        return f"the RAW file is truncated or damaged (LibRaw: {said or type(exc).__name__})"
    if isinstance(exc, rawpy.LibRawUnsufficientMemoryError):
        return "not enough memory to decode it"
    return f"the RAW file is damaged or unsupported (LibRaw: {said or type(exc).__name__})"


def _too_large(item: ImageItem, size: tuple[int, int], max_pixels: int) -> ImageTooLarge:
    width, height = size
    return ImageTooLarge(
        f"Refusing to decode image {label(item)}: {width}x{height} pixels "
        f"({width * height / 1e6:.4g} megapixels) is over the limit of "
        f"{max_pixels / 1e6:.4g} megapixels",
        _path_of(item),
    )


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        # A damaged EXIF block should not cost the user the photo: show it as stored.
        return 1
    return value if value in FLIPS else 1


def is_raw(item: ImageItem) -> bool:
    return not isinstance(item, Image.Image) and kind_of(os.fspath(item)) == RAW


def decode(item: ImageItem, max_pixels: int | None, draft_size: tuple[int, int] | None) -> Decoded:
    """Decode ``item`` (a path, or an opened PIL image, never modified) upright, in 8-bit
    sRGB "RGB"; ``draft_size`` (displayed orientation) lets a JPEG (and a RAW's JPEG
    preview) decode reduced while both sides stay at least that large. Raises
    :class:`ImageError` (:class:`ImageTooLarge` over ``max_pixels``, checked before any
    pixel is decoded)."""
    if isinstance(item, Image.Image):
        return _decode_opened(item, item, max_pixels, None)
    try:
        if is_raw(item):
            return _decode_raw(item, max_pixels, draft_size)
        # We open the file ourselves so that it is closed when we are done, also for
        # multi-frame formats (GIF, MPO, TIFF) where Pillow keeps its own file open to seek.
        # The decoded pixels live in memory and stay valid after the file is closed.
        with open_photo(item) as img:
            return _decode_opened(img, item, max_pixels, draft_size)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"Cannot read image {label(item)}: {reason(exc, item)}", item) from exc


def _decode_raw(item, max_pixels, draft_size) -> Decoded:
    try:
        got = raw_files.decode_raw(item, max_pixels, draft_size)
    except raw_files.RawTooLarge as exc:
        raise _too_large(item, exc.size, max_pixels) from None
    image = to_rgb(to_srgb(got.image))
    return Decoded(image, got.full_size, got.scale, got.orientation)


def _decode_opened(
    img: Image.Image,
    item: ImageItem,
    max_pixels: int | None,
    draft_size: tuple[int, int] | None,
) -> Decoded:
    try:
        if max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
            raise _too_large(item, img.size, max_pixels)
        orientation = _orientation(img)
        width, height = img.size
        full_size = (height, width) if orientation in SWAPS_AXES else (width, height)
        scale, picture_size = 1, None
        if draft_size is not None and img.format in _DRAFTABLE_FORMATS:
            want_w, want_h = draft_size
            if orientation in SWAPS_AXES:
                want_w, want_h = want_h, want_w
            drafted = img.draft("RGB", (max(1, int(want_w)), max(1, int(want_h))))
            if drafted is not None:
                scale = max(1, round(width / drafted[1][2]))
        elif draft_size is not None and img.format == "HEIF":
            # A phone's HEIC carries a small copy (an iPhone's: 320 x 240); pillow-heif's
            # draft picks the smallest at least this large, upright like the image, and
            # the grid's thumbnails come from it without decoding 12 megapixels. It is
            # what was decoded, so its own size is the full size (no scale to undo).
            want = (max(1, int(draft_size[0])), max(1, int(draft_size[1])))
            if img.draft("RGB", want) is not None:
                picture_size, full_size = full_size, img.size
        img.load()
        # Colours first (the profile belongs to the stored pixels), then upright.
        img = to_srgb(img)
        if orientation != 1:
            # The same transposes as ImageOps.exif_transpose, applied after any draft
            # scaling (libjpeg scales the stored pixels, so the draft size above was asked
            # in stored orientation). Never touches the caller's image: transpose copies.
            img = img.transpose(_UPRIGHT[orientation])
        return Decoded(to_rgb(img), full_size, scale, orientation, picture_size)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(
            f"Cannot decode image {label(item)}: {reason(exc, item)}", _path_of(item)
        ) from exc


def stored_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the picture as stored, read from its header (a RAW: its sensor
    image). Raises ImageError as :func:`decode` does."""
    try:
        if is_raw(path):
            return raw_files.sensor_size(path)
        with open_photo(path) as img:
            return img.size
    except Exception as exc:
        raise ImageError(f"Cannot read image {label(path)}: {reason(exc, path)}", path) from exc
