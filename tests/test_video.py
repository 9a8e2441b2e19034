"""Sampling videos (photofind.formats.video) on files written by real encoders (PyAV's
FFmpeg: libx264, libx265, libvpx-vp9), and the files a library really holds that are not
fine: empty, truncated, audio only, three hours long, variable frame rate, rotated."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from videos import (
    BLUE_SQUARE,
    CUT_RED_BLUE,
    HEVC,
    RED_CIRCLE,
    VP9,
    available,
    h264,
    truncate,
    write_audio_only,
    write_video,
)

from photofind.errors import ImageError
from photofind.formats import video as V
from photofind.formats.kinds import VIDEO, kind_of
from photofind.formats.video import Video, frame_at, sample_video

REPO = Path(__file__).resolve().parents[1]
HAMILTON = REPO.parent / "shared" / "data" / "faces" / "video" / "short_hamilton_clip.mp4"
CODECS = [
    pytest.param(h264(), ".mp4", id="h264"),
    pytest.param(
        HEVC, ".mkv", id="hevc", marks=pytest.mark.skipif(not available(HEVC), reason="no libx265")
    ),
    pytest.param(
        VP9, ".webm", id="vp9", marks=pytest.mark.skipif(not available(VP9), reason="no libvpx")
    ),
]


def _colour(image) -> str:
    """Which of red or blue the centre of a frame shows most."""
    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    centre = a[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].reshape(-1, 3).mean(axis=0)
    return "red" if centre[0] > centre[2] else "blue"


@pytest.mark.parametrize("codec, ext", CODECS)
def test_the_cut_from_a_red_circle_to_a_blue_square_is_sampled_at_its_time(tmp_path, codec, ext):
    path = write_video(tmp_path / f"cut{ext}", [(RED_CIRCLE, 3), (BLUE_SQUARE, 3)], codec=codec)
    sample = sample_video(path, side=96)
    times = [f.ms for f in sample.frames]
    assert times[0] == 0 and _colour(sample.frames[0].image) == "red"
    blue = [f for f in sample.frames if _colour(f.image) == "blue"]
    assert blue and blue[0].ms == 3000, times  # the keyframe of the cut, by its own time
    assert all(_colour(f.image) == "red" for f in sample.frames if f.ms < 3000)
    assert 5900 <= sample.duration_ms <= 6100
    # Decoded at the size asked for: the shortest side 96 of a 160x120 video.
    assert sample.frames[0].image.size == (128, 96)


# Every container the scanner lists, with a codec it carries (MPEG-1/2 need a standard rate).
CONTAINERS = [
    (".mov", h264(), 12),
    (".m4v", h264(), 12),
    (".mkv", h264(), 12),
    (".avi", "mpeg4", 12),
    (".3gp", h264(), 12),
    (".mts", h264(), 12),
    (".m2ts", h264(), 12),
    (".mpg", "mpeg2video", 25),
    (".mpeg", "mpeg1video", 25),
]


@pytest.mark.parametrize("ext, codec, fps", CONTAINERS, ids=[c[0][1:] for c in CONTAINERS])
def test_every_container_the_scanner_lists_is_sampled(tmp_path, ext, codec, fps):
    if not available(codec):
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    path = write_video(tmp_path / f"cut{ext}", CUT_RED_BLUE, codec=codec, fps=fps)
    sample = sample_video(path, side=64)
    assert [f.ms for f in sample.frames] == [0, 3000]
    assert [_colour(f.image) for f in sample.frames] == ["red", "blue"]


def test_every_video_extension_is_a_video_kind():
    for ext in ("mp4", "MOV", "m4v", "mkv", "webm", "avi", "3gp", "mts", "m2ts", "mpg", "mpeg"):
        assert kind_of(f"clip.{ext}") == VIDEO


def test_a_static_shot_gets_a_frame_every_cover_interval(tmp_path):
    path = write_video(tmp_path / "static.mp4", [(RED_CIRCLE, 21)], fps=4)
    times = [f.ms for f in sample_video(path, side=64).frames]
    assert times == [0, 5000, 10000, 15000, 20000]


def test_the_real_phone_clip_is_sampled_upright_at_its_keyframes():
    if not HAMILTON.is_file():
        pytest.skip(f"{HAMILTON} is not there")
    sample = sample_video(HAMILTON, side=224)
    assert 2 <= len(sample.frames) <= V.PER_MINUTE
    assert sample.frames[0].image.size == (398, 224)  # 640x360, its shortest side 224
    assert 9000 <= sample.duration_ms <= 10100
    gaps = np.diff([f.ms for f in sample.frames])
    assert (gaps >= V.MIN_GAP_MS).all()


def test_the_display_matrix_turns_a_rotated_phone_video_upright(tmp_path):
    # Stored landscape, the left half red; the display matrix turns it 90 degrees
    # counter-clockwise, so upright it is portrait with the red half at the bottom.
    pixels = np.full((120, 160, 3), 255, np.uint8)
    pixels[:, :80] = (220, 30, 30)
    path = write_video(tmp_path / "rotated.mp4", [(pixels, 1)], rotation=90)
    frame = sample_video(path, side=60).frames[0].image
    assert frame.size == (60, 80)
    a = np.asarray(frame, dtype=np.float32)
    assert a[60:, :, 0].mean() > 200 and a[60:, :, 1].mean() < 80  # bottom: red
    assert a[:20, :, 1].mean() > 200  # top: white
    assert frame_at(path, 0, side=60).size == (60, 80)


def test_a_variable_frame_rate_video_is_timed_by_its_frames_own_timestamps(tmp_path):
    # 30 fps for the first 2 s, then 5 fps: frame numbers / a nominal rate would put the
    # cut at the wrong time; the timestamps put it where it is.
    times = [round(i * 1000 / 30) for i in range(60)] + [2000 + i * 200 for i in range(20)]
    segments = [(RED_CIRCLE, 70 / 12), (BLUE_SQUARE, 10 / 12)]  # 70 red frames, 10 blue
    path = write_video(tmp_path / "vfr.mp4", segments, fps=12, gop=10, times_ms=times)
    sample = sample_video(path, side=64)
    got = {f.ms: _colour(f.image) for f in sample.frames}
    assert set(got) <= set(times), got
    first_blue = min(ms for ms, c in got.items() if c == "blue")
    assert first_blue == times[70] == 4000
    assert 5400 <= sample.duration_ms <= 6100  # the container's word: last frame 5.8 s


def test_an_empty_file_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        sample_video(path, side=96)


def test_an_audio_file_under_a_video_name_is_refused_with_its_reason(tmp_path):
    path = write_audio_only(tmp_path / "song.mp4")
    with pytest.raises(ImageError, match="audio only"):
        sample_video(path, side=96)


def test_a_truncated_mp4_is_refused_with_its_reason(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", [(RED_CIRCLE, 2)])
    cut = truncate(whole, tmp_path / "cut.mp4", 0.6)  # the index (moov) is at the end
    with pytest.raises(ImageError, match=r"cut\.mp4.*(truncated|damaged|invalid)"):
        sample_video(cut, side=96)


def test_a_truncated_webm_gives_the_frames_before_the_cut(tmp_path):
    if not available(VP9):
        pytest.skip("no libvpx")
    whole = write_video(tmp_path / "whole.webm", [(RED_CIRCLE, 3), (BLUE_SQUARE, 3)], codec=VP9)
    cut = truncate(whole, tmp_path / "cut.webm", 0.4)
    frames = sample_video(cut, side=64).frames
    assert frames and frames[0].ms == 0 and _colour(frames[0].image) == "red"


def test_garbage_under_a_video_name_is_refused(tmp_path):
    path = tmp_path / "noise.mov"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="noise.mov"):
        Video(path).scan()


def test_the_caps_hold_on_a_minute_of_cuts():
    # Probes a second apart, each a new scene: at most PER_MINUTE a minute, those that changed
    # the most, the file's first always kept.
    rng = np.random.default_rng(3)
    probes = [
        V._Probe(ms, ms, rng.random((4, 4, 3)).astype(np.float32)) for ms in range(0, 120_000, 1000)
    ]
    chosen = V.choose(probes)
    assert chosen[0].ms == 0
    for minute in (0, 1):
        assert sum(p.ms // 60_000 == minute for p in chosen) == V.PER_MINUTE
    assert all(b.ms - a.ms >= V.MIN_GAP_MS for a, b in zip(chosen, chosen[1:]))


# A three-hour video, cheap: 32x24 at 1 frame/s, a keyframe (and a new colour) every minute.
LONG_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    from photofind.formats.video import Video
    path = sys.argv[1]
    video = Video(path)
    t = time.perf_counter()
    frames = [f.ms for f in video.frames(24)]
    print(json.dumps({
        "frames": frames, "duration_ms": video.duration_ms, "s": time.perf_counter() - t,
        "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))
    """
)


def _long_video(path: Path, minutes: int) -> Path:
    palette = [
        np.full((24, 32, 3), (i * 37 % 256, i * 91 % 256, i * 53 % 256), np.uint8)
        for i in range(minutes)
    ]
    return write_video(path, [(p, 60) for p in palette], fps=1, size=(32, 24), gop=60)


def _sample_in_a_process(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LONG_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kB is Linux's")
def test_a_three_hour_video_keeps_the_bounds_and_memory_flat(tmp_path):
    long = _sample_in_a_process(_long_video(tmp_path / "3h.mp4", 180))
    short = _sample_in_a_process(_long_video(tmp_path / "3m.mp4", 3))
    assert 3 * 3600_000 - 2000 <= long["duration_ms"] <= 3 * 3600_000 + 2000
    frames = long["frames"]
    assert len(frames) == V.PER_FILE
    # Spread over the whole length, never more than PER_MINUTE in a minute.
    assert frames[0] == 0 and frames[-1] >= 170 * 60_000
    minutes = np.bincount(np.asarray(frames) // 60_000)
    assert minutes.max() <= V.PER_MINUTE
    # Memory: reading 3 hours costs what reading 3 minutes does (the process's peak, so
    # the interpreter and FFmpeg's libraries are in both).
    assert long["peak_kb"] - short["peak_kb"] < 20_000, (long["peak_kb"], short["peak_kb"])
    assert short["frames"] == [0, 60_000, 120_000]


def test_frames_kept_by_the_scan_are_the_frames_decoded_again(tmp_path):
    path = write_video(tmp_path / "cut.mp4", CUT_RED_BLUE)
    kept = Video(path, keep_side=64)
    again = Video(path)
    a, b = list(kept.frames(64)), list(again.frames(64))
    assert [f.ms for f in a] == [f.ms for f in b] == [0, 3000]
    for x, y in zip(a, b, strict=True):
        assert x.full_size == y.full_size == (160, 120)
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
    kept.release()
    assert all(p.image is None for p in kept.scan().chosen)
    assert [f.ms for f in kept.frames(64)] == [0, 3000]  # decoded again after the release
