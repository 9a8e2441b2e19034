"""Several frames of an animated picture (GIF, WebP, APNG), with their times.

An animation is a short video: one vector per sampled frame finds the moment a search
describes, as for a video (DESIGN.md: an animated picture has a few vectors). Frames are
taken evenly over the animation's *time* (frame durations differ: a GIF often holds its
first frame for seconds), at most ``max_frames`` of them. Pillow decodes an animation
frame by frame from the start (each frame is drawn over the last), so every frame up to
the last sampled one is decoded once; memory holds one canvas and the sampled copies.
A still picture (and a HEIC burst, whose other images are not a sequence in time) gives
one frame at time 0.

The indexer reads an animation as it reads a video: :class:`Animation` is a
:class:`photofind.formats.video.Video` whose frames are these, so the analysers embed each
frame and the item's vectors carry their times (a search names the moment, the grid shows
that frame: :func:`frame_at`). A still GIF/PNG/WebP, and a file that says it is animated
but has one frame, stays a photo with one vector.
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
from photofind.formats.video import Video, VideoFrame

#: Frames sampled from one animation: enough to see a short clip's few scenes, few
#: enough that a folder of animated stickers does not cost a video's worth of encoder runs.
MAX_FRAMES = 8
_ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})
#: the names an animation can have: only these files are opened to ask
ANIMATION_EXTENSIONS = frozenset({".gif", ".webp", ".png", ".apng"})


class Frame(NamedTuple):
    time_s: float  # when the frame is first shown, from the start of the animation
    image: Image.Image  # upright 8-bit sRGB "RGB"


def _durations(img: Image.Image) -> list[float]:
    """Each frame's duration in ms (a frame that states none counts 100 ms: browsers show
    such frames for about that long). Milliseconds, as the files state them, so that the
    frames' start times add up exactly."""
    out = []
    for index in range(img.n_frames):
        img.seek(index)
        if img.format == "WEBP":
            img.load()  # Pillow's WebP reader sets a frame's duration as it decodes it
        ms = img.info.get("duration") or 0
        out.append(float(ms) if ms > 0 else 100.0)
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


def _starts(img: Image.Image) -> tuple[list[float], float]:
    """When each frame is first shown (ms), and how long the animation runs (ms)."""
    durations = _durations(img)
    starts, at = [], 0.0
    for d in durations:
        starts.append(at)
        at += d
    return starts, at


def _shown(img: Image.Image, index: int) -> Image.Image:
    img.seek(index)
    # Pillow composes each frame onto the previous ones (GIF disposal, APNG blending): the
    # picture here is what a viewer shows at that moment.
    return to_rgb(to_srgb(img.convert("RGBA")))


def _fit(image: Image.Image, side: int) -> Image.Image:
    """``image`` with its shortest side ``side`` (never enlarged; 0: as it is)."""
    if side <= 0 or min(image.size) <= side:
        return image
    factor = side / min(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _failed(path, exc: Exception) -> ImageError:
    return ImageError(f"Cannot read image {label(path)}: {reason(exc, path)}", path)


def is_animation_name(path: str | os.PathLike) -> bool:
    """Whether the file's name is one an animation can have (GIF, WebP, PNG/APNG)."""
    return os.path.splitext(os.fspath(path))[1].lower() in ANIMATION_EXTENSIONS


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
    sampled = _sampled(path, max_frames, max_pixels)
    next(sampled)  # the running time
    yield from sampled


def _sampled(path, max_frames: int, max_pixels: int | None) -> Iterator:
    """The animation's running time (s), then its sampled :class:`Frame` s."""
    try:
        with open_photo(path) as img:
            if max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
                raise _too_large(path, img.size, max_pixels)
            starts, total = _starts(img)
            yield total / 1000.0
            for index in _pick(starts, total, max(1, max_frames)):
                yield Frame(starts[index] / 1000.0, _shown(img, index))
    except ImageError:
        raise
    except Exception as exc:
        raise _failed(path, exc) from exc


def running_ms(path: str | os.PathLike) -> int:
    """How long the animation at ``path`` runs, in ms (0 for a still)."""
    if not is_animated(path):
        return 0
    try:
        with open_photo(path) as img:
            return round(_starts(img)[1])
    except Exception as exc:
        raise _failed(path, exc) from exc


def frame_at(path: str | os.PathLike, ms: int, *, side: int = 0) -> Image.Image:
    """The frame shown ``ms`` after the start, its shortest side at most ``side``: what a
    search hit's thumbnail shows (a still: its picture)."""
    if not is_animated(path):
        return _fit(decode(path, None, None).image, side)
    try:
        with open_photo(path) as img:
            starts, _ = _starts(img)
            index = max(i for i, start in enumerate(starts) if start <= max(0, ms))
            return _fit(_shown(img, index), side)
    except ImageError:
        raise
    except Exception as exc:
        raise _failed(path, exc) from exc


class Animation(Video):
    """An animated picture read as a short video: the :class:`Video` the analysers take,
    its frames those :func:`frames` samples (at most ``max_frames``), each at the side an
    analyser asks. The frames at ``keep_side`` (CLIP's) are kept until :meth:`release`, so
    they are decoded once; another side decodes the animation again."""

    __slots__ = ("max_frames", "max_pixels", "_kept", "_duration_ms")

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        keep_side: int = 0,
        max_frames: int = MAX_FRAMES,
        max_pixels: int | None = None,
    ):
        super().__init__(path, keep_side=keep_side)
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self._kept: tuple[VideoFrame, ...] | None = None
        self._duration_ms: int | None = None

    def __repr__(self) -> str:
        return f"<Animation {self.path!r}>"

    def _read(self, side: int) -> tuple[VideoFrame, ...]:
        if self._error is not None:
            raise self._error
        try:
            sampled = _sampled(self.path, self.max_frames, self.max_pixels)
            self._duration_ms = round(next(sampled) * 1000)
            return tuple(
                VideoFrame(round(f.time_s * 1000), _fit(f.image, side), f.image.size)
                for f in sampled
            )
        except ImageError as exc:
            self._error = exc
            raise

    def read(self) -> None:
        """Decode the frames at ``keep_side`` now (:class:`ImageError` when it cannot)."""
        if self._kept is None:
            self._kept = self._read(self.keep_side)

    def scan(self):
        raise TypeError("an Animation has no video scan: use frames()")

    def frames(self, side: int) -> Iterator[VideoFrame]:
        if side == self.keep_side:
            self.read()
            yield from self._kept
        else:
            yield from self._read(side)

    @property
    def duration_ms(self) -> int:
        if self._duration_ms is None:
            self.read()
        return self._duration_ms or 0

    @property
    def created(self) -> str | None:
        return None  # a picture's date is its EXIF's (the indexer reads it)

    def release(self) -> None:
        self._kept = None
