"""Opening still pictures with Pillow and its plugins: which formats, and how.

Pillow reads JPEG, PNG, GIF, WebP, BMP, TIFF, PSD and (Pillow 11.2+) AVIF itself; the HEIF
plugin of pillow-heif (libheif) adds HEIC/HEIF, and pillow-jxl-plugin (libjxl, through the
jpegxl-rs bindings compiled into its wheel) adds JPEG XL. Both register on import of
this module, once per process.

- HEIC/HEIF: libheif decodes the *primary* image of a file (a burst or a set of
  exposures in one file is indexed by its primary), applies the irot/imir transforms
  (pillow-heif then sets the EXIF orientation it hands on to 1, so nothing turns twice),
  and maps 10- and 12-bit images to 8 bits (libheif's rounding shift).
- Multi-page TIFF: the first page; PSD: the flattened composite Photoshop stores;
  animated GIF/WebP/APNG: the first frame here, several in :mod:`photofind.formats.frames`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pillow_heif
import pillow_jxl  # noqa: F401 - registers the JPEG XL plugin with Pillow
from PIL import Image, features

from photofind.formats.files import open_regular_file

# Our own guard (the max_pixels check of photofind.formats.decode) replaces Pillow's: Pillow
# warns above ~89 megapixels and raises above ~179, with its own wording and without the
# file name, and its warning turns into an error under warnings-as-errors. The setting is
# process-wide; every decode in photofind goes through photofind.formats.decode, which
# always applies the configurable limit first.
Image.MAX_IMAGE_PIXELS = None

pillow_heif.register_heif_opener()
# One libheif thread per picture: the indexer's decode pool and the thumbnail pool already
# decode one file per core, and on 2 cores 4 threads a picture (libheif's default) were
# slower than 1 (a 3 MP HEIC at 2.3 MB: 1.2 s against 0.9 s).
pillow_heif.options.DECODE_THREADS = 1
if not features.check("avif"):  # pragma: no cover - Pillow < 11.2, or built without libavif
    # pillow-heif's AVIF decoder (libheif + dav1d/aom) where Pillow has none of its own.
    with contextlib.suppress(AttributeError):
        pillow_heif.register_avif_opener()

#: The only Pillow formats photofind opens a user's file with: those of the file names the
#: scanner indexes (MPO is a JPEG with extra frames). Pillow otherwise picks the format by
#: content, whatever the name, and some of its formats run external programs: an EPS file
#: named photo.jpg made it start Ghostscript, which a PostScript ``{} loop`` kept busy
#: forever. Never add EPS (or any format whose plugin shells out) here.
PHOTO_FORMATS = (
    "JPEG",
    "MPO",
    "PNG",
    "GIF",
    "WEBP",
    "BMP",
    "TIFF",
    "AVIF",
    "HEIF",
    "JXL",
    "PSD",
)


def photo_formats() -> tuple[str, ...]:
    """PHOTO_FORMATS that this Pillow can open: ``Image.open`` fails on a name it does not
    know (a plugin missing). Asked each time, since a plugin may register later."""
    if any(name not in Image.OPEN for name in PHOTO_FORMATS):
        Image.init()
    return tuple(name for name in PHOTO_FORMATS if name in Image.OPEN)


@contextlib.contextmanager
def open_photo(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The lazily opened Pillow image of the photo at ``path`` (header read, no pixels),
    closed with its file afterwards. Regular files only, and only in
    :data:`PHOTO_FORMATS`: anything else (a RAW file too: see :mod:`photofind.formats.raw`)
    raises ``UnidentifiedImageError``."""
    with open_regular_file(path) as fp, Image.open(fp, formats=photo_formats()) as img:
        yield img
