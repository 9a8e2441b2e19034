"""The desktop app, driven with pytest-qt on real widgets, a real library and a real model."""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

pytest.importorskip("PySide6.QtWidgets")

from gui_support import FAST, demo_library  # noqa: E402
from images import write_photo_jpeg  # noqa: E402
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QAbstractItemView, QDialog, QLineEdit, QProgressBar  # noqa: E402

from photofind.gui import create_window  # noqa: E402


def photos(folder, n):
    """``n`` photos written a minute ago, as in a folder the user already has: fresh files
    wait until they have settled (WatchOptions.settle_s), and a write slower than that would
    split the first pass in two rounds at random."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        write_photo_jpeg(folder / f"photo_{i:02d}.jpg", width=200, height=150, seed=i)
        for i in range(n)
    ]
    past = time.time() - 60
    for path in written:
        os.utime(path, (past, past))
    return written


def index_folder(qtbot, window, folder):
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(folder))


def test_named_widgets_for_automation(window):
    box = window.findChild(QLineEdit, "searchBox")
    view = window.findChild(QAbstractItemView, "resultsView")
    bar = window.findChild(QProgressBar, "indexProgress")
    assert box is window.search_box and view is window.view and bar is window.progress
    assert box.accessibleName() and view.accessibleName() and bar.accessibleName()


def test_empty_library_says_what_to_do(window):
    assert window.stack.currentWidget() is window.empty
    assert "No photo folders" in window.empty_label.text()
    assert window.empty_button.isVisibleTo(window)


def test_adding_a_folder_indexes_it_and_search_fills_the_grid(qtbot, window, tmp_path):
    paths = photos(tmp_path / "photos", 12)
    running, progress_shown = [], []
    window.indexing.runningChanged.connect(running.append)
    window.indexing.progress.connect(lambda _: progress_shown.append(window.progress.isVisible()))
    window.show()
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(tmp_path / "photos"))
    assert running == [True, False]
    assert progress_shown and all(progress_shown)
    assert "12 photos indexed" in window.index_label.text()
    assert not window.progress.isVisibleTo(window)

    window.search_box.setText("a photo")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000) as blocker:
        qtbot.keyClick(window.search_box, Qt.Key.Key_Return)
    assert blocker.args == [12]
    model = window.view.model()
    shown = [model.index(r).data(Qt.ItemDataRole.ToolTipRole) for r in range(model.rowCount())]
    assert sorted(shown) == sorted(map(str, paths))
    assert window.stack.currentWidget() is window.view


def test_typing_searches_after_a_pause(qtbot, window, tmp_path):
    index_folder(qtbot, window, _folder_with(tmp_path, 5))
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        qtbot.keyClicks(window.search_box, "red")
    assert window.view.model().rowCount() == 5
    qtbot.keyClick(window.search_box, Qt.Key.Key_Escape)
    assert window.search_box.text() == "" and window.view.model().rowCount() == 0


def _folder_with(tmp_path, n):
    photos(tmp_path / "photos", n)
    return tmp_path / "photos"


def test_find_similar_puts_that_photo_first(qtbot, window, tmp_path):
    index_folder(qtbot, window, _folder_with(tmp_path, 10))
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    target = window.view.model().index(6)
    window.view.setCurrentIndex(target)
    chosen = target.data(Qt.ItemDataRole.ToolTipRole)
    assert window.find_similar_action.text() == "Find similar"
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.find_similar_action.trigger()
    first = window.view.model().index(0).data(Qt.ItemDataRole.ToolTipRole)
    assert first == chosen


def test_dropping_an_image_searches_by_it(qtbot, window, tmp_path):
    index_folder(qtbot, window, _folder_with(tmp_path, 8))
    dropped = tmp_path / "photos" / "photo_03.jpg"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(
        QPoint(10, 10).toPointF(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.dropEvent(event)
    assert window.view.model().index(0).data(Qt.ItemDataRole.ToolTipRole) == str(dropped)


def test_thumbnails_arrive_off_the_gui_thread(qtbot, window, tmp_path):
    big = write_photo_jpeg(tmp_path / "big.jpg", width=900, height=600, seed=1)
    assert window.thumbnails.get(str(big)) is None  # a placeholder now, the real one later
    qtbot.waitUntil(lambda: window.thumbnails.get(str(big)) is not None, timeout=10_000)
    image = window.thumbnails.get(str(big))
    assert (image.width(), image.height()) == (320, 213)
    # And it went to the disk cache: a new loader finds it without decoding.
    cached = list((tmp_path / "lib" / "thumbnails").rglob("*.jpg"))
    assert len(cached) >= 1


def test_zoom_changes_the_grid(qtbot, window):
    before = window.view.iconSize().width()
    window.view.zoomBy.emit(1)
    assert window.view.iconSize().width() > before
    window._set_zoom(10_000)
    assert window.view.iconSize().width() == window.zoom.maximum()


def test_first_run_offers_three_ways_and_importing_a_model_enables_search(
    qtbot, tmp_path, random_package
):
    from PySide6.QtWidgets import QPushButton

    from photofind.gui.first_run import FirstRunDialog

    win = create_window(tmp_path / "lib", None)
    qtbot.addWidget(win)
    assert win.model is None and win.engine is None
    assert win.model_label.text() == "no model"
    dialog = FirstRunDialog(win)
    qtbot.addWidget(dialog)
    names = {b.objectName() for b in dialog.findChildren(QPushButton)}
    assert {"downloadButton", "importButton", "demoButton"} <= names
    dialog.findChild(QPushButton, "importButton").click()
    assert dialog.choice == "import"

    win._install_model(str(random_package))
    qtbot.waitUntil(lambda: win.model is not None, timeout=60_000)
    assert win.engine is not None and "CPU" in win.model_label.text()
    assert (tmp_path / "lib" / "models").is_dir()
    win.shutdown()
    win.close()
    win.library.close()


def test_watching_picks_up_a_new_photo_into_the_search_on_screen(qtbot, window, tmp_path):
    folder = _folder_with(tmp_path, 4)
    index_folder(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.watch_label.text().startswith("Watching 1 folder"))
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    assert window.view.model().rowCount() == 4

    new = write_photo_jpeg(folder / "new.jpg", width=120, height=90, seed=99)
    qtbot.waitUntil(lambda: window.view.model().rowCount() == 5, timeout=30_000)
    shown = {window.view.model().index(r).data(Qt.ItemDataRole.ToolTipRole) for r in range(5)}
    assert str(new) in shown
    assert window.library.status()["indexed"] == 5


def test_pause_holds_the_watchers_indexing_until_resumed(qtbot, window, tmp_path):
    index_folder(qtbot, window, _folder_with(tmp_path, 2))
    window.toggle_pause()
    assert window.indexing.paused and window.pause_button.text() == "Resume"
    for i in range(4):
        write_photo_jpeg(tmp_path / "photos" / f"more_{i}.jpg", width=120, height=90, seed=50 + i)
    # The watcher sees them and starts a pass, which waits at the pause.
    qtbot.waitUntil(lambda: window.library.status()["pending"] == 4, timeout=30_000)
    assert window.library.status()["indexed"] == 2
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.toggle_pause()
    assert window.library.status()["indexed"] == 6


def test_folders_panel_shows_counts_and_states_and_removes_after_asking(qtbot, window, tmp_path):
    index_folder(qtbot, window, _folder_with(tmp_path, 3))
    other = tmp_path / "other"
    other.mkdir()
    write_photo_jpeg(other / "x.jpg", width=100, height=80, seed=7)
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(other))
    qtbot.waitUntil(
        lambda: (
            window.folders_panel.rows()
            == [(str(other), "1", "watching"), (str(tmp_path / "photos"), "3", "watching")]
        ),
        timeout=10_000,
    )

    asked = []
    window.confirm = lambda title, text: asked.append(text) or False
    window.folders_panel.select(str(tmp_path / "photos"))
    window.folders_panel.remove_button.click()
    assert "3 photos" in asked[0] and len(window.library.folders()) == 2  # said no

    window.confirm = lambda title, text: True
    with qtbot.waitSignal(window.folderRemoved, timeout=30_000):
        window.folders_panel.remove_button.click()
    # Off the panel as soon as it is removed, not when a recount comes back: until then its
    # Remove button would fail ("Cannot remove folder", the soak's flake).
    assert [path for path, _, _ in window.folders_panel.rows()] == [str(other)]
    assert [f.path for f in window.library.folders()] == [str(other)]
    assert window.library.status()["indexed"] == 1
    qtbot.waitUntil(lambda: window.folders_panel.rows() == [(str(other), "1", "watching")])
    qtbot.waitUntil(lambda: window.watch_label.text().startswith("Watching 1 folder"))


def test_a_folder_that_vanishes_is_shown_offline(qtbot, window, tmp_path):
    import shutil

    index_folder(qtbot, window, _folder_with(tmp_path, 2))
    shutil.rmtree(tmp_path / "photos")
    qtbot.waitUntil(lambda: "offline" in window.watch_label.text(), timeout=20_000)
    qtbot.waitUntil(lambda: window.folders_panel.rows()[0][2] == "offline", timeout=10_000)


def _rows(window):
    model = window.view.model()
    return [model.index(r).data(Qt.ItemDataRole.ToolTipRole) for r in range(model.rowCount())]


def test_space_opens_a_preview_with_the_photos_details(qtbot, window, tmp_path):
    index_folder(qtbot, window, _folder_with(tmp_path, 3))
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    window.show()
    window.view.setFocus()
    window.view.setCurrentIndex(window.view.model().index(1))
    chosen = _rows(window)[1]
    with qtbot.waitSignal(window.previewShown, timeout=10_000):
        qtbot.keyClick(window.view, Qt.Key.Key_Space)
    preview = window.findChild(QDialog, "previewDialog")
    assert preview is not None and preview.isVisible()
    fields = preview.fields
    assert fields["path"].text() == chosen
    assert fields["dimensions"].text() == "200 × 150 pixels"
    assert fields["size"].text().endswith("KB") and fields["score"].text()
    assert fields["date"].text()[:2] == "20"
    assert not preview.image.pixmap().isNull()
    qtbot.keyClick(preview, Qt.Key.Key_Space)
    assert not preview.isVisible()


def test_filters_and_date_sort_reshape_the_results(qtbot, window, tmp_path):
    import os

    from PIL import Image

    a, b = tmp_path / "albums" / "a", tmp_path / "albums" / "b"
    photos(a, 3)
    b.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(b / "red.png")
    Image.new("RGB", (64, 48), (30, 30, 200)).save(b / "blue.png")
    for year, path in zip(
        (2019, 2020, 2021, 2022, 2023), sorted((tmp_path / "albums").rglob("*.*"))
    ):
        stamp = __import__("datetime").datetime(year, 6, 1).timestamp()
        os.utime(path, (stamp, stamp))
    index_folder(qtbot, window, a)
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(b))
    qtbot.waitUntil(lambda: window.filter_bar.folder.count() == 3)
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    assert len(_rows(window)) == 5

    bar = window.filter_bar
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.folder.setCurrentIndex(bar.folder.findData(str(b)))
    assert sorted(_rows(window)) == [str(b / "blue.png"), str(b / "red.png")]
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.folder.setCurrentIndex(0)
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.type.setCurrentIndex(bar.type.findText("JPEG"))
    assert all(p.endswith(".jpg") for p in _rows(window)) and len(_rows(window)) == 3
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.type.setCurrentIndex(0)

    from PySide6.QtCore import QDate

    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.after.setDate(QDate(2021, 1, 1))
    assert len(_rows(window)) == 3  # 2021, 2022, 2023
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.sort.setCurrentIndex(bar.sort.findData("oldest"))
    dated = sorted((tmp_path / "albums").rglob("*.*"))[2:]
    assert _rows(window) == [str(p) for p in dated]
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        bar.sort.setCurrentIndex(bar.sort.findData("newest"))
    assert _rows(window) == [str(p) for p in reversed(dated)]


def test_settings_apply_at_once_and_are_stored_with_the_library(
    qtbot, window, tmp_path, random_package
):
    import json

    from photofind.gui.settings import GuiSettings, SettingsDialog

    index_folder(qtbot, window, _folder_with(tmp_path, 2))
    dialog = SettingsDialog(window.settings, ["tiny-synthetic", "other"], window)
    qtbot.addWidget(dialog)
    dialog.thumbnail.setValue(96)
    dialog.reconcile.setValue(5)
    dialog.cutoff.setChecked(False)
    chosen = dialog.value()
    assert (chosen.thumbnail_size, chosen.reconcile_minutes, chosen.relevance_cutoff) == (
        96,
        5,
        False,
    )

    window.apply_settings(chosen)
    assert window.view.iconSize().width() == 96 and window.zoom.value() == 96
    assert window.relevance_cutoff is False
    assert window.indexing.watcher.options.reconcile_s == 300.0  # the running watcher's
    stored = json.loads((tmp_path / "lib" / "settings.json").read_text())
    assert stored["gui"]["thumbnail_size"] == 96 and stored["gui"]["reconcile_minutes"] == 5
    assert GuiSettings.load(tmp_path / "lib").relevance_cutoff is False

    # Another model (a package folder) is loaded off the GUI thread; the library re-indexes.
    before = window.model
    with qtbot.waitSignal(window.modelChanged, timeout=30_000):
        window.apply_settings(
            GuiSettings(model=str(random_package), provider="cpu", relevance_cutoff=False)
        )
    assert window.model is not before and "CPU" in window.model_label.text()
    qtbot.waitUntil(lambda: window.library.status()["indexed"] == 2, timeout=30_000)
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000) as blocker:
        window.run_search()
    assert blocker.args == [2]


def test_a_second_writer_is_told_and_may_open_read_only(qtbot, window, tmp_path, model):
    from photofind.gui.app import open_window

    index_folder(qtbot, window, _folder_with(tmp_path, 3))
    asked = []
    assert open_window(tmp_path / "lib", model, ask=lambda e: asked.append(e) or False) is None
    assert "lib" in str(asked[0]) and asked[0].pid is not None

    second = open_window(tmp_path / "lib", model, ask=lambda e: True)
    qtbot.addWidget(second)
    second.relevance_cutoff = False
    assert second.library.readonly and second.indexing is None
    assert "read-only" in second.windowTitle() and "Read-only" in second.watch_label.text()
    assert not second.add_folder_button.isEnabled()
    assert not second.folders_panel.add_button.isEnabled()
    second.search_box.setText("anything")
    with qtbot.waitSignal(second.searchFinished, timeout=10_000) as blocker:
        second.run_search()
    assert blocker.args == [3]
    second.shutdown()
    second.close()
    second.library.close()


def _error_dialogs():
    from PySide6.QtWidgets import QApplication, QMessageBox

    return [
        w
        for w in QApplication.topLevelWidgets()
        if isinstance(w, QMessageBox) and w.objectName() == "errorDialog" and w.isVisible()
    ]


def test_uncaught_errors_in_any_thread_are_logged_and_shown(qtbot, window, tmp_path, monkeypatch):
    import logging
    import sys

    from photofind.gui.app import log_to_file
    from photofind.gui.errors import ErrorReporter

    monkeypatch.setenv("PHOTOFIND_HOME", str(tmp_path / "home"))
    root_level = logging.getLogger().level
    handler = log_to_file()
    reporter = ErrorReporter(lambda: window).install()
    try:
        worker = threading.Thread(
            target=lambda: 1 / 0, name="doomed-worker"
        )  # a worker thread's error reaches the GUI thread by a queued signal
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: len(_error_dialogs()) == 1)
        box = _error_dialogs()[0]
        assert "ZeroDivisionError" in box.text() and "doomed-worker" in box.text()
        assert not box.isModal()
        box.close()

        try:
            raise ValueError("broken on the GUI thread")
        except ValueError:
            sys.excepthook(*sys.exc_info())
        qtbot.waitUntil(lambda: len(_error_dialogs()) == 1)
        assert "broken on the GUI thread" in _error_dialogs()[0].text()
        _error_dialogs()[0].close()
    finally:
        reporter.uninstall()
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)
        handler.close()
    text = (tmp_path / "home" / "logs" / "photofind.log").read_text()
    assert "uncaught exception in thread doomed-worker" in text
    assert "ZeroDivisionError" in text and "ValueError: broken on the GUI thread" in text
    assert window.isEnabled()  # the app keeps running


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_library(tmp_path_factory)


def test_typing_a_red_circle_fills_the_grid_with_red_circles_first(qtbot, demo):
    root, tiny, scenes = demo
    threads_before = threading.active_count()
    win = create_window(root, tiny, watch_options=FAST)
    qtbot.addWidget(win)
    try:
        win.show()
        qtbot.keyClicks(win.search_box, "a red circle")
        with qtbot.waitSignal(win.searchFinished, timeout=20_000):
            qtbot.keyClick(win.search_box, Qt.Key.Key_Return)
        shown = _rows(win)
        assert shown, "no results"

        def red_circle(path):
            return any(o.colour == "red" and o.shape == "circle" for o in scenes[path].objects)

        top = [red_circle(p) for p in shown[:10]]
        total = sum(red_circle(p) for p in scenes)
        assert total >= 5
        # The grid opens on red circles, and most of the library's red circles are in view
        # (the tiny model misses some: small ones, or half hidden by another shape).
        assert all(top[:3]), top
        assert sum(top) >= 0.6 * min(10, total), top
        # The ranking, not luck: red circles sit higher in the grid than the rest.
        ranks = [i for i, p in enumerate(shown) if red_circle(p)]
        others = [i for i, p in enumerate(shown) if not red_circle(p)]
        if others:
            assert statistics.mean(ranks) < statistics.mean(others)
    finally:
        win.shutdown()
        win.close()
        win.library.close()
    qtbot.waitUntil(lambda: threading.active_count() <= threads_before + 1, timeout=10_000)


def test_ctrl_q_closes_the_window(qtbot, window):
    """Ctrl+Q quits on every platform (Qt's StandardKey.Quit is empty on Windows)."""
    from PySide6.QtTest import QTest

    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)  # a window shortcut needs focus
    QTest.keyClick(window.search_box, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5_000)
