"""Still pictures of every kind photofind reads, written by real encoders.

HEIC by libheif's x265 encoder (pillow-heif), AVIF by Pillow's libavif plugin, JPEG XL by
libjxl (pillow-jxl-plugin), TIFF, GIF, WebP, APNG and JPEG by Pillow, and DNG by PiDNG
(``pidng`` on PyPI: the sensor data as a Bayer mosaic, LibRaw reads it back), and PSD by
psd-tools. Profiles for
Adobe RGB and Display P3 come from their published primaries
(:func:`photofind.formats.icc.rgb_profile`) and are read by LittleCMS.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

import photofind.formats.stills  # noqa: F401 - registers the HEIF and JPEG XL encoders
from photofind.formats.icc import PRIMARIES, adapted_to_d50, rgb_to_xyz_matrix

_EXIF_IFD = 0x8769


def exif_bytes(*, orientation: int | None = None, taken: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if taken is not None:
        exif[0x0132] = taken
        exif.get_ifd(_EXIF_IFD)[0x9003] = taken
    return exif.tobytes()


def write_heic(
    path: Path, image: Image.Image, *, orientation=None, taken=None, quality=92, thumbnails=()
) -> Path:
    """An 8-bit HEIC (x265). pillow-heif turns an EXIF orientation into the file's irot /
    imir transforms, as an iPhone writes them; ``thumbnails``: the longest sides of the
    small copies stored beside the image (an iPhone stores one of 320)."""
    exif = exif_bytes(orientation=orientation, taken=taken)
    image.save(path, format="HEIF", quality=quality, exif=exif, thumbnails=list(thumbnails))
    return path


def write_heic_10bit(path: Path, image: Image.Image) -> Path:
    """A 10-bit HEIC made from the 8-bit picture scaled to 16 bits (x265 Main 10)."""
    a = np.asarray(image.convert("RGB"), dtype=np.uint16) * 257
    heif = pillow_heif.from_bytes(mode="RGB;16", size=image.size, data=a.tobytes())
    heif.save(path, quality=92)
    return path


def write_heic_burst(path: Path, images: list[Image.Image], primary: int) -> Path:
    """One HEIC holding several images, image ``primary`` marked the primary one."""
    heif = pillow_heif.from_pillow(images[0])
    for image in images[1:]:
        heif.add_from_pillow(image)
    for index, item in enumerate(heif):
        item.info["primary"] = index == primary
    heif.save(path, quality=90)
    return path


def write_avif(path: Path, image: Image.Image, *, taken=None) -> Path:
    image.save(path, format="AVIF", quality=90, exif=exif_bytes(taken=taken))
    return path


def write_jxl(path: Path, image: Image.Image) -> Path:
    import pillow_jxl  # noqa: F401 - registers the JPEG XL encoder

    image.save(path, format="JXL", quality=95)
    return path


def write_profiled_jpeg(path: Path, image: Image.Image, space: str) -> Path:
    """``image`` (sRGB) re-expressed in ``space`` ("display-p3", "adobe-rgb"), saved with
    that space's ICC profile: a viewer that honours the profile shows the same colours."""
    from photofind.formats.icc import rgb_profile

    gamma = 563 / 256 if space == "adobe-rgb" else None
    linear = _linear(np.asarray(image.convert("RGB"), np.float64) / 255.0)
    to_xyz = adapted_to_d50(rgb_to_xyz_matrix(PRIMARIES["srgb"]))
    from_xyz = np.linalg.inv(adapted_to_d50(rgb_to_xyz_matrix(PRIMARIES[space])))
    other = np.clip(linear @ (from_xyz @ to_xyz).T, 0.0, 1.0)
    encoded = other ** (1 / gamma) if gamma else _unlinear(other)
    out = Image.fromarray(np.rint(encoded * 255).astype(np.uint8))
    out.save(path, quality=95, icc_profile=rgb_profile(space, gamma=gamma))
    return path


def _linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _unlinear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def write_psd(path: Path, image: Image.Image) -> Path:
    """A Photoshop file with ``image`` as its flattened composite, written by psd-tools."""
    psd_tools = pytest.importorskip(
        "psd_tools", reason="psd-tools (pip install psd-tools) writes the PSD test files"
    )
    psd_tools.PSDImage.frompil(image.convert("RGB")).save(path)
    return path


def write_multipage_tiff(path: Path, pages: list[Image.Image]) -> Path:
    pages[0].save(path, save_all=True, append_images=pages[1:], compression="tiff_lzw")
    return path


def write_animation(path: Path, frames: list[Image.Image], durations_ms: list[int]) -> Path:
    """An animated GIF, WebP or APNG (by the suffix: .gif, .webp, .png/.apng)."""
    fmt = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG", ".apng": "PNG"}[path.suffix.lower()]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(
        path,
        format=fmt,
        save_all=True,
        append_images=frames[1:],
        duration=durations_ms,
        loop=0,
        **extra,
    )
    return path


# -------------------------------------------------------------------------------- DNG


def _pidng():
    return pytest.importorskip(
        "pidng.core", reason="PiDNG (pip install pidng) writes the DNG test files"
    )


def write_dng(
    path: Path,
    image: Image.Image,
    *,
    orientation: int = 1,
    taken: str | None = None,
    preview: Image.Image | None = None,
) -> Path:
    """A 12-bit RGGB Bayer DNG of ``image`` (its linear-light colours sampled through the
    colour filter array), written by PiDNG; with ``preview``, a JPEG preview of it in a
    second IFD (NewSubfileType 1), where cameras keep theirs."""
    core = _pidng()
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    tag = core.Tag
    w, h = image.size
    w, h = w - w % 2, h - h % 2
    linear = _linear(np.asarray(image.convert("RGB"), np.float64)[:h, :w] / 255.0)
    cfa = np.empty((h, w), np.uint16)
    scale = 4095.0
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0] * scale
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1] * scale
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1] * scale
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2] * scale
    # The camera's RGB is linear sRGB: its ColorMatrix1 (XYZ -> camera) is sRGB's inverse.
    xyz_to_cam = np.linalg.inv(rgb_to_xyz_matrix(PRIMARIES["srgb"]))
    t = core.DNGTags()
    t.set(tag.ImageWidth, w)
    t.set(tag.ImageLength, h)
    t.set(tag.TileWidth, w)
    t.set(tag.TileLength, h)
    t.set(tag.Orientation, orientation)
    t.set(tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    t.set(tag.SamplesPerPixel, 1)
    t.set(tag.BitsPerSample, 12)
    t.set(tag.CFARepeatPatternDim, [2, 2])
    t.set(tag.CFAPattern, CFAPattern.RGGB)
    t.set(tag.BlackLevel, 0)
    t.set(tag.WhiteLevel, int(scale))
    t.set(tag.ColorMatrix1, [[int(round(v * 10000)), 10000] for v in xyz_to_cam.ravel()])
    t.set(tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    t.set(tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    t.set(tag.BaselineExposure, [[0, 1]])
    t.set(tag.Make, "photofind")
    t.set(tag.Model, "test DNG")
    if taken is not None:
        t.set(tag.DateTime, taken)
        t.set(tag.DateTimeOriginal, taken)
    t.set(tag.DNGVersion, DNGVersion.V1_4)
    t.set(tag.DNGBackwardVersion, DNGVersion.V1_2)
    writer = core.RAW2DNG()
    writer.options(t, path="", compress=False)
    data = bytearray(writer.convert(cfa, filename=""))
    if preview is not None:
        data = _with_preview(data, preview)
    path.write_bytes(bytes(data))
    return path


def _with_preview(data: bytearray, preview: Image.Image) -> bytearray:
    """``data`` (a one-IFD little-endian TIFF) with a JPEG preview in an IFD chained after
    IFD0, located by the JPEGInterchangeFormat tags as in a camera's RAW."""
    jpeg = io.BytesIO()
    preview.convert("RGB").save(jpeg, "JPEG", quality=90)
    jpeg = jpeg.getvalue()
    data += b"\0" * (-len(data) % 4)
    jpeg_at = len(data)
    data += jpeg + b"\0" * (-len(jpeg) % 4)
    ifd_at = len(data)
    entries = [
        (254, 4, 1, 1),  # NewSubfileType: a reduced-resolution copy
        (256, 4, 1, preview.width),
        (257, 4, 1, preview.height),
        (259, 3, 1, 6),  # Compression: JPEG
        (513, 4, 1, jpeg_at),  # JPEGInterchangeFormat
        (514, 4, 1, len(jpeg)),  # JPEGInterchangeFormatLength
    ]
    data += struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if kind == 4:
            data += struct.pack("<HHII", tag, kind, count, value)
        else:
            data += struct.pack("<HHIHH", tag, kind, count, value, 0)
    data += struct.pack("<I", 0)
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    struct.pack_into("<I", data, first + 2 + 12 * count, ifd_at)
    return data
