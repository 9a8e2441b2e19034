"""The demo's suggested searches work: measured against what each generated photo shows."""

from __future__ import annotations

import os

import pytest

from photofind.cli import main
from photofind.demo import (
    ALBUMS,
    DEMO_VERSION,
    EXAMPLE_SEARCHES,
    FIRST_SCREEN_EXAMPLES,
    PHOTOS_DIR,
    build_demo_library,
    demo_scenes,
    write_demo_photos,
)
from photofind.demo_scenes import planted_scene, read_sentence, scene_matches
from photofind.synthetic import Scene, SynthObject


def _scene(*objects, background="plain", colour="grey") -> Scene:
    objs = tuple(SynthObject(*o.split()) for o in objects)  # "shape colour size position"
    return Scene(objs, background, colour, 256, 256, "png", 0)


def test_the_ground_truth_reads_shapes_counts_backgrounds_and_subtraction():
    two = _scene("square green small left", "square green small right", "star red large top")
    one = _scene("square green small left", "circle red large top", background="striped")
    assert scene_matches("two green squares", two)
    assert not scene_matches("two green squares", one)  # one green square is not two
    assert scene_matches("a green square", one) and scene_matches("a small green square", two)
    assert not scene_matches("a large green square", two)
    assert scene_matches("a red circle on a striped grey background", one)
    assert not scene_matches("a red circle on a striped blue background", one)
    assert scene_matches("2*a red circle + striped background", one)
    assert not scene_matches("2*a red circle + checkered background", one)
    assert scene_matches("a red circle - white background", one)
    assert not scene_matches("a red circle - grey background", one)
    with pytest.raises(ValueError, match="not one sentence"):
        read_sentence("a dog on a beach")


@pytest.mark.parametrize("query", EXAMPLE_SEARCHES)
def test_a_planted_scene_shows_its_example_visibly_and_is_the_same_every_time(query):
    scene = planted_scene(query, 2024, 4)
    assert scene_matches(query, scene)
    assert scene == planted_scene(query, 2024, 4)
    assert scene != planted_scene(query, 2024, 9)


def test_every_example_has_right_answers_spread_over_the_albums(tmp_path):
    scenes = demo_scenes(tmp_path)
    for query in EXAMPLE_SEARCHES:
        right = [path for path, scene in scenes.items() if scene_matches(query, scene)]
        assert len(right) >= 10, (query, len(right))
        assert {os.path.basename(os.path.dirname(p)) for p in right} == set(ALBUMS)


def test_a_demo_of_an_older_generation_is_written_again_and_a_current_one_is_kept(tmp_path):
    root = tmp_path / "demo"
    album = root / PHOTOS_DIR / ALBUMS[0]
    album.mkdir(parents=True)
    (album / "demo_0000.jpg").write_bytes(b"an old generation's photo")
    (album / "demo_0297.png").write_bytes(b"beyond the new count: must go too")
    (album / "my_own.jpg").write_bytes(b"not the demo's: kept")
    paths = write_demo_photos(root, count=6)
    assert (root / "demo-version").read_text().strip() == str(DEMO_VERSION)
    assert not (album / "demo_0297.png").exists() and (album / "my_own.jpg").exists()
    new = {p: p.stat() for p in paths}
    assert all(st.st_size > 1000 for st in new.values())  # real pictures, not the old bytes
    # The generation is in the nanoseconds, so the catalog sees a changed file.
    assert all(st.st_mtime_ns % 1_000_000_000 == DEMO_VERSION for st in new.values())
    assert write_demo_photos(root, count=6) == paths
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths} == {
        p: (st.st_ino, st.st_mtime_ns) for p, st in new.items()
    }


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    from photofind.clip import load_model, resolve_model
    from photofind.errors import PhotofindError

    try:
        resolve_model("tiny-synthetic")
    except PhotofindError:
        pytest.skip("resources/models/tiny-synthetic is not there yet")
    model = load_model("tiny-synthetic", provider="cpu")
    root = build_demo_library(tmp_path_factory.mktemp("demo"), model)
    return root, model, demo_scenes(root)


@pytest.mark.parametrize("cutoff", [True, False], ids=["cut-off", "no cut-off"])
def test_every_suggested_search_finds_five_right_photos_in_its_top_ten(tiny_demo, cutoff):
    from photofind.library.library import Library
    from photofind.search import SearchEngine

    root, model, scenes = tiny_demo
    assert set(FIRST_SCREEN_EXAMPLES) <= set(EXAMPLE_SEARCHES)
    right = {}
    with Library.open(root, readonly=True) as library:
        engine = SearchEngine(library, model)
        for query in EXAMPLE_SEARCHES:
            top = engine.search(query, k=10, cutoff=cutoff)
            right[query] = sum(scene_matches(query, scenes[r.path]) for r in top)
    assert all(n >= 5 for n in right.values()), right


def test_the_app_on_the_demo_suggests_only_the_measured_examples(qtbot, tiny_demo):
    pytest.importorskip("PySide6.QtWidgets")
    import re

    from photofind.gui import create_window

    root, model, _ = tiny_demo
    win = create_window(root, model)
    qtbot.addWidget(win)
    try:
        quoted = re.findall(r"“([^”]+)”", win.search_box.placeholderText())
        links = re.findall(r'<a href="([^"]+)">', win.empty_label.text())
        assert quoted and links
        assert set(quoted) | set(links) <= set(EXAMPLE_SEARCHES)
    finally:
        win.shutdown()
        win.library.close()


def test_demo_with_a_command_prints_results_for_every_example(tiny_demo, capsys):
    root, _, _ = tiny_demo
    argv = ["--library", str(root.parent), "--provider", "cpu", "--demo", "status"]
    # The fixture's library is <tmp>/demoN; --demo builds <library>/demo: a second demo,
    # which shows that a fresh one works too.
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(nothing stands out)" not in out
    for query in EXAMPLE_SEARCHES:
        block = out.split(f'search "{query}"\n', 1)[1].split("\n\n", 1)[0]
        assert len(block.strip().splitlines()) == 3, (query, block)
