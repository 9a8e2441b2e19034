"""Videos in the desktop app, on real widgets: a video hit's thumbnail is its best frame, the
grid marks it with its length, the preview shows the matching frames with their times and
hands the file to the system's player, Find similar starts from the frame that matched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

from gui_support import FAST  # noqa: E402
from PySide6.QtCore import Qt, QUrl  # noqa: E402
from PySide6.QtWidgets import QDialog  # noqa: E402
from videos import CUT_RED_BLUE, write_video  # noqa: E402

from photofind.gui import create_window  # noqa: E402
from photofind.gui.results_model import badge_text  # noqa: E402
from photofind.gui.thumbnails import make_thumbnail  # noqa: E402
from photofind.synthetic import encode, generate  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "resources" / "models" / "tiny-synthetic"


@pytest.fixture
def video_window(qtbot, tmp_path):
    """A window on a library of a few photos and one video (a red circle for 3 s, then a
    blue square), indexed with the tiny model; afterwards no worker thread is left."""
    import threading

    if not TINY.is_dir():
        pytest.skip("resources/models/tiny-synthetic is not there")
    media = tmp_path / "media"
    media.mkdir()
    video = write_video(media / "cut.mp4", CUT_RED_BLUE)
    for i in range(6):
        scene, image, _ = generate(5, i)
        (media / f"p{i}.{scene.format}").write_bytes(encode(image, scene.format))
    past = time.time() - 60  # settled files, as in a folder the user already has
    for path in media.iterdir():
        os.utime(path, (past, past))
    threads_before = threading.active_count()
    win = create_window(tmp_path / "lib", str(TINY), provider="cpu", watch_options=FAST)
    win.relevance_cutoff = False
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.indexing.finished, timeout=60_000):
        win.add_folder(str(media))
    yield win, video
    win.shutdown()
    win.close()
    qtbot.waitUntil(lambda: threading.active_count() <= threads_before + 1, timeout=10_000)


def _search(qtbot, window, text):
    window.search_box.setText(text)
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    return window.results.rows()


def _centre(image) -> tuple[float, float, float]:
    """The mean colour of the middle of a QImage."""
    w, h = image.width(), image.height()
    pixels = [
        image.pixelColor(x, y)
        for x in range(w // 3, 2 * w // 3, 4)
        for y in range(h // 3, 2 * h // 3, 4)
    ]
    return tuple(
        float(np.mean([getattr(c, ch)() for c in pixels])) for ch in ("red", "green", "blue")
    )


def test_a_video_hit_shows_its_best_frame_and_its_length(qtbot, video_window):
    window, video = video_window
    rows = _search(qtbot, window, "a blue square")
    row = rows[0]
    assert row.path == str(video) and row.time_s == 3.0 and 5900 <= row.duration_ms <= 6100
    assert badge_text(row) == "▶ 0:06"
    assert "video 0:06" in window.results.index(0).data(Qt.ItemDataRole.AccessibleTextRole)
    qtbot.waitUntil(lambda: window.thumbnails.get(row.path, row.time_s) is not None, timeout=10_000)
    red, _, blue = _centre(window.thumbnails.get(row.path, row.time_s))
    assert blue > red + 60  # the blue square, not the video's first (red) frame
    rows = _search(qtbot, window, "a red circle")
    red_row = next(r for r in rows if r.path == str(video))
    assert red_row.time_s == 0.0
    red, _, blue = _centre(make_thumbnail(red_row.path, None, red_row.time_s))
    assert red > blue + 60


def test_the_preview_shows_the_matching_frames_and_plays_in_the_system_player(
    qtbot, video_window, monkeypatch
):
    window, video = video_window
    _search(qtbot, window, "a blue square")
    window.show()
    window.view.setFocus()
    window.view.setCurrentIndex(window.results.index(0))
    with qtbot.waitSignal(window.previewShown, timeout=10_000):
        qtbot.keyClick(window.view, Qt.Key.Key_Space)
    preview = window.findChild(QDialog, "previewDialog")
    assert preview.fields["duration"].text().startswith("0:06 (shown at 3.0 s)")
    assert preview.fields["dimensions"].text() == "160 × 120 pixels"
    assert preview.strip.isVisible()
    assert [t.split(" · ")[0] for t in preview.strip_times()] == ["0:00", "0:03"]
    assert preview.play.isVisible()
    # The system's player is outside the machine: only the URL handed over is checked.
    import photofind.gui.actions as actions

    opened = []
    monkeypatch.setattr(actions.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    qtbot.mouseClick(preview.play, Qt.MouseButton.LeftButton)
    assert opened == [QUrl.fromLocalFile(str(video))]
    preview.close()


def test_find_similar_from_a_video_hit_starts_from_the_frame_that_matched(qtbot, video_window):
    window, video = video_window
    _search(qtbot, window, "a blue square")
    window.view.setCurrentIndex(window.results.index(0))
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.find_similar_action.trigger()
    rows = window.results.rows()
    assert (rows[0].path, rows[0].time_s) == (str(video), 3.0)
    assert rows[0].score == pytest.approx(1.0, abs=1e-5)
    assert any(r.time_s is None for r in rows)  # photos too
    assert "at 0:03" in window.header.outcome.what


def test_dropping_a_video_searches_by_it(qtbot, video_window):
    from PySide6.QtCore import QMimeData, QPoint
    from PySide6.QtGui import QDropEvent

    window, video = video_window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(video))])
    event = QDropEvent(
        QPoint(10, 10).toPointF(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.dropEvent(event)
    assert window.results.rows()[0].path == str(video)


def test_copy_image_of_a_video_hit_copies_the_frame_that_matched(qtbot, video_window):
    from PySide6.QtGui import QGuiApplication

    window, video = video_window
    _search(qtbot, window, "a blue square")
    window.view.setCurrentIndex(window.results.index(0))
    with qtbot.waitSignal(window.photo_actions.imageCopied, timeout=10_000) as copied:
        window.copy_image_action.trigger()
    assert copied.args == [str(video), True]
    image = QGuiApplication.clipboard().image()
    assert (image.width(), image.height()) == (160, 120)
    red, _, blue = _centre(image)
    assert blue > red + 60
