"""Decode photos and turn them into CLIP input tensors, with numpy and Pillow only.

Two jobs live here:

* :func:`open_image` turns anything Pillow can open into an upright 8-bit RGB picture, and
  turns every way that can fail into :class:`~photofind.errors.ImageError` naming the file.
* :func:`preprocess` reproduces CLIP's evaluation transform (torchvision ``Resize(S, BICUBIC)``
  on a PIL image, ``CenterCrop(S)``, ``ToTensor``, ``Normalize``) so the ONNX image encoder
  sees what the reference PyTorch model saw. :func:`load_and_preprocess` adds a fast path
  that lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the full resolution would only be
  thrown away by the resize.

Where the reference behaviour is odd we follow it for the pictures real users have (RGB and
greyscale JPEGs: bit-exact, RGBA/LA PNGs: same treatment of transparency) and choose the
sensible reading where the reference is plainly broken (16-bit greyscale, which the
reference clips to white).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from photofind.errors import ImageError, ImageTooLarge

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DRAFT_MULTIPLE",
    "Picture",
    "draft_side",
    "PHOTO_FORMATS",
    "ImageItem",
    "load_and_preprocess",
    "open_image",
    "open_photo",
    "open_regular_file",
    "NotARegularFile",
    "preprocess",
    "resized_size",
    "center_crop_box",
]

#: Pictures with more pixels than this are refused before decoding (decompression bombs,
#: scans of posters). 100 megapixels is four times a high-end camera.
DEFAULT_MAX_PIXELS = 100_000_000

#: The fast path keeps the decoded shortest side at least this many times the model's input
#: size S. The error against the exact path grows as the final bicubic step has less room:
#: measured on photo-like JPEGs (mean abs difference, x255, S=224 and 336), a decoded short
#: side of 1.0*S gives ~1.7-1.8, 1.25*S ~0.85, 1.5*S ~0.63, 2*S ~0.53, 4*S ~0.17. 1.5 keeps
#: the worst case three times under the 2/255 budget and still lets a 12 MP photo
#: (4000x3000 at S=224) decode at 1/8 scale, about 4.5x faster than the full decode;
#: a multiple of 2 would force 1/4 scale there and only reach ~3.5x.
#: tests/bench/bench_decode.py --sweep re-measures this.
DRAFT_MULTIPLE = 1.5

ImageItem = str | os.PathLike | Image.Image

# Our own guard (see _check_pixels) replaces Pillow's: Pillow warns above ~89 megapixels and
# raises above ~179, with its own wording and without the file name, and its warning turns
# into an error under warnings-as-errors. The setting is process-wide; every decode in
# photofind goes through open_image, which always applies the configurable limit first.
Image.MAX_IMAGE_PIXELS = None

_ORIENTATION_TAG = 0x0112
# EXIF orientations 5..8 swap width and height; draft sizes are asked in stored orientation.
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# Whether, after ImageOps.exif_transpose, the displayed x / y axis runs opposite to the stored
# axis it comes from. Needed to map libjpeg's partial last block (which sits at the stored
# right/bottom edge) to the correct displayed edge.
_FLIPS = {
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
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_DRAFTABLE_FORMATS = frozenset({"JPEG", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "RGBa", "La", "PA"})

#: The only Pillow formats photofind opens a user's file with: those of the file names the
#: scanner indexes (MPO is a JPEG with extra frames; AVIF and HEIF where a plugin reads
#: them). Pillow otherwise picks the format by content, whatever the name, and some of its
#: formats run external programs: an EPS file named photo.jpg made it start Ghostscript,
#: which a PostScript ``{} loop`` kept busy forever. Never add EPS (or any format whose
#: plugin shells out) here.
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF")

# First bytes of files we refuse by design, to say what they are rather than "not an image".
_EPS = "a PostScript (EPS) file, not a photo; photofind never opens those (they run Ghostscript)"
_REFUSED_SIGNATURES = (
    (b"%!PS", _EPS),
    (b"\xc5\xd0\xd3\xc6", _EPS),  # the binary header of a DOS EPS file
    (b"%PDF", "a PDF document, not a photo"),
)


# --------------------------------------------------------------------------------------------
# Geometry: torchvision's arithmetic, reproduced exactly.


def resized_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """(width, height) after torchvision ``Resize(image_size)`` with an int size.

    torchvision (``_compute_resized_output_size``): the shorter side becomes ``image_size``
    and the longer one ``int(image_size * long / short)`` -- Python float division, then
    truncation towards zero, not rounding. A square stays square. (When that equals the
    input size torchvision returns the image untouched; Pillow's resize does the same.)
    """
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = image_size, int(image_size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, image_size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision ``CenterCrop(image_size)``.

    torchvision: ``top = int(round((height - S) / 2.0))``, same for left. Python's round is
    round-half-to-even, so an odd margin of 3 gives offset 2 (1.5 -> 2) but a margin of 1
    gives offset 0 (0.5 -> 0); we use the same round() to land on the same pixel.
    """
    top = int(round((height - image_size) / 2.0))
    left = int(round((width - image_size) / 2.0))
    return left, top, left + image_size, top + image_size


# --------------------------------------------------------------------------------------------
# Opening and decoding.


def _photo_formats() -> tuple[str, ...]:
    """PHOTO_FORMATS that this Pillow can open: ``Image.open`` fails on a name it does not
    know (HEIF without its plugin). Asked each time, since a plugin may register later."""
    if any(name not in Image.OPEN for name in PHOTO_FORMATS):
        Image.init()
    return tuple(name for name in PHOTO_FORMATS if name in Image.OPEN)


class NotARegularFile(OSError):
    """A path that names a named pipe, a device, a socket or a folder where a file was
    expected; ``strerror`` says which, as the scanner and the decoder report it."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")``, refusing anything but a regular file (:class:`NotARegularFile`).

    The file is opened non-blocking and its type checked on the opened descriptor, not on
    the name: a photo replaced by a named pipe between the scan and the decode would
    otherwise block its reader in ``open`` until some writer came along (forever), and a
    check of the name before opening races with that very replacement.
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs at a path
    flags = os.O_RDONLY | nonblock | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind(mode)
            if kind != "not a regular file":
                kind = f"it is {kind}, not a regular file"
            raise NotARegularFile(errno.EINVAL, kind, os.fspath(path))
        if nonblock:
            os.set_blocking(fd, True)  # no effect on a regular file's reads, but be plain
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def open_photo(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The lazily opened Pillow image of the photo at ``path`` (header read, no pixels),
    closed with its file afterwards. Regular files only (:func:`open_regular_file`), and
    only in :data:`PHOTO_FORMATS`: anything else raises ``UnidentifiedImageError``. Every
    place photofind opens a user's picture goes through here."""
    with open_regular_file(path) as fp, Image.open(fp, formats=_photo_formats()) as img:
        yield img


def _refused_kind(item: ImageItem) -> str | None:
    """What a file Pillow could not identify is, when it is a kind we refuse by design."""
    try:
        with open_regular_file(item) as fp:
            head = fp.read(16)
    except OSError:
        return None
    for signature, kind in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def _label(item: ImageItem) -> str:
    if isinstance(item, Image.Image):
        return str(getattr(item, "filename", "") or "<in-memory image>")
    return os.fspath(item)


def _path_of(item: ImageItem):
    if isinstance(item, Image.Image):
        return getattr(item, "filename", None) or None
    return item


def _reason(exc: BaseException, item: ImageItem) -> str:
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
        try:
            if not isinstance(item, Image.Image) and os.path.getsize(item) == 0:
                return "the file is empty (0 bytes)"
        except OSError:
            pass
        refused = _refused_kind(item) if not isinstance(item, Image.Image) else None
        if refused is not None:
            return f"it is {refused}"
        return "not an image, or in a format photofind cannot read"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text or isinstance(exc, EOFError):
        return f"the file is truncated or damaged ({text})"
    return f"the file is damaged or unsupported ({type(exc).__name__}: {text})"


def _check_pixels(img: Image.Image, max_pixels: int | None, item: ImageItem) -> None:
    if max_pixels is None:
        return
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"Refusing to decode image {_label(item)}: {width}x{height} pixels "
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
    return value if value in _FLIPS else 1


def _grey_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Map a wide greyscale array to 0..255 by its nominal range, not by clipping."""
    if mode.startswith("I;16"):
        wide = a.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    if mode == "I":
        # 32-bit integer mode carries no bit depth; in practice it holds 8- or 16-bit
        # samples (16-bit PNG/TIFF in older Pillow), rarely anything wider.
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            wide = a.astype(np.int64)
            return ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return _stretch(a.astype(np.float64))
    # "F": float samples; 0..1 is the common convention, then 0..255, otherwise stretch.
    f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(f.min()), float(f.max())) if f.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(f * 255.0).astype(np.uint8)
    if lo >= 0.0 and hi <= 255.0:
        return np.rint(f).astype(np.uint8)
    return _stretch(f)


def _stretch(f: np.ndarray) -> np.ndarray:
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return np.zeros(f.shape, np.uint8)
    return np.rint((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit "RGB"."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        # Palette transparency must go through RGBA (converting straight to RGB makes Pillow
        # warn and keeps the hidden colour of the transparent index).
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in _ALPHA_MODES:
        # The reference pipeline (CLIP / OpenCLIP: Resize, CenterCrop, then convert("RGB"))
        # resizes RGBA/LA *before* dropping alpha, and Pillow resizes those modes with
        # premultiplied alpha; the effect is the raw colour wherever alpha > 0 and black where
        # a region is fully transparent. Not compositing on white, and not a plain
        # convert("RGB") (which would reveal the hidden colour), matches it: we keep the
        # colour and zero it where alpha == 0. Only the few pixels on a transparency edge
        # differ from the reference (measured mean 0.5/255 on a hard-edged test image).
        rgba = np.array(img.convert("RGBA"))
        rgba[rgba[..., 3] == 0, :3] = 0
        return Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    if mode.startswith("I;16") or mode in ("I", "F"):
        # The reference would convert("RGB") and clip 16-bit values to 255 (a white picture);
        # scaling the full range to 8 bits is what the photo looks like.
        grey = _grey_to_uint8(np.asarray(img), mode)
        return Image.fromarray(grey).convert("RGB")
    # "1", "L", "CMYK", "YCbCr", "RGBX", "HSV", ...: Pillow's own conversion, as the reference.
    return img.convert("RGB")


class _Decoded(NamedTuple):
    image: Image.Image  # upright, "RGB"
    full_size: tuple[int, int]  # upright size at full resolution
    scale: int  # 1, or 2/4/8 when libjpeg decoded at reduced scale
    orientation: int  # the EXIF orientation that was applied


def _decode(
    item: ImageItem, max_pixels: int | None, draft_size: tuple[int, int] | None
) -> _Decoded:
    """Decode ``item`` upright and in RGB (the work behind :func:`open_image`)."""
    if isinstance(item, Image.Image):
        return _decode_opened(item, item, max_pixels, None)
    try:
        # We open the file ourselves so that it is closed when we are done, also for
        # multi-frame formats (GIF, MPO, TIFF) where Pillow keeps its own file open to seek.
        # The decoded pixels live in memory and stay valid after the file is closed.
        with open_photo(item) as img:
            return _decode_opened(img, item, max_pixels, draft_size)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"Cannot read image {_label(item)}: {_reason(exc, item)}", item) from exc


def _decode_opened(
    img: Image.Image,
    item: ImageItem,
    max_pixels: int | None,
    draft_size: tuple[int, int] | None,
) -> _Decoded:
    try:
        _check_pixels(img, max_pixels, item)
        orientation = _orientation(img)
        width, height = img.size
        full_size = (height, width) if orientation in _SWAPS_AXES else (width, height)
        scale = 1
        if draft_size is not None and img.format in _DRAFTABLE_FORMATS:
            want_w, want_h = draft_size
            if orientation in _SWAPS_AXES:
                want_w, want_h = want_h, want_w
            drafted = img.draft("RGB", (max(1, int(want_w)), max(1, int(want_h))))
            if drafted is not None:
                scale = max(1, round(width / drafted[1][2]))
        img.load()
        if orientation != 1:
            # The same transposes as ImageOps.exif_transpose, applied after any draft
            # scaling (libjpeg scales the stored pixels, so the draft size above was asked
            # in stored orientation). Never touches the caller's image: transpose copies.
            img = img.transpose(_UPRIGHT[orientation])
        return _Decoded(_to_rgb(img), full_size, scale, orientation)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(
            f"Cannot decode image {_label(item)}: {_reason(exc, item)}", _path_of(item)
        ) from exc


class Picture:
    """A photo file decoded once and shared by everything that needs its pixels in one
    indexing pass (the analysers of :mod:`photofind.library.analysers`).

    ``side`` is the largest shortest side any of them asked for: a JPEG is decoded at the
    most reduced libjpeg scale that keeps both sides at least that large (other formats in
    full). The decode happens on the first :meth:`decoded`, on the thread that asks; its
    result (or its :class:`ImageError`) is kept for the next asker. A ``Picture`` is a
    path-like object: code that takes a path takes it (and reads the file itself).
    """

    __slots__ = ("path", "side", "max_pixels", "_decoded", "_error")

    def __init__(
        self, path: str | os.PathLike, *, side: int, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ):
        self.path = os.fspath(path)
        self.side = int(side)
        self.max_pixels = max_pixels
        self._decoded: _Decoded | None = None
        self._error: ImageError | None = None

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<Picture {self.path!r} side={self.side}>"

    def decoded(self) -> _Decoded:
        if self._error is not None:
            raise self._error
        if self._decoded is None:
            try:
                draft = (self.side, self.side) if self.side > 0 else None
                self._decoded = _decode(self.path, self.max_pixels, draft)
            except ImageError as exc:
                self._error = exc
                raise
        return self._decoded

    def image(self) -> Image.Image:
        """The upright "RGB" picture (reduced as ``side`` allows)."""
        return self.decoded().image

    def release(self) -> None:
        """Let the pixels go (what was made from them stays)."""
        self._decoded = None


def open_image(
    item: ImageItem,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open a photo as an upright, 8-bit "RGB" PIL image.

    ``item`` is a path or an already opened PIL image (never modified). EXIF orientation is
    applied; alpha, palette, 16-bit, float, 1-bit, CMYK and YCbCr pictures are converted
    (see :func:`_to_rgb` for the choices); animations give their first frame.

    ``max_pixels`` (None: no limit) is checked against the header before any pixel is
    decoded: :class:`ImageTooLarge`. ``draft_size=(w, h)``, in displayed orientation, lets a
    JPEG decode at 1/2, 1/4 or 1/8 scale as long as the result stays at least that large
    (other formats ignore it).

    Every failure -- missing, unreadable, empty, not an image, truncated, unsupported --
    raises :class:`ImageError` whose message names the file and the reason. A truncated file
    is an error, never grey padding: this relies on Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES``
    keeping its default, False.
    """
    return _decode(item, max_pixels, draft_size).image


# --------------------------------------------------------------------------------------------
# Tensors.


def _normalise(rgb: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 HxWx3 -> float32 [3, H, W]: torchvision ToTensor (/255) then Normalize, with the
    same float32 operations in the same order (divide, subtract, divide)."""
    chw = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
    chw /= np.float32(255)
    chw -= np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    chw /= np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return chw


def _check_image_size(image_size: int) -> int:
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


# Above this many resized pixels (only reachable with absurd aspect ratios such as a 1x50000
# strip), resize just the centre crop instead of the whole image to keep memory bounded.
_MAX_RESIZED_PIXELS = 50_000_000


def preprocess(
    img: Image.Image, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """CLIP's evaluation transform: float32 array [3, S, S].

    Resize the shorter side to S with Pillow's antialiased bicubic filter (what torchvision's
    ``Resize(S, interpolation=BICUBIC)`` does on a PIL image), ``CenterCrop(S)``, scale to
    0..1, normalise. For an RGB input this is bit-for-bit the reference transform. A
    non-RGB image is first converted as :func:`open_image` would.
    """
    size = _check_image_size(image_size)
    rgb = _to_rgb(img)
    width, height = rgb.size
    new_w, new_h = resized_size(width, height, size)
    crop = center_crop_box(new_w, new_h, size)
    if new_w * new_h > _MAX_RESIZED_PIXELS:
        sx, sy = width / new_w, height / new_h
        box = (crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy)
        cropped = rgb.resize((size, size), Image.Resampling.BICUBIC, box=box)
    else:
        if (new_w, new_h) != (width, height):
            rgb = rgb.resize((new_w, new_h), Image.Resampling.BICUBIC)
        cropped = rgb.crop(crop)
    return _normalise(cropped, mean, std)


def draft_side(image_size: int) -> int:
    """The shortest side a picture decoded for the fast path of an encoder of
    ``image_size`` keeps (see :func:`load_and_preprocess`)."""
    return int(np.ceil(DRAFT_MULTIPLE * _check_image_size(image_size)))


def load_and_preprocess(
    item: ImageItem,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    fast: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``item`` and preprocess it for CLIP: float32 [3, S, S].

    ``fast=False`` is exactly ``preprocess(open_image(item))``. ``fast=True`` decodes JPEGs
    at a reduced scale (libjpeg's DCT scaling) that keeps the shortest side at least
    ``DRAFT_MULTIPLE * S``; other formats are decoded in full and box-reduced by Pillow
    (``reducing_gap``) before the bicubic step. The crop is the same region of the photo as
    on the exact path, mapped to the reduced picture, so only the filtering differs.
    """
    size = _check_image_size(image_size)
    if not fast:
        source = item.path if isinstance(item, Picture) else item
        return preprocess(open_image(source, max_pixels=max_pixels), size, mean, std)

    want = draft_side(size)
    if isinstance(item, Picture) and item.side >= want:
        decoded = item.decoded()  # shared with the other analysers of the pass
    else:
        source = item.path if isinstance(item, Picture) else item
        decoded = _decode(source, max_pixels, (want, want))
    rgb, (full_w, full_h), scale = decoded.image, decoded.full_size, decoded.scale
    new_w, new_h = resized_size(full_w, full_h, size)
    left, top, right, bottom = center_crop_box(new_w, new_h, size)
    # The crop in full-resolution pixel coordinates of the upright photo...
    sx, sy = full_w / new_w, full_h / new_h
    box = [left * sx, top * sy, right * sx, bottom * sy]
    if scale > 1:
        # ...and in the reduced picture. libjpeg's last block column/row may be partial; it
        # lies at the stored right/bottom edge, so on an axis that EXIF orientation flipped,
        # the reduced picture starts `pad` full-resolution pixels before the photo does.
        red_w, red_h = rgb.size
        flip_x, flip_y = _FLIPS[decoded.orientation]
        pad_x = red_w * scale - full_w if flip_x else 0
        pad_y = red_h * scale - full_h if flip_y else 0
        box = [
            (box[0] + pad_x) / scale,
            (box[1] + pad_y) / scale,
            (box[2] + pad_x) / scale,
            (box[3] + pad_y) / scale,
        ]
    # Float round-off must not push the box past the picture: Pillow refuses such a box.
    limits = rgb.size * 2
    box = [min(max(0.0, v), limit) for v, limit in zip(box, limits)]
    cropped = rgb.resize(
        (size, size), Image.Resampling.BICUBIC, box=tuple(box), reducing_gap=DRAFT_MULTIPLE
    )
    return _normalise(cropped, mean, std)
