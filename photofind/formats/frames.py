"""Several frames of an animated picture (GIF, WebP, APNG), with their times.

An animation is a short video: one vector per sampled frame finds the moment a search
describes, as for a video (DESIGN.md: an animated picture has a few vectors). Frames are
taken evenly over the animation's *time* (frame durations differ: a GIF often holds its
first frame for seconds), at most ``max_frames`` of them. Pillow decodes an animation
frame by frame from the start (each frame is drawn over the last), so every frame up to
the last sampled one is decoded once; memory holds one canvas and the sampled copies.
A still picture (and a HEIC burst, whose other images are not a sequence in time) gives
one frame at time 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from PIL import Image

from photofind.errors import ImageError
from photofind.formats.colour import to_rgb, to_srgb
from photofind.formats.decode import _too_large, decode, label, reason
from photofind.formats.stills import open_photo

#: Frames sampled from one animation: enough to see a short clip's few scenes, few
#: enough that a folder of animated stickers does not cost a video's worth of encoder runs.
MAX_FRAMES = 8
_ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})


class Frame(NamedTuple):
    time_s: float  # when the frame is first shown, from the start of the animation
    image: Image.Image  # upright 8-bit sRGB "RGB"


def _durations(img: Image.Image) -> list[float]:
    """Each frame's duration in seconds (a frame that states none counts 0.1 s: browsers
    show such frames for about that long)."""
    out = []
    for index in range(img.n_frames):
        img.seek(index)
        if img.format == "WEBP":
            img.load()  # Pillow's WebP reader sets a frame's duration as it decodes it
        ms = img.info.get("duration") or 0
        out.append(float(ms) / 1000.0 if ms > 0 else 0.1)
    img.seek(0)
    return out


def _pick(starts: list[float], total: float, max_frames: int) -> list[int]:
    """Frame indexes at evenly spaced times over the animation (each frame once)."""
    if len(starts) <= max_frames:
        return list(range(len(starts)))
    chosen = []
    for k in range(max_frames):
        moment = total * k / max_frames
        index = max(i for i, start in enumerate(starts) if start <= moment)
        if index not in chosen:
            chosen.append(index)
    return chosen


def is_animated(path: str | os.PathLike) -> bool:
    """Whether the file is an animation (more than one frame of GIF, WebP or APNG)."""
    try:
        with open_photo(path) as img:
            return img.format in _ANIMATED_FORMATS and getattr(img, "n_frames", 1) > 1
    except Exception:  # noqa: BLE001 - unreadable: decode() will say why
        return False


def frames(
    path: str | os.PathLike,
    *,
    max_frames: int = MAX_FRAMES,
    max_pixels: int | None = None,
) -> Iterator[Frame]:
    """The sampled frames of the picture at ``path``, in time order (a still: its one
    picture at 0 s, as :func:`photofind.formats.decode.decode` gives it). Raises
    :class:`ImageError` as ``decode`` does."""
    if not is_animated(path):
        yield Frame(0.0, decode(path, max_pixels, None).image)
        return
    try:
        with open_photo(path) as img:
            if max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
                raise _too_large(path, img.size, max_pixels)
            durations = _durations(img)
            starts = [float(sum(durations[:i])) for i in range(len(durations))]
            for index in _pick(starts, sum(durations), max(1, max_frames)):
                img.seek(index)
                # Pillow composes each frame onto the previous ones (GIF disposal, APNG
                # blending): the picture here is what a viewer shows at that moment.
                frame = to_rgb(to_srgb(img.convert("RGBA")))
                yield Frame(starts[index], frame)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"Cannot read image {label(path)}: {reason(exc, path)}", path) from exc
