"""Writers of test photos: realistic, odd and broken image files, all generated on the spot.

Every function is deterministic (a seed where randomness is involved) and writes a real file
with Pillow (or, for the oversized PNG, with zlib by hand) so tests exercise the same decoders
the app meets on a user's disk. Other test modules may reuse them.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112

# The transpose that *undoes* each EXIF orientation, i.e. turns an upright picture into the
# pixels a camera would store with that tag (inverse of what ImageOps.exif_transpose applies).
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def photo_like_array(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 picture with the statistics of a photo rather than of a test card.

    Smooth lighting gradients and soft-edged shapes carry the low frequencies, band-limited
    noise at several scales stands in for foliage and fabric, a patch of fine stripes gives
    real high-frequency detail, and a little per-pixel sensor noise keeps JPEG from compressing
    it to nothing. It is built at 1/8 resolution with numpy and upsampled with Pillow, so a
    12-megapixel picture takes well under a couple of seconds.
    """
    rng = np.random.default_rng(seed)
    lw, lh = max(8, width // 8), max(8, height // 8)
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    xx /= lw
    yy /= lh

    # Sky-to-ground style lighting: a vertical gradient tinted differently per channel.
    base = np.empty((lh, lw, 3), np.float32)
    top = rng.uniform(60, 220, 3)
    bottom = rng.uniform(30, 200, 3)
    for c in range(3):
        base[..., c] = top[c] * (1 - yy) + bottom[c] * yy + 25 * np.sin(6.3 * xx + c)

    # Soft ellipses and rectangles: the "objects" in the scene.
    for _ in range(12):
        cx, cy = rng.uniform(0, 1, 2)
        rx, ry = rng.uniform(0.04, 0.25, 2)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
            mask = np.clip(1.5 - d, 0, 1)
        else:
            mask = ((np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)).astype(np.float32)
        base = base * (1 - mask[..., None] * 0.85) + colour * mask[..., None] * 0.85

    low = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    img = np.asarray(low.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    img = img.copy()

    # Band-limited texture at three scales (like leaves, gravel, fabric).
    for factor, amplitude in ((32, 22.0), (8, 14.0), (2, 9.0)):
        tw, th = max(2, width // factor), max(2, height // factor)
        tex = rng.normal(0, amplitude, (th, tw)).astype(np.float32)
        tex_img = Image.fromarray(tex)  # mode "F"
        up = np.asarray(tex_img.resize((width, height), Image.Resampling.BILINEAR))
        img += up[..., None]

    # Fine stripes in one region: detail near the Nyquist limit of a 12 MP sensor.
    x0, x1 = width // 10, width // 10 + width // 4
    y0, y1 = height // 2, height // 2 + height // 4
    sx = np.arange(x0, x1, dtype=np.float32)
    sy = np.arange(y0, y1, dtype=np.float32)
    stripes = 30 * np.sin(sx[None, :] * 1.3 + sy[:, None] * 0.4)
    img[y0:y1, x0:x1] += stripes[..., None]

    # Sensor noise, cheap to draw as small integers.
    img += rng.integers(-6, 7, size=img.shape, dtype=np.int8)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_photo_jpeg(
    path: Path,
    width: int = 4000,
    height: int = 3000,
    seed: int = 0,
    quality: int = 90,
    orientation: int | None = None,
) -> Path:
    """A photo-like JPEG (12 megapixels by default). With ``orientation`` the picture is stored
    the way a camera held sideways stores it, so that after EXIF rotation it looks exactly like
    the upright picture of the same seed."""
    upright = Image.fromarray(photo_like_array(width, height, seed))
    write_exif_rotated(path, upright, orientation or 1, quality=quality)
    return path


def write_exif_rotated(path: Path, upright: Image.Image, orientation: int, quality: int = 95):
    """Store ``upright`` with an EXIF orientation tag: pixels transposed so that a viewer that
    honours the tag shows ``upright``. Format follows the suffix (JPEG, PNG, WebP, TIFF)."""
    stored = upright
    if orientation != 1:
        stored = upright.transpose(_STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    kwargs = {"quality": quality} if Path(path).suffix.lower() in (".jpg", ".jpeg") else {}
    stored.save(path, exif=exif.tobytes(), **kwargs)
    return path


def marker_image(width: int = 64, height: int = 48) -> Image.Image:
    """A small asymmetric RGB picture (a red block at the top-left, a blue bar at the bottom)
    whose orientation can be told at a glance and by assertion."""
    a = np.full((height, width, 3), 200, np.uint8)
    a[: height // 3, : width // 3] = (255, 0, 0)
    a[-height // 6 :, :] = (0, 0, 255)
    return Image.fromarray(a)


def write_palette_png(path: Path, transparency: bool) -> Path:
    """A palette ("P") PNG; with ``transparency`` index 0 is fully transparent (tRNS chunk)."""
    a = np.zeros((40, 60), np.uint8)
    a[:, 20:40] = 1
    a[:, 40:] = 2
    img = Image.fromarray(a).convert("P")
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (253 * 3))
    if transparency:
        img.save(path, transparency=0)
    else:
        img.save(path)
    return path


def write_alpha_png(path: Path, mode: str) -> Path:
    """An "RGBA" or "LA" PNG: left third opaque, middle half-transparent, right third fully
    transparent with a non-black colour hidden under the transparency."""
    a = np.zeros((30, 90, 4), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = 200, 120, 40
    a[:, :30, 3] = 255
    a[:, 30:60, 3] = 128
    a[:, 60:, 3] = 0
    img = Image.fromarray(a)
    if mode == "LA":
        img = img.convert("LA")
    img.save(path)
    return path


def write_cmyk_jpeg(path: Path) -> Path:
    """A CMYK JPEG (as print workflows and some scanners write): pure cyan and pure black."""
    a = np.zeros((32, 48, 4), np.uint8)
    a[:, :24, 0] = 255  # cyan
    a[:, 24:, 3] = 255  # black
    _cmyk(a).save(path, quality=95)
    return path


def _cmyk(a: np.ndarray) -> Image.Image:
    img = Image.new("CMYK", (a.shape[1], a.shape[0]))
    img.frombytes(a.tobytes())
    return img


def write_ycbcr_jpeg(path: Path) -> Path:
    """A JPEG written from a YCbCr image (mid grey: Y=128, Cb=Cr=128)."""
    img = Image.new("YCbCr", (32, 24), (128, 128, 128))
    img.save(path, quality=95)
    return path


def write_grey16_png(path: Path, value: int = 32768, width: int = 40, height: int = 30) -> Path:
    """A 16-bit greyscale PNG filled with ``value`` (0..65535), except a ramp on the last row."""
    a = np.full((height, width), value, np.uint16)
    a[-1] = np.linspace(0, 65535, width).astype(np.uint16)
    Image.fromarray(a).save(path)
    return path


def write_1bit_png(path: Path) -> Path:
    """A 1-bit ("1") PNG: left half black, right half white."""
    img = Image.new("1", (40, 20), 0)
    img.paste(1, (20, 0, 40, 20))
    img.save(path)
    return path


def write_float_tiff(path: Path) -> Path:
    """A 32-bit float ("F") TIFF with values 0..1 (a horizontal ramp)."""
    a = np.tile(np.linspace(0, 1, 50, dtype=np.float32), (20, 1))
    Image.fromarray(a).save(path)
    return path


def write_grey_jpeg(path: Path) -> Path:
    a = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    Image.fromarray(a).save(path, quality=95)
    return path


def write_rgb_tiff(path: Path, compression: str | None = "tiff_lzw") -> Path:
    img = marker_image()
    img.save(path, compression=compression)
    return path


ANIMATION_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def write_animated(path: Path) -> Path:
    """A three-frame animation (red, green, blue) in the format the suffix names: GIF, PNG
    (APNG) or WebP. The first frame is red."""
    frames = [Image.new("RGB", (32, 24), c) for c in ANIMATION_COLOURS]
    kwargs = {"lossless": True} if Path(path).suffix.lower() == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **kwargs)
    return path


def write_mpo(path: Path) -> Path:
    """A two-picture MPO (the JPEG variant many phones write): first picture is the marker."""
    first = marker_image()
    second = Image.new("RGB", first.size, (0, 255, 0))
    first.save(path, format="MPO", save_all=True, append_images=[second], quality=95)
    return path


def write_truncated_jpeg(path: Path, keep: float = 0.5) -> Path:
    """A real JPEG cut off after ``keep`` of its bytes, as a failed copy leaves it."""
    tmp = Path(path).with_suffix(".full.jpg")
    Image.fromarray(photo_like_array(320, 240, seed=3)).save(tmp, quality=90)
    data = tmp.read_bytes()
    tmp.unlink()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return path


def write_zero_byte(path: Path) -> Path:
    Path(path).write_bytes(b"")
    return path


def write_text_as_jpeg(path: Path) -> Path:
    Path(path).write_text("this is a shopping list, not a photo\neggs\nmilk\n")
    return path


def write_huge_png(path: Path, width: int = 20_000, height: int = 10_000) -> Path:
    """A valid 1-bit greyscale PNG of width x height pixels (200 megapixels by default),
    built by hand with streaming zlib: a few tens of kilobytes on disk, written in well under
    a second, never holding the pixels in memory. It exists to trip the decompression-bomb
    guard, which must refuse it from the header alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter type 0 + packed 1-bit pixels
    compressor = zlib.compressobj(9)
    rows_per_piece = 256
    piece = row * rows_per_piece
    parts = []
    full, rest = divmod(height, rows_per_piece)
    for _ in range(full):
        parts.append(compressor.compress(piece))
    parts.append(compressor.compress(row * rest))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", ihdr))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))
    return path
