"""Videos: a few upright frames sampled at keyframes and scene changes, with their times.

:func:`sample_video` reads a video file with PyAV (FFmpeg) and returns a :class:`VideoSample`:
at most :data:`PER_FILE` frames, at most :data:`PER_MINUTE` of them in any minute of the
video, each decoded straight to the size the analysers asked for (its shortest side
``side``), turned upright by the stream's display matrix, with its time in milliseconds
from the frame's own presentation timestamp (so a variable-frame-rate phone video gets the
times it shows, not frame number / nominal rate).

Why these numbers:

- :data:`PER_MINUTE` = 12, one frame per five seconds on average: the shots of home videos
  last seconds, and a frame per shot is what a search needs to find the moment; a sample
  every :data:`COVER_MS` also covers a long static shot that has no cut.
- :data:`PER_FILE` = 60: an hour-long video costs the catalog and the vector index as much as
  60 photos (60 vectors, about 60 encoder runs: a few seconds of CLIP on two cores), so a
  library with a few long recordings does not drown its photos in frames. A longer video's
  60 frames are spread over its length.
- :data:`MIN_GAP_MS` = 1 s: frames closer than that show the same moment.

Where the frames come from: only keyframes are decoded (the decoder skips every other
frame), so sampling costs one intra-frame decode per probe whatever the codec. Encoders put
keyframes at cuts (x264, x265 and libvpx detect scene changes) and every GOP (0.5-2 s on
phones), so a scene change is seen at most a GOP late. A keyframe is taken when it differs
from the last taken frame by more than :data:`SCENE_CHANGE` (a scene change), or when
:data:`COVER_MS` have passed since it.

Memory stays flat whatever the length, because nothing is decoded whole: a video of up to
:data:`SEQUENTIAL_MAX_S` is read once, keyframe by keyframe, keeping a 16x16 signature of
each; a longer one (a 3-hour recording) is probed at :data:`MAX_PROBES` points by seeking to
the keyframe before each, so the time is bounded too (measured: a 3-hour video sampled in
the same peak memory as a 3-minute one). The frames the choice will take are kept during
that pass at the smallest size an analyser asked for (:class:`Video`'s ``keep_side``, at
most :data:`KEEP_BYTES`); any other size, or a frame past that budget, is decoded again by
a seek to its keyframe, one frame at a time.

PyAV releases the GIL while FFmpeg demuxes, decodes and scales, so the indexer's decode
threads sample several videos at once. Each decode runs ``threads`` FFmpeg threads
(default 1: the indexer already runs one decode per core).

Every failure is a :class:`~photofind.errors.ImageError` naming the file and the reason:
empty or truncated file, no video stream (an audio file under a video name), a stream no
frame can be decoded from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image

from photofind.errors import ImageError

#: most frames sampled from one file
PER_FILE = 60
#: most frames sampled from any one minute of a video (minute 0 is 0-60 s, and so on)
PER_MINUTE = 12
#: two sampled frames are at least this far apart
MIN_GAP_MS = 1000
#: a frame is sampled when this long has passed since the last one, even without a cut
COVER_MS = 60_000 // PER_MINUTE
#: mean absolute difference (0..1) of two frames' 16x16 colour signatures above which the
#: later one shows something new. Measured: keyframes of a static shot differ by under
#: 0.005 (compression noise); one object changing in a small scene (the tests' red circle
#: turning into a blue square) by 0.028; consecutive keyframes of the Hamilton clip (people
#: moving, a cut) by 0.02-0.09. The caps, not this threshold, bound how many are taken.
SCENE_CHANGE = 0.015
#: videos up to this long are read keyframe by keyframe; longer ones are probed by seeking
SEQUENTIAL_MAX_S = 600
#: probes of a longer video (seeks to the keyframe before each of as many evenly spread points)
MAX_PROBES = 4 * PER_FILE
_SIGNATURE = 16


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: its time in ms from the start, the upright RGB picture, and the
    upright size of the video's frames at full resolution (what boxes are measured in)."""

    ms: int
    image: Image.Image
    full_size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class VideoSample:
    """What :func:`sample_video` read from a file."""

    frames: tuple[VideoFrame, ...]
    duration_ms: int
    #: the upright size of the sampled frames (width, height)
    size: tuple[int, int]
    #: ISO 8601 local date and time of the container's creation_time, or None
    created: str | None
    codec: str


@dataclass
class _Probe:
    ms: int
    pts: int
    signature: np.ndarray
    #: the frame at the kept side, decoded during the scan (None: decode it again)
    image: Image.Image | None = None
    full_size: tuple[int, int] = (0, 0)


#: most bytes of frames the scan keeps for :meth:`Video.frames` (about 100 frames of a
#: 224-px encoder's 597x336): past it, a frame is decoded a second time
KEEP_BYTES = 64 * 2**20


class _Keeper:
    """Keeps, during the scan, the picture of each probe :func:`choose` will take (its
    greedy rule, applied as the probes come), at ``side``, within :data:`KEEP_BYTES`, so
    the frames need not be decoded twice (a keyframe of a 4K HEVC video: 0.45 s)."""

    def __init__(self, side: int):
        self.side = side
        self.last: _Probe | None = None
        self.bytes = 0

    def offer(self, probe: _Probe, frame, stream) -> None:
        if self.side <= 0 or not _takes(self.last, probe)[0]:
            return
        self.last = probe
        if self.bytes < KEEP_BYTES:
            rotation = _rotation(frame, stream)
            probe.image = _picture(frame, stream, self.side, rotation)
            probe.full_size = _full_size(frame, stream, rotation)
            self.bytes += probe.image.width * probe.image.height * 3


def _open(path: str):
    import av  # FFmpeg's libraries load on the first video, not with the app

    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise ImageError(f"Cannot read video {path}: {exc.strerror or exc}", path) from exc
    if size == 0:
        raise ImageError(f"Cannot read video {path}: the file is empty (0 bytes)", path)
    try:
        container = av.open(path, metadata_errors="replace")
    except av.FFmpegError as exc:
        raise ImageError(f"Cannot read video {path}: {_reason(exc)}", path) from exc
    if not container.streams.video:
        what = "audio only" if container.streams.audio else "no video stream"
        container.close()
        raise ImageError(f"Cannot read video {path}: it holds {what}, no pictures", path)
    return container


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    if "Invalid data" in text:
        return "not a video, or truncated or damaged (FFmpeg: invalid data)"
    return text


def _duration_ms(container, stream) -> int:
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * 1000)
    if container.duration is not None:  # in AV_TIME_BASE (microseconds)
        return int(container.duration // 1000)
    return 0


def _start_pts(stream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _ms(frame, stream) -> int | None:
    if frame.pts is None:
        return None
    return max(0, int((frame.pts - _start_pts(stream)) * stream.time_base * 1000))


def _signature(frame) -> np.ndarray:
    small = frame.reformat(width=_SIGNATURE, height=_SIGNATURE, format="rgb24")
    return small.to_ndarray().astype(np.float32) / 255.0


def _keyframes_in_order(container, stream) -> Iterator:
    """Every keyframe of the stream, read once from the start (non-key frames skipped)."""
    stream.codec_context.skip_frame = "NONKEY"
    for packet in container.demux(stream):
        if packet.size and not packet.is_keyframe:
            continue  # never sent to the decoder
        yield from packet.decode()


def _keyframe_at(container, stream, pts: int):
    """The keyframe at or before ``pts`` (the first decodable frame after a seek there),
    or None. Only that packet is decoded: a decoder that holds its output back for
    reordering (HEVC, H.264 with B-frames) is drained rather than fed the next keyframe,
    which would cost a second full decode (measured: 4K HEVC, 0.9 s a frame instead of
    0.45). The seek after it resets the decoder."""
    codec = stream.codec_context
    codec.skip_frame = "NONKEY"
    container.seek(pts, backward=True, any_frame=False, stream=stream)
    for packet in container.demux(stream):
        if packet.size and not packet.is_keyframe:
            continue
        frames = packet.decode()
        if not frames and packet.size:
            frames = codec.decode(None)  # drain: the frame held back
        if frames:
            return frames[0]
        if not packet.size:
            return None
    return None


def _probes(container, stream, duration_ms: int, keep_side: int) -> list[_Probe]:
    sequential = duration_ms <= SEQUENTIAL_MAX_S * 1000
    if sequential:
        probes = _timed(_keyframes_in_order(container, stream), stream, _Keeper(keep_side))
        if probes:
            return probes
        # No packet flagged as a keyframe (some MPEG-TS muxers): the decoder tells them.
        container.seek(_start_pts(stream), backward=True, any_frame=False, stream=stream)
    frames = _seek_probes(container, stream, max(duration_ms, 1000))
    return _timed(frames, stream, _Keeper(keep_side))


def _timed(frames, stream, keeper: _Keeper) -> list[_Probe]:
    """Each frame's time and signature, in time order (a frame not later than the one
    before, which a seek to a keyframe already seen gives, is dropped)."""
    probes: list[_Probe] = []
    for frame in frames:
        ms = _ms(frame, stream)
        if ms is None or (probes and ms <= probes[-1].ms):
            continue
        probes.append(_Probe(ms, frame.pts, _signature(frame)))
        keeper.offer(probes[-1], frame, stream)
    return probes


def _seek_probes(container, stream, duration_ms: int) -> Iterator:
    step_ms = duration_ms / MAX_PROBES
    start = _start_pts(stream)
    for n in range(MAX_PROBES):
        target = start + int((n * step_ms / 1000) / stream.time_base)
        frame = _keyframe_at(container, stream, target)
        if frame is not None:
            yield frame


def _takes(last: _Probe | None, probe: _Probe) -> tuple[bool, float]:
    """Whether the greedy pass of :func:`choose` takes ``probe`` after ``last``, and how
    much it changed."""
    if last is None:
        return True, math.inf
    gap = probe.ms - last.ms
    if gap < MIN_GAP_MS:
        return False, 0.0
    change = float(np.abs(probe.signature - last.signature).mean())
    return change > SCENE_CHANGE or gap >= COVER_MS, change


def choose(probes: list[_Probe]) -> list[_Probe]:
    """The probes sampled, in time order.

    The first; then each at least :data:`MIN_GAP_MS` after the last taken that shows
    something new (differs from it by more than :data:`SCENE_CHANGE`) or comes
    :data:`COVER_MS` after it. Of a minute with more than :data:`PER_MINUTE` such, those
    that changed the most (the file's first frame always stays); of a file with more than
    :data:`PER_FILE`, as many spread evenly over its length.
    """
    taken: list[tuple[float, _Probe]] = []
    for probe in probes:
        takes, change = _takes(taken[-1][1] if taken else None, probe)
        if takes:
            taken.append((change, probe))
    by_minute: dict[int, list[tuple[float, _Probe]]] = {}
    for change, probe in taken:
        by_minute.setdefault(probe.ms // 60_000, []).append((change, probe))
    kept: list[_Probe] = []
    for minute in sorted(by_minute):
        best = sorted(by_minute[minute], key=lambda cp: -cp[0])[:PER_MINUTE]
        kept.extend(sorted((p for _, p in best), key=lambda p: p.ms))
    if len(kept) > PER_FILE:
        keep = np.linspace(0, len(kept) - 1, PER_FILE).round().astype(int)
        kept = [kept[i] for i in sorted(set(keep.tolist()))]
    return kept


def _rotation(frame, stream) -> int:
    """Degrees counter-clockwise the picture turns to be upright: the frame's display
    matrix (FFmpeg's side data), else the stream's old ``rotate`` tag (clockwise)."""
    angle = getattr(frame, "rotation", 0) or 0
    if not angle:
        try:
            angle = -int(stream.metadata.get("rotate", "0"))
        except ValueError:
            angle = 0
    return int(round(angle / 90.0)) * 90 % 360


def _target_size(width: int, height: int, side: int, sar: float) -> tuple[int, int]:
    """Stored size scaled so the displayed shortest side is ``side`` (never enlarged), the
    sample aspect ratio of anamorphic video (DV, HDV 1440x1080) applied."""
    shown_w = width * sar
    if side <= 0 or min(shown_w, height) <= side:
        return max(1, round(shown_w)), height
    scale = side / min(shown_w, height)
    return max(1, round(shown_w * scale)), max(1, round(height * scale))


def _full_size(frame, stream, rotation: int) -> tuple[int, int]:
    sar = float(stream.sample_aspect_ratio) if stream.sample_aspect_ratio else 1.0
    width, height = max(1, round(frame.width * sar)), frame.height
    return (height, width) if rotation in (90, 270) else (width, height)


def _picture(frame, stream, side: int, rotation: int) -> Image.Image:
    sar = stream.sample_aspect_ratio
    sar = float(sar) if sar else 1.0
    width, height = _target_size(frame.width, frame.height, side, sar)
    image = frame.to_image(width=width, height=height, interpolation="AREA")
    if rotation:
        # PIL turns counter-clockwise, as the display matrix is read.
        image = image.rotate(rotation, expand=True)
    return image


def _created(container) -> str | None:
    value = container.metadata.get("creation_time")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.year < 1971:  # cameras without a clock write 1970 or 1904
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class _Scan:
    chosen: tuple[_Probe, ...]
    duration_ms: int
    created: str | None
    codec: str


class Video:
    """A video file read once for its sampled frames, shared by every analyser of an
    indexing pass (the counterpart of :class:`photofind.clip.preprocess.Picture`).

    :meth:`scan` chooses the frames (a pass over the keyframes' signatures, cached with its
    error); :meth:`frames` gives them at an analyser's size one at a time, so each analyser
    gets the size it needs. Those the scan kept at ``keep_side`` (within
    :data:`KEEP_BYTES`) are not decoded again for that size; the others are, one at a
    time, so no more than one full frame is held. Path-like."""

    __slots__ = ("path", "threads", "keep_side", "_scan", "_error")

    def __init__(self, path: str | os.PathLike, *, threads: int = 1, keep_side: int = 0):
        self.path = os.fspath(path)
        self.threads = threads
        self.keep_side = keep_side
        self._scan: _Scan | None = None
        self._error: ImageError | None = None

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<Video {self.path!r}>"

    def _open_stream(self):
        container = _open(self.path)
        stream = container.streams.video[0]
        stream.codec_context.thread_count = max(1, self.threads)
        stream.thread_type = "AUTO" if self.threads > 1 else "SLICE"
        return container, stream

    def scan(self) -> _Scan:
        if self._error is not None:
            raise self._error
        if self._scan is None:
            try:
                self._scan = self._read_scan()
            except ImageError as exc:
                self._error = exc
                raise
        return self._scan

    def _read_scan(self) -> _Scan:
        import av

        container, stream = self._open_stream()
        try:
            duration = _duration_ms(container, stream)
            try:
                chosen = choose(_probes(container, stream, duration, self.keep_side))
            except av.FFmpegError as exc:
                raise ImageError(f"Cannot decode video {self.path}: {_reason(exc)}") from exc
            if not chosen:
                raise ImageError(
                    f"Cannot decode video {self.path}: no frame could be decoded "
                    "(truncated or damaged?)",
                    self.path,
                )
            duration = max(duration, chosen[-1].ms)
            return _Scan(tuple(chosen), duration, _created(container), stream.codec_context.name)
        finally:
            container.close()

    @property
    def duration_ms(self) -> int:
        return self.scan().duration_ms

    @property
    def created(self) -> str | None:
        return self.scan().created

    def frames(self, side: int) -> Iterator[VideoFrame]:
        """The sampled frames, upright, their shortest side ``side`` (never enlarged)."""
        import av

        chosen = self.scan().chosen
        container, stream = None, None
        try:
            for probe in chosen:
                if probe.image is not None and side == self.keep_side:
                    yield VideoFrame(probe.ms, probe.image, probe.full_size)
                    continue
                if container is None:
                    container, stream = self._open_stream()
                try:
                    frame = _keyframe_at(container, stream, probe.pts)
                except av.FFmpegError as exc:
                    raise ImageError(f"Cannot decode video {self.path}: {_reason(exc)}") from exc
                if frame is not None:
                    rotation = _rotation(frame, stream)
                    image = _picture(frame, stream, side, rotation)
                    yield VideoFrame(probe.ms, image, _full_size(frame, stream, rotation))
        finally:
            if container is not None:
                container.close()

    def release(self) -> None:
        """Let the frames kept by the scan go (what was made from them stays)."""
        if self._scan is not None:
            for probe in self._scan.chosen:
                probe.image = None


def sample_video(path: str | os.PathLike, *, side: int, threads: int = 1) -> VideoSample:
    """Sample ``path`` (see the module's docstring); :class:`ImageError` when it cannot."""
    video = Video(path, threads=threads, keep_side=side)
    frames = tuple(video.frames(side))
    video.release()
    if not frames:
        raise ImageError(f"Cannot decode video {video.path}: no frame could be decoded", path)
    scan = video.scan()
    first = frames[0].image
    return VideoSample(frames, scan.duration_ms, first.size, scan.created, scan.codec)


def frame_at(path: str | os.PathLike, ms: int, *, side: int) -> Image.Image:
    """The upright frame nearest before ``ms`` (the keyframe there, then decoded forward to
    the time): what a thumbnail of a search hit on a video shows."""
    path = os.fspath(path)
    container = _open(path)
    try:
        import av

        stream = container.streams.video[0]
        target = _start_pts(stream) + int(ms / 1000 / stream.time_base)
        try:
            container.seek(target, backward=True, any_frame=False, stream=stream)
            best = None
            for frame in container.decode(stream):
                if best is not None and frame.pts is not None and frame.pts > target:
                    break
                best = frame
                if frame.pts is not None and frame.pts >= target:
                    break
        except av.FFmpegError as exc:
            raise ImageError(f"Cannot decode video {path}: {_reason(exc)}", path) from exc
        if best is None:
            raise ImageError(f"Cannot decode video {path}: no frame at {ms / 1000:.1f} s", path)
        return _picture(best, stream, side, _rotation(best, stream))
    finally:
        container.close()


def video_size(path: str | os.PathLike) -> tuple[tuple[int, int], int]:
    """``((width, height) upright at full resolution, duration in ms)`` of a video, from
    its header and first frame: what a preview lists."""
    path = os.fspath(path)
    container = _open(path)
    try:
        import av

        stream = container.streams.video[0]
        try:
            frame = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise ImageError(f"Cannot decode video {path}: {_reason(exc)}", path) from exc
        if frame is None:
            raise ImageError(f"Cannot decode video {path}: no frame could be decoded", path)
        size = _full_size(frame, stream, _rotation(frame, stream))
        return size, _duration_ms(container, stream)
    finally:
        container.close()


def duration_text(ms: int | None) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a duration, for badges and lists."""
    if ms is None:
        return ""
    seconds = max(0, int(math.floor(ms / 1000)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
