"""Animated GIF/WebP/APNG in a real library: indexed as a short video (a vector per sampled
frame, with its time) by the bundled tiny CLIP, found at the moment a search describes, its
thumbnail that frame; still GIF/PNG/WebP, and a one-frame "animation", stay one-vector
photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from old_code import code_before
from PIL import Image
from videos import BLUE_SQUARE, RED_CIRCLE, scene

from photofind.cli import main
from photofind.clip import load_model
from photofind.formats.frames import MAX_FRAMES, Animation, frame_at
from photofind.library.library import Library
from photofind.search import SearchEngine
from photofind.synthetic import encode, generate

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "resources" / "models" / "tiny-synthetic"
ANIMATIONS = ["cut.gif", "cut.webp", "cut.png"]
STILLS = ["still.gif", "still.png", "still.webp", "one.gif"]
#: four frames of a red circle, then four of a blue square, 500 ms each: 0-2 s red, 2-4 s blue
FRAME_MS = 500


def _shots(subject, count: int, start: int = 0) -> list[Image.Image]:
    """``count`` frames of ``subject``, each told apart by one pixel (GIF and APNG writers
    merge identical frames into one)."""
    out = []
    for i in range(count):
        a = scene(*subject).copy()
        a[0, start + i] = (200, 200, 200)
        out.append(Image.fromarray(a))
    return out


def write_cut(path: Path) -> Path:
    shots = _shots(RED_CIRCLE, 4) + _shots(BLUE_SQUARE, 4, start=4)
    fmt = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG"}[path.suffix]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    shots[0].save(
        path, format=fmt, save_all=True, append_images=shots[1:], duration=FRAME_MS, loop=0, **extra
    )
    return path


@pytest.fixture(scope="module")
def tiny():
    if not TINY.is_dir():
        pytest.skip("resources/models/tiny-synthetic is not there")
    return load_model(TINY, provider="cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("animations")
    media = root / "media"
    media.mkdir()
    for name in ANIMATIONS:
        write_cut(media / name)
    red = Image.fromarray(scene(*RED_CIRCLE))
    for name in STILLS[:3]:
        red.save(media / name)
    # Written as an animation, with one frame: a still.
    red.save(media / "one.gif", save_all=True, append_images=[], duration=100, loop=0)
    # Many short frames: the sample stays bounded.
    many = _shots(BLUE_SQUARE, 100) + _shots(RED_CIRCLE, 100)
    many[0].save(media / "long.gif", save_all=True, append_images=many[1:], duration=20, loop=0)
    # Cut short: its first frame is still a photo (as it was before animations had
    # frames); a WebP cut short cannot be read at all, and says so.
    for name in ("cut.gif", "cut.webp"):
        whole = (media / name).read_bytes()
        (media / f"short{Path(name).suffix}").write_bytes(whole[: len(whole) * 7 // 10])
    for i in range(24):
        sc, image, _ = generate(11, i)
        (media / f"p{i:02d}.{sc.format}").write_bytes(encode(image, sc.format))
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


def test_an_animation_is_a_photo_with_a_vector_per_sampled_frame(world, library):
    assert world["stats"].failed == 1
    items = _by_name(library)
    ids = {p.id for p in items.values()}
    for name in ANIMATIONS:
        item = items[name]
        assert (item.kind, item.status) == ("photo", "indexed"), name
        assert item.duration_ms == 8 * FRAME_MS
        frames = library.catalog.frames_of(item.id)
        assert [ms for _, ms, _ in frames] == [FRAME_MS * i for i in range(8)], name
        # The first frame's vector id is the item's, the others drawn from the sequence.
        assert frames[0][0] == item.id and not ids & {vid for vid, _, _ in frames[1:]}
    long = library.catalog.frames_of(items["long.gif"].id)
    assert len(long) == MAX_FRAMES  # 200 frames, sampled evenly over its 4 s
    assert [ms for _, ms, _ in long] == [500 * i for i in range(MAX_FRAMES)]
    assert len(library.index) == library.catalog.embedding_count()
    assert len(library.index) == 24 + len(STILLS) + 1 + 8 * len(ANIMATIONS) + MAX_FRAMES


def test_a_still_gif_png_or_webp_stays_a_one_vector_photo(library):
    items = _by_name(library)
    for name in [*STILLS, "short.gif", "p00.jpg"]:
        item = items[name]
        assert (item.kind, item.status, item.duration_ms) == ("photo", "indexed", None), name
        assert [(vid, ms) for vid, ms, _ in library.catalog.frames_of(item.id)] == [(item.id, None)]


def test_a_damaged_animation_that_cannot_be_read_is_failed_with_its_reason(library):
    item = _by_name(library)["short.webp"]
    assert item.status == "failed" and "short.webp" in item.error and "damaged" in item.error


@pytest.mark.parametrize("query, first, last", [("a red circle", 0, 2), ("a blue square", 2, 4)])
def test_a_text_search_finds_each_animation_at_the_time_of_the_scene(
    library, tiny, query, first, last
):
    results = SearchEngine(library, tiny).search(query, k=40, cutoff=False)
    hits = {Path(r.path).name: r for r in results if Path(r.path).name in ANIMATIONS}
    assert set(hits) == set(ANIMATIONS)
    for name, r in hits.items():
        assert first <= r.time_s < last, (name, r.time_s)
        assert r.duration_ms == 8 * FRAME_MS
    assert all(r.time_s is None for r in results if Path(r.path).name in STILLS)
    # The plain animations and stills of the scene beat the random photos.
    top = {Path(r.path).name for r in results[: len(ANIMATIONS)]}
    assert top <= set(ANIMATIONS) | set(STILLS) | {"long.gif"}


def test_the_thumbnail_of_a_hit_is_its_best_frame(library, tiny, qapp):
    from photofind.gui.thumbnails import make_thumbnail

    engine = SearchEngine(library, tiny)
    for query, colour in (("a red circle", (255, 0, 0)), ("a blue square", (0, 0, 255))):
        hit = next(
            r for r in engine.search(query, k=40, cutoff=False) if r.path.endswith("cut.gif")
        )
        image = make_thumbnail(hit.path, None, hit.time_s)
        pixel = image.pixelColor(image.width() // 2, image.height() // 2)
        got = np.array([pixel.red(), pixel.green(), pixel.blue()])
        assert np.abs(got - colour).max() < 80, (query, got)


def test_the_preview_of_a_hit_shows_its_best_frame_and_a_strip_of_frames(library, tiny, qapp):
    from photofind.gui.preview import load_preview

    engine = SearchEngine(library, tiny)
    results = engine.search("a blue square", k=40, cutoff=False)
    hit = next(r for r in results if r.path.endswith("cut.png"))
    frames = tuple(engine.frames(hit.photo_id, results.vector)[:3])
    image, details, strip = load_preview(
        hit.path, hit.score, None, time_s=hit.time_s, frames=frames
    )
    pixel = image.pixelColor(image.width() // 2, image.height() // 2)
    assert pixel.blue() > 200 and max(pixel.red(), pixel.green()) < 100
    assert (details.width, details.height, details.duration_ms) == (160, 120, 4000)
    assert details.time_s == hit.time_s and [f.time_s for f in strip] == sorted(
        t for t, _ in frames
    )
    # Outside a search (no frame named) it is the picture, as any photo's.
    image, details, strip = load_preview(hit.path, None, None)
    assert details.duration_ms is None and strip == ()


def test_the_cli_lists_an_animation_as_a_photo_with_its_length(world, tiny, capsys):
    common = ["--library", str(world["root"] / "lib"), "--model", str(TINY), "--provider", "cpu"]
    assert main([*common, "search", "a blue square", "--json", "--all", "-n", "40"]) == 0
    hits = {Path(h["path"]).name: h for h in json.loads(capsys.readouterr().out)}
    assert 2 <= hits["cut.webp"]["time_s"] < 4
    assert "time_s" not in hits["still.webp"]
    assert main([*common, "list", "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cut.png"]["kind"] == "photo" and rows["cut.png"]["duration_s"] == 4
    assert rows["still.png"]["kind"] == "photo" and "duration_s" not in rows["still.png"]


def test_frame_at_and_the_animation_frames_at_an_analysers_side(world):
    path = world["media"] / "cut.webp"
    red, blue = frame_at(path, 1999, side=60), frame_at(path, 2000, side=60)
    assert min(red.size) == 60 and min(blue.size) == 60
    r, g, b = red.getpixel((40, 30))
    assert r > 200 and max(g, b) < 100, (r, g, b)  # the red circle, up to 1999 ms
    r, g, b = blue.getpixel((40, 30))
    assert b > 200 and max(r, g) < 100, (r, g, b)  # the blue square, from 2000 ms
    animation = Animation(path, keep_side=40)
    kept = list(animation.frames(40))
    assert [f.ms for f in kept] == [FRAME_MS * i for i in range(8)]
    assert all(min(f.image.size) == 40 and f.full_size == (160, 120) for f in kept)
    assert [f.image for f in animation.frames(40)] == [f.image for f in kept]  # kept, not re-read
    assert [min(f.image.size) for f in animation.frames(200)] == [120] * 8  # never enlarged
    assert animation.duration_ms == 4000 and animation.created is None


OLD_SCRIPT = """
import sys
from photofind.clip import load_model
from photofind.library.library import Library
lib, media, model = sys.argv[1:]
with Library.open(lib) as library:
    library.add_folder(media)
    library.scan()
    library.index_pending(load_model(model, provider="cpu"))
print(__import__("photofind").__file__)
"""


def test_an_animation_indexed_before_keeps_its_one_vector(tmp_path, tiny):
    """A library indexed by the code before animations had frames is not encoded again:
    its animated GIF keeps its one vector until the file changes."""
    code = code_before(
        "class Animation(Video)",
        tmp_path / "code",
        schema="one-vector animations",
        file="photofind/formats/frames.py",
    )
    assert "class Animation" not in (code / "photofind/formats/frames.py").read_text()
    media = tmp_path / "media"
    media.mkdir()
    gif = write_cut(media / "cut.gif")
    env = {**os.environ, "PYTHONPATH": str(code), "PHOTOFIND_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", OLD_SCRIPT, str(tmp_path / "lib"), str(media), str(TINY)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(code)  # the old code ran, not this one
    with Library.open(tmp_path / "lib") as library:
        item = library.catalog.photo_by_path(str(gif))
        before = library.catalog.frames_of(item.id)
        assert [(vid, ms) for vid, ms, _ in before] == [(item.id, None)]
        library.scan()
        stats = library.index_pending(tiny)
        assert (stats.indexed, stats.failed) == (0, 0)
        after = library.catalog.frames_of(item.id)
        assert [(vid, ms) for vid, ms, _ in after] == [(item.id, None)]
        assert np.array_equal(after[0][2], before[0][2])  # the same vector, not made again
        # Rewritten, it is indexed again, now frame by frame.
        stat = gif.stat()
        write_cut(gif)
        os.utime(gif, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        library.scan()
        assert library.index_pending(tiny).indexed == 1
        assert len(library.catalog.frames_of(item.id)) == 8
