"""Writers of test videos, encoded for real by PyAV's FFmpeg (libx264, libx265, libvpx-vp9,
mpeg4), and of broken ones cut from them. Deterministic: the scenes are drawn by
:mod:`photofind.synthetic`, which the bundled tiny model was trained on."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from photofind.synthetic import Scene, SynthObject, render

H264 = "libx264"
HEVC = "libx265"
VP9 = "libvpx-vp9"
MPEG4 = "mpeg4"


def available(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - FFmpeg built without it
        return False
    return True


def h264() -> str:
    """libx264 where this FFmpeg has it, else its own MPEG-4 part 2 encoder."""
    return H264 if available(H264) else MPEG4


def scene(shape: str, colour: str, *, width=160, height=120, background="white") -> np.ndarray:
    """A large ``colour`` ``shape`` in the centre on a plain background, as an RGB array."""
    drawn = Scene(
        (SynthObject(shape, colour, "large", "centre"),),
        "plain",
        background,
        width,
        height,
        "png",
        render_seed=1,
    )
    return np.asarray(render(drawn))


RED_CIRCLE = ("circle", "red")
BLUE_SQUARE = ("square", "blue")
#: three seconds of a red circle, then three of a blue square
CUT_RED_BLUE = ((RED_CIRCLE, 3), (BLUE_SQUARE, 3))


def write_video(
    path: Path,
    segments,
    *,
    codec: str | None = None,
    fps: int = 12,
    size=(160, 120),
    gop: int | None = None,
    rotation: int | None = None,
    times_ms=None,
    audio: bool = False,
) -> Path:
    """Encode ``segments`` — ``(picture array or (shape, colour), seconds)`` — one after the
    other at ``fps``. ``gop``: frames between keyframes (default one second's). ``rotation``:
    a display matrix turning the picture that many degrees counter-clockwise. ``times_ms``:
    the frames' own presentation times (a variable-frame-rate video), one per frame."""
    codec = codec or h264()
    width, height = size
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop or fps
    if times_ms is not None:
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
    if rotation is not None:
        stream.set_display_rotation(rotation)
    if audio:
        _add_silence_stream(container)
    n = 0
    for content, seconds in segments:
        pixels = (
            scene(*content, width=width, height=height) if isinstance(content, tuple) else content
        )
        frame_proto = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        for _ in range(int(round(seconds * fps))):
            frame = frame_proto.reformat(format="yuv420p")
            frame.pts = times_ms[n] if times_ms is not None else n
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def _add_silence_stream(container):
    return container.add_stream("aac", rate=16000)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC stream in an MP4 file: a video's name, no pictures."""
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    samples = int(16000 * seconds)
    tone = (np.sin(np.arange(samples) / 16000 * 2 * np.pi * 440) * 0.2).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = tone[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def truncate(source: Path, target: Path, keep: float) -> Path:
    """The first ``keep`` (0..1) of ``source``'s bytes: a copy that stopped half-way."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target
