"""Each still kind indexes into a real library, is found by the trained tiny model, shows a
thumbnail and a preview; a RAW beside its JPEG is one item; bad files are recorded."""

from __future__ import annotations

import contextlib
import json

import pytest
import still_files as sf
from PIL import Image

from photofind.demo_scenes import planted_scene, scene_matches
from photofind.synthetic import render

CIRCLE = "a red circle"
OTHERS = (
    "two green squares",
    "a yellow star on a purple background",
    "2*a blue heart + checkered background",
)
SEED = 2026


def scene(query: str, index: int) -> Image.Image:
    return render(planted_scene(query, SEED, index))


def distractors(count: int) -> list[Image.Image]:
    """Scenes of the other examples that show no red circle (a planted scene's other
    objects are random, and may be one)."""
    out, index = [], 20
    while len(out) < count:
        planted = planted_scene(OTHERS[index % 3], SEED, index)
        if not scene_matches(CIRCLE, planted):
            out.append(render(planted))
        index += 1
    return out


@pytest.fixture(scope="module")
def tiny():
    from photofind.clip import load_model, resolve_model
    from photofind.errors import PhotofindError

    try:
        resolve_model("tiny-synthetic")
    except PhotofindError:
        pytest.skip("resources/models/tiny-synthetic is not there yet")
    return load_model("tiny-synthetic", provider="cpu")


@pytest.fixture(scope="module")
def shots(tmp_path_factory, tiny):
    """A library whose red circles are each of another kind, among JPEG distractors."""
    from photofind.library.library import Library

    base = tmp_path_factory.mktemp("formats")
    photos = base / "photos"
    photos.mkdir()
    # Each of its own name: a RAW beside a still of the same name would be its companion.
    circles = {
        "heic": sf.write_heic(
            photos / "circle_heic.heic", scene(CIRCLE, 1), taken="2021:06:07 08:09:10"
        ),
        "avif": sf.write_avif(photos / "circle_avif.avif", scene(CIRCLE, 2)),
        "jxl": sf.write_jxl(photos / "circle_jxl.jxl", scene(CIRCLE, 3)),
        "dng": sf.write_dng(
            photos / "circle_dng.dng", scene(CIRCLE, 4), taken="2020:03:04 05:06:07"
        ),
        "tif": sf.write_multipage_tiff(
            photos / "circle_tif.tif", [scene(CIRCLE, 5), scene(OTHERS[0], 5)]
        ),
        "p3": sf.write_profiled_jpeg(photos / "circle_p3.jpg", scene(CIRCLE, 6), "display-p3"),
        "heic10": sf.write_heic_10bit(photos / "circle_10bit.heic", scene(CIRCLE, 7)),
        "gif": sf.write_animation(
            photos / "circle_gif.gif", [scene(CIRCLE, 8), scene(CIRCLE, 8)], [500, 500]
        ),
    }
    # PiDNG is needed throughout (the RAW+JPEG pair); psd-tools only for the PSD.
    with contextlib.suppress(pytest.skip.Exception):
        circles["psd"] = sf.write_psd(photos / "circle_psd.psd", scene(CIRCLE, 10))
    # One shot as RAW+JPEG: the JPEG leads, the RAW is reachable from it.
    pair = scene(CIRCLE, 9)
    pair.save(photos / "IMG_0042.JPG", quality=92)
    sf.write_dng(
        photos / "IMG_0042.DNG", pair, preview=pair.resize((pair.width * 2, pair.height * 2))
    )
    circles["pair"] = photos / "IMG_0042.JPG"
    for i, other in enumerate(distractors(12)):
        other.save(photos / f"other_{i:02d}.jpg", quality=90)
    # Bad input beside the good.
    heic = circles["heic"].read_bytes()
    (photos / "cut.heic").write_bytes(heic[: len(heic) // 2])
    (photos / "empty.dng").write_bytes(b"")
    scene(OTHERS[0], 40).save(photos / "jpeg_inside.heic", "JPEG", quality=90)
    root = base / "lib"
    with Library.open(root) as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(tiny)
    return root, photos, circles


def test_every_kind_is_indexed_and_the_bad_files_recorded_with_their_reason(shots):
    from photofind.library.library import Library

    root, photos, circles = shots
    with Library.open(root, readonly=True) as library:
        rows = {p.path: p for p in library.catalog.photos()}
    for path in [*circles.values(), photos / "IMG_0042.DNG", photos / "jpeg_inside.heic"]:
        assert rows[str(path)].status == "indexed", (path, rows[str(path)].error)
    failed = {p: r.error for p, r in rows.items() if r.status == "failed"}
    assert set(failed) == {str(photos / "cut.heic"), str(photos / "empty.dng")}
    assert "the HEIC file is truncated or damaged" in failed[str(photos / "cut.heic")]
    assert "the file is empty (0 bytes)" in failed[str(photos / "empty.dng")]
    # Dates from HEIC EXIF and from the RAW's metadata, for the date filter and sort.
    assert rows[str(circles["heic"])].capture_date.startswith("2021-06-07T08:09:10")
    assert rows[str(circles["dng"])].capture_date.startswith("2020-03-04T05:06:07")


def test_the_tiny_model_finds_the_red_circle_of_every_kind(shots, tiny):
    from photofind.library.library import Library
    from photofind.search import SearchEngine

    root, photos, circles = shots
    with Library.open(root, readonly=True) as library:
        results = SearchEngine(library, tiny).search(CIRCLE, k=len(circles), cutoff=False)
    found = {r.path for r in results}
    assert found == {str(p) for p in circles.values()}


def test_a_raw_beside_its_jpeg_is_one_result_with_the_raw_reachable(shots, tiny):
    from photofind.library.library import Library
    from photofind.search import SearchEngine, SearchFilter

    root, photos, circles = shots
    raw = str(photos / "IMG_0042.DNG")
    with Library.open(root, readonly=True) as library:
        engine = SearchEngine(library, tiny)
        everything = engine.search(CIRCLE, k=100, cutoff=False)
        raws = engine.search(CIRCLE, k=100, cutoff=False, filter=SearchFilter(types=("raw",)))
    by_path = {r.path: r for r in everything}
    assert raw not in by_path  # shown through its JPEG
    assert by_path[str(circles["pair"])].companions == (raw,)
    assert by_path[str(circles["dng"])].companions == ()  # a RAW alone is its own item
    # Asked for RAWs, the grid shows both, the JPEG's too (its lead is filtered out).
    assert {r.path for r in raws} == {raw, str(circles["dng"])}


def test_list_and_search_json_show_the_jpeg_with_its_companions(shots, capsys):
    from photofind.cli import main

    root, photos, circles = shots
    assert main(["--library", str(root), "list", "--json"]) == 0
    rows = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
    raw = str(photos / "IMG_0042.DNG")
    assert raw not in rows and rows[str(circles["pair"])]["companions"] == [raw]
    assert "companions" not in rows[str(circles["dng"])]
    argv = ["--library", str(root), "--model", "tiny-synthetic", "--provider", "cpu"]
    assert main([*argv, "search", CIRCLE, "--json", "--all", "-n", "50"]) == 0
    hits = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
    assert hits[str(circles["pair"])]["companions"] == [raw] and raw not in hits


def test_the_raw_shows_alone_once_its_jpeg_is_gone(shots, tiny, tmp_path):
    from photofind.library.companions import companions

    root, photos, circles = shots
    listed = [str(p) for p in photos.iterdir()]
    assert companions(listed) == {str(circles["pair"]): (str(photos / "IMG_0042.DNG"),)}
    listed.remove(str(circles["pair"]))
    assert companions(listed) == {}
    # A HEIC leads before a JPEG of the same shot; names compare without case.
    assert companions(["/p/a.jpg", "/p/A.HEIC", "/p/a.cr2"]) == {"/p/A.HEIC": ("/p/a.cr2",)}


@pytest.mark.parametrize(
    "kind", ["heic", "avif", "jxl", "dng", "tif", "p3", "heic10", "gif", "psd", "pair"]
)
def test_every_kind_shows_a_thumbnail_and_a_preview(qtbot, shots, kind):
    from photofind.gui.preview import PreviewDialog, load_preview
    from photofind.gui.thumbnails import ThumbnailLoader

    root, photos, circles = shots
    if kind not in circles:
        pytest.skip(f"no writer for {kind} here (psd-tools)")
    path = str(circles[kind])
    loader = ThumbnailLoader(None, threads=1)
    assert loader.get(path) is None
    with qtbot.waitSignal(loader.ready, timeout=20_000):
        pass
    thumb = loader.get(path)
    assert loader.error(path) is None and thumb is not None and not thumb.isNull()
    image, details, strip = load_preview(path, 0.5, None)
    assert not image.isNull() and details.width > 0 and details.height > 0 and strip == ()
    # The thumbnail shows the picture's colours: the red circle's red is in it.
    reds = sum(
        1
        for x in range(0, thumb.width(), 4)
        for y in range(0, thumb.height(), 4)
        if (c := thumb.pixelColor(x, y)).red() > 150 and c.green() < 90 and c.blue() < 90
    )
    assert reds > 0
    dialog = PreviewDialog()
    qtbot.addWidget(dialog)
    dialog.show_loading(path)
    dialog.show_photo(image, details)
    assert dialog.fields["dimensions"].text() == f"{details.width} × {details.height} pixels"
    loader.wait()


def test_copy_image_drop_and_the_type_filter_take_every_kind(qtbot, window, shots):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QGuiApplication

    from photofind.gui.actions import image_path
    from photofind.gui.filters import FILE_TYPES
    from photofind.search import SearchFilter

    root, photos, circles = shots
    heic = str(circles["heic"])
    with qtbot.waitSignal(window.photo_actions.imageCopied, timeout=20_000) as copied:
        window.copy_image(heic)  # Qt reads no HEIC: photofind.formats decodes it
    assert copied.args == [heic, True]
    with Image.open(heic) as stored:
        assert QGuiApplication.clipboard().image().size().toTuple() == stored.size
    for name in ("IMG_0042.DNG", "circle_avif.avif", "circle_jxl.jxl"):
        mime = QMimeData()
        mime.setUrls(
            [QUrl.fromLocalFile(str(photos / "notes.txt")), QUrl.fromLocalFile(str(photos / name))]
        )
        assert image_path(mime) == str(photos / name)
    labels = dict(FILE_TYPES)
    assert {"HEIC", "RAW", "AVIF", "JPEG XL", "PSD"} <= set(labels)
    assert {"dng", "cr3", "nef", "arw"} <= SearchFilter(types=labels["RAW"]).extensions()
    bar = window.filter_bar
    bar.type.setCurrentIndex(bar.type.findText("RAW"))
    assert "raw" in bar.search_filter().types


def test_the_grid_shows_the_jpeg_with_its_raw_reachable(qtbot, shots, tiny):
    from photofind.gui import create_window
    from photofind.gui.results_model import PathRole

    root, photos, circles = shots
    win = create_window(root, tiny)
    qtbot.addWidget(win)
    try:
        win.relevance_cutoff = False
        from PySide6.QtCore import Qt

        win.search_box.setText(CIRCLE)
        with qtbot.waitSignal(win.searchFinished, timeout=30_000):
            qtbot.keyClick(win.search_box, Qt.Key.Key_Return)
        model = win.results
        paths = [model.index(i, 0).data(PathRole) for i in range(model.rowCount())]
        raw = str(photos / "IMG_0042.DNG")
        assert raw not in paths
        pair = model.index(paths.index(str(circles["pair"])), 0)
        assert pair.data() == "IMG_0042.JPG + DNG"
        win.view.setCurrentIndex(pair)
        assert win.photo_actions.companion_of_current() == raw
        lone = model.index(paths.index(str(circles["dng"])), 0)
        win.view.setCurrentIndex(lone)
        assert win.photo_actions.companion_of_current() is None
    finally:
        win.shutdown()
        win.library.close()


def test_a_live_photo_clip_is_a_companion_of_its_still():
    from photofind.formats.kinds import VIDEO_EXTENSIONS
    from photofind.library.companions import companions

    if ".mov" not in VIDEO_EXTENSIONS:
        pytest.skip("videos are not catalogued on this branch (formats.kinds.VIDEO_EXTENSIONS)")
    paths = ["/p/IMG_0007.HEIC", "/p/IMG_0007.MOV", "/p/IMG_0007.DNG", "/p/trip.mp4"]
    assert companions(paths) == {"/p/IMG_0007.HEIC": ("/p/IMG_0007.DNG", "/p/IMG_0007.MOV")}
