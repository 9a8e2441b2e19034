"""Videos in a real library: scanned, sampled, embedded by the bundled tiny CLIP (trained on
the scenes the test videos show), searched by text and by a frame, through the CLI too;
broken videos recorded with their reasons; faces found in a real phone clip."""

from __future__ import annotations

import json
import shutil
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

from photofind.cli import main
from photofind.clip import load_model
from photofind.library.library import Library
from photofind.search import SearchEngine
from photofind.synthetic import encode, generate

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "resources" / "models" / "tiny-synthetic"
HAMILTON = REPO.parent / "shared" / "data" / "faces" / "video" / "short_hamilton_clip.mp4"
CUT = CUT_RED_BLUE
VIDEOS = (
    ["cut.mp4"]
    + (["cut.mkv"] if available(HEVC) else [])
    + (["cut.webm"] if available(VP9) else [])
)
BROKEN = {
    "empty.mp4": "empty",
    "song.mp4": "audio only",
    "cut-short.mov": "truncated",
    "noise.avi": "noise.avi",
}


@pytest.fixture(scope="module")
def tiny():
    if not TINY.is_dir():
        pytest.skip("resources/models/tiny-synthetic is not there")
    return load_model(TINY, provider="cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("videos")
    media = root / "media"
    media.mkdir()
    write_video(media / "cut.mp4", CUT, codec=h264())
    if available(HEVC):
        write_video(media / "cut.mkv", CUT, codec=HEVC)
    if available(VP9):
        write_video(media / "cut.webm", CUT, codec=VP9)
    for i in range(24):
        scene, image, _ = generate(11, i)
        (media / f"p{i:02d}.{scene.format}").write_bytes(encode(image, scene.format))
    (media / "empty.mp4").write_bytes(b"")
    write_audio_only(media / "song.mp4")
    truncate(write_video(root / "whole.mov", CUT), media / "cut-short.mov", 0.5)
    (media / "noise.avi").write_bytes(np.random.default_rng(1).bytes(40_000))
    with Library.open(root / "lib") as library:
        library.add_folder(media)
        library.scan()
        stats = library.index_pending(tiny, batch_size=8)
    return {"root": root, "media": media, "stats": stats}


@pytest.fixture
def library(world):
    with Library.open(world["root"] / "lib", readonly=True) as library:
        yield library


def _by_name(library) -> dict:
    return {Path(p.path).name: p for p in library.catalog.photos()}


def test_videos_are_indexed_with_their_kind_duration_and_frames(world, library):
    assert world["stats"].failed == len(BROKEN)
    items = _by_name(library)
    for name in VIDEOS:
        video = items[name]
        assert (video.kind, video.status) == ("video", "indexed")
        assert 5900 <= video.duration_ms <= 6100
        frames = library.catalog.frames_of(video.id)
        assert [ms for _, ms, _ in frames] == [0, 3000]
        # The first frame's vector id is the item's, the second's drawn from the sequence.
        assert frames[0][0] == video.id and frames[1][0] not in {p.id for p in items.values()}
    assert items["p00.jpg"].kind == "photo" and items["p00.jpg"].duration_ms is None
    # The vector index holds every frame.
    assert len(library.index) == library.catalog.embedding_count() == 24 + 2 * len(VIDEOS)


def test_each_broken_video_is_recorded_failed_with_its_reason(library):
    items = _by_name(library)
    for name, reason in BROKEN.items():
        item = items[name]
        assert item.status == "failed" and item.kind == "video", name
        assert name in item.error and reason in item.error, item.error


@pytest.mark.parametrize("query, first, last", [("a red circle", 0, 3), ("a blue square", 3, 6)])
def test_a_text_search_finds_each_video_at_the_time_of_the_scene(library, tiny, query, first, last):
    results = SearchEngine(library, tiny).search(query, k=len(VIDEOS) + 3, cutoff=False)
    videos = [r for r in results if Path(r.path).name in VIDEOS]
    assert {Path(r.path).name for r in videos} == set(VIDEOS)
    assert results[0] in videos  # a large plain scene beats the random photos
    for r in videos:
        assert first <= r.time_s < last, (r.path, r.time_s)
    assert all(r.time_s is None for r in results if r not in videos)


def test_the_frames_of_a_hit_are_scored_best_first(library, tiny):
    engine = SearchEngine(library, tiny)
    results = engine.search("a blue square", k=3, cutoff=False)
    hit = next(r for r in results if r.time_s is not None)
    frames = engine.frames(hit.photo_id, results.vector)
    assert [t for t, _ in frames] == [3.0, 0.0]
    assert frames[0][1] == pytest.approx(hit.score, abs=1e-5)


def test_find_similar_from_a_frame_finds_other_videos_at_that_moment_and_photos(library, tiny):
    engine = SearchEngine(library, tiny)
    source = _by_name(library)["cut.mp4"]
    results = engine.similar(source.id, time_s=4.2, k=30, cutoff=False)
    assert results[0].photo_id == source.id and results[0].time_s == 3.0
    assert results[0].score == pytest.approx(1.0, abs=1e-5)
    others = [r for r in results[1:] if r.time_s is not None]
    assert len(others) == len(VIDEOS) - 1
    assert all(r.time_s == 3.0 for r in others)  # the blue square, in the other codecs
    assert any(r.time_s is None for r in results)  # and photos
    # From the first second: the red circle.
    assert engine.similar(source.id, time_s=0.5, k=1)[0].time_s == 0.0


def test_the_cli_gives_video_hits_their_time_and_list_their_kind(world, tiny, capsys):
    common = ["--library", str(world["root"] / "lib"), "--model", str(TINY), "--provider", "cpu"]
    assert main([*common, "search", "a blue square", "--json", "--all", "-n", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert Path(hits[0]["path"]).name in VIDEOS
    assert set(hits[0]) == {"path", "score", "time_s"} and hits[0]["time_s"] == 3.0
    video = world["media"] / "cut.mp4"
    assert main([*common, "similar", str(video), "--at", "1", "--json", "--all", "-n", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert Path(hits[0]["path"]) == video and hits[0]["time_s"] == 0.0
    assert main([*common, "list", "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cut.mp4"]["kind"] == "video" and rows["cut.mp4"]["duration_s"] == pytest.approx(
        6, abs=0.1
    )
    assert rows["p00.jpg"]["kind"] == "photo" and "duration_s" not in rows["p00.jpg"]
    assert rows["song.mp4"]["status"] == "failed" and "audio only" in rows["song.mp4"]["error"]


def test_a_rewritten_video_replaces_its_frames_in_the_index(world, tiny, tmp_path):
    shutil.copytree(world["root"] / "lib", tmp_path / "lib")
    media = tmp_path / "media"
    media.mkdir()
    path = write_video(media / "clip.mp4", [(RED_CIRCLE, 2), (BLUE_SQUARE, 2), (RED_CIRCLE, 2)])
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(media)
        library.scan()
        library.index_pending(tiny)
        item = library.catalog.photo_by_path(str(path))
        before = library.catalog.frames_of(item.id)
        assert [ms for _, ms, _ in before] == [0, 2000, 4000]
        assert all(vid in library.index for vid, _, _ in before)
        write_video(path, [(BLUE_SQUARE, 1)])
        library.scan()
        library.index_pending(tiny)
        frames = library.catalog.frames_of(item.id)
        assert [(vid, ms) for vid, ms, _ in frames] == [(item.id, 0)]
        assert not any(vid in library.index for vid, _, _ in before[1:])
        assert len(library.index) == library.catalog.embedding_count()
        hits = SearchEngine(library, tiny).search("a blue square", k=len(VIDEOS) + 1, cutoff=False)
        assert (item.id, 0.0) in [(r.photo_id, r.time_s) for r in hits]


def test_faces_are_found_in_the_frames_of_a_real_phone_clip(tiny, tmp_path):
    pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
    if not HAMILTON.is_file():
        pytest.skip(f"{HAMILTON} is not there")
    from photofind.faces import FaceModel
    from photofind.library.face_analyser import FaceAnalyser

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(HAMILTON, media / "hamilton.mp4")
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(media)
        library.scan()
        stats = library.index_pending(tiny, analysers=[FaceAnalyser(FaceModel())])
        assert (stats.indexed, stats.failed) == (1, 0)
        item = library.catalog.photo_by_path(str(media / "hamilton.mp4"))
        faces = library.catalog.faces(item.id)
        frames = {ms for _, ms, _ in library.catalog.frames_of(item.id)}
        assert len(faces) >= 2, "Lin-Manuel Miranda is in every sampled frame"
        assert all(f.frame_ms in frames for f in faces)
        for f in faces:  # boxes in the video's own pixels (640x360)
            x, y, w, h = f.box
            assert x >= 0 and x + w <= 660 and y >= 0 and y + h <= 380 and w >= 20


def test_a_model_change_re_embeds_every_frame_and_keeps_the_times(world, tiny, model, tmp_path):
    shutil.copytree(world["root"] / "lib", tmp_path / "lib")
    with Library.open(tmp_path / "lib") as library:
        video = library.catalog.photo_by_path(str(world["media"] / "cut.mp4"))
        stats = library.index_pending(model)  # another model: a staged change, then the swap
        assert stats.swapped
        frames = library.catalog.frames_of(video.id)
        assert [ms for _, ms, _ in frames] == [0, 3000]
        assert len(library.index) == library.catalog.embedding_count() == 24 + 2 * len(VIDEOS)
        vector = library.catalog.frame_vector(video.id, 3000)
        hit = SearchEngine(library, model).similar(video.id, time_s=3, k=1)[0]
        assert (hit.photo_id, hit.time_s) == (video.id, 3.0)
        assert float(vector @ frames[1][2]) == pytest.approx(1.0)


def test_a_videos_creation_time_is_its_capture_date(tiny, tmp_path):
    from datetime import datetime, timezone

    import av

    media = tmp_path / "media"
    media.mkdir()
    path = media / "dated.mp4"
    container = av.open(str(path), "w")
    container.metadata["creation_time"] = "2019-07-14T09:30:00.000000Z"
    stream = container.add_stream(h264(), rate=4)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
    for i in range(4):
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(media)
        library.scan()
        library.index_pending(tiny)
        item = library.catalog.photo_by_path(str(path))
    local = datetime(2019, 7, 14, 9, 30, tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
    assert item.capture_date == local.isoformat()


def test_the_video_type_filter_keeps_only_videos(library, tiny):
    from photofind.search import SearchFilter

    engine = SearchEngine(library, tiny)
    results = engine.search(
        "a red circle", k=10, cutoff=False, filter=SearchFilter(types=("video",))
    )
    assert {Path(r.path).name for r in results} == set(VIDEOS)
