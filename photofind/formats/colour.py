"""Any decoded picture -> 8-bit sRGB "RGB": colour profiles, modes and bit depths.

CLIP was trained on sRGB pictures and the thumbnails are shown as sRGB, so a photo that
states another colour space (an Adobe RGB camera JPEG, a Display P3 phone photo, a CMYK
print file) is converted through its ICC profile with LittleCMS (Pillow's ImageCms). A
photo without a profile is taken as sRGB, as browsers do.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading

import numpy as np
from PIL import Image, ImageCms

from photofind.formats.icc import rgb_profile

log = logging.getLogger(__name__)

_ALPHA_MODES = frozenset({"RGBA", "LA", "RGBa", "La", "PA"})
# Modes a profile can convert from, and the LittleCMS mode of the colour part.
_PROFILE_MODES = {"RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK", "L": "L", "LA": "L"}
_SRGB = ImageCms.createProfile("sRGB")
# CICP colour primaries (ITU-T H.273) that libheif reports in a HEIC's nclx box.
_NCLX_PRIMARIES = {9: "bt2020", 12: "display-p3"}

_transforms: dict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = {}
_lock = threading.Lock()
_MAX_TRANSFORMS = 32  # distinct profiles seen in one run: a few cameras and phones


def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The profile -> sRGB transform, made once per profile (LittleCMS takes ~1 ms to build
    one). None for an sRGB profile (nothing to do) or one LittleCMS cannot read."""
    key = (hashlib.sha1(icc, usedforsecurity=False).digest(), mode)
    with _lock:
        if key in _transforms:
            return _transforms[key]
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(source).strip()
        if mode != "CMYK" and description.lower().startswith("srgb"):
            made = None  # sRGB IEC61966-2.1 and its variants: already what we want
        else:
            made = ImageCms.buildTransform(
                source, _SRGB, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
            )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        # A damaged profile costs the colours, never the photo.
        log.debug("ICC profile not usable (%s): shown as sRGB", exc)
        made = None
    with _lock:
        if len(_transforms) >= _MAX_TRANSFORMS:
            _transforms.pop(next(iter(_transforms)))
        _transforms[key] = made
    return made


def _nclx_profile(img: Image.Image) -> bytes | None:
    """An ICC profile for a HEIC/AVIF that states its primaries as nclx code points."""
    nclx = img.info.get("nclx_profile")
    if not isinstance(nclx, dict):
        return None
    name = _NCLX_PRIMARIES.get(nclx.get("color_primaries"))
    return rgb_profile(name) if name else None


def to_srgb(img: Image.Image) -> Image.Image:
    """``img`` converted from its embedded colour profile to sRGB (RGB or RGBA), or
    ``img`` itself when it has none, it is sRGB already, or its mode has no profile."""
    mode = _PROFILE_MODES.get(img.mode)
    if mode is None:
        return img
    icc = img.info.get("icc_profile") or _nclx_profile(img)
    if not icc:
        return img
    transform = _transform(bytes(icc), mode)
    if transform is None:
        return img
    alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
    colour = img.convert(mode) if img.mode != mode else img
    out = ImageCms.applyTransform(colour, transform)
    if alpha is not None:
        out.putalpha(alpha)
    return out


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


def to_rgb(img: Image.Image) -> Image.Image:
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
