"""Decode photos and turn them into CLIP input tensors, with numpy and Pillow only.

Two jobs live here:

* :func:`open_image` turns any still photofind reads (:mod:`photofind.formats`: JPEG to
  HEIC, AVIF, JPEG XL and camera RAW) into an upright 8-bit sRGB picture, and turns every
  way that can fail into :class:`~photofind.errors.ImageError` naming the file.
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

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from photofind.errors import ImageError
from photofind.formats.colour import to_rgb
from photofind.formats.decode import FLIPS, Decoded, decode
from photofind.formats.files import NotARegularFile, open_regular_file
from photofind.formats.stills import PHOTO_FORMATS, open_photo

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

# Names the decoding code had here before it moved to photofind.formats.
_FLIPS = FLIPS
_to_rgb = to_rgb


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
# Decoding (photofind.formats does it; Picture shares one decode between analysers).


def _decode(item: ImageItem, max_pixels: int | None, draft_size: tuple[int, int] | None) -> Decoded:
    """Decode ``item`` upright and in RGB (the work behind :func:`open_image`)."""
    return decode(item, max_pixels, draft_size)


class Picture:
    """A photo file decoded once and shared by everything that needs its pixels in one
    indexing pass (the analysers of :mod:`photofind.library.analysers`).

    ``side`` is the largest shortest side any of them asked for: a JPEG is decoded at the
    most reduced libjpeg scale that keeps both sides at least that large, a HEIC from its
    stored small copy when one is that large (other formats in full). The decode happens on the first :meth:`decoded`, on the thread that asks; its
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
        self._decoded: Decoded | None = None
        self._error: ImageError | None = None

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<Picture {self.path!r} side={self.side}>"

    def decoded(self) -> Decoded:
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
    applied; an embedded colour profile is converted to sRGB; alpha, palette, 16-bit, float,
    1-bit, CMYK and YCbCr pictures are converted (see
    :func:`photofind.formats.colour.to_rgb` for the choices); animations give their first
    frame; a camera RAW its embedded preview or a half-size demosaic.

    ``max_pixels`` (None: no limit) is checked against the header before any pixel is
    decoded: :class:`ImageTooLarge`. ``draft_size=(w, h)``, in displayed orientation, lets a
    JPEG (or a RAW's JPEG preview) decode at 1/2, 1/4 or 1/8 scale as long as the result
    stays at least that large, and a HEIC use its stored small copy of at least that size
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
