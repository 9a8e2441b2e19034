"""The dead ends a new user met in the first hour (issue 13), on real windows and libraries:
a window taller than the screen, a failed search that left the old grid, a cut-off that
hid true matches without a word, a cleared date that hid every photo, a preview without
keys, an Open that failed in silence, a summary cut off in a narrow window."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import date, datetime

import pytest

pytest.importorskip("PySide6.QtWidgets")

from gui_support import FAST, demo_library  # noqa: E402
from images import write_photo_jpeg  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QDate, QEvent, QPoint, QRect, Qt  # noqa: E402
from PySide6.QtGui import QHelpEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QToolTip  # noqa: E402

from photofind.gui import create_window  # noqa: E402
from photofind.gui.filters import NO_DATE, FilterBar  # noqa: E402
from photofind.gui.placement import fitted  # noqa: E402
from photofind.gui.results_header import CLEAR_FILTERS_LINK, SHOW_ALL_LINK  # noqa: E402


def _photos(folder, n, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_photo_jpeg(folder / f"photo_{i:02d}.jpg", width=200, height=150, seed=i, **kw)
        for i in range(n)
    ]


def _index(qtbot, window, folder):
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(folder))


def _search(qtbot, window, text):
    window.search_box.setText(text)
    with qtbot.waitSignal(window.searchFinished, timeout=20_000) as blocker:
        window.run_search()
    return blocker.args[0]


def _paths(window):
    return [row.path for row in window.results.rows()]


@contextlib.contextmanager
def _window(qtbot, root, model):
    """A window of its own on ``root``, closed (and its library with it) afterwards."""
    threads = threading.active_count()
    win = create_window(root, model, watch_options=FAST)
    qtbot.addWidget(win)
    try:
        yield win
    finally:
        win.shutdown()
        win.close()
        win.library.close()
        qtbot.waitUntil(lambda: threading.active_count() <= threads + 1, timeout=10_000)


# -- 1. the window fits the screen and opens where it was ---------------------------------


def test_fitted_moves_and_shrinks_a_frame_into_the_free_area():
    free = QRect(0, 30, 1280, 770)  # a 1280x800 screen under a 30 px panel
    assert fitted(QRect(0, 0, 1284, 840), free) == QRect(0, 30, 1280, 770)
    assert fitted(QRect(100, 100, 600, 400), free) == QRect(100, 100, 600, 400)
    assert fitted(QRect(5000, -200, 600, 400), free) == QRect(680, 30, 600, 400)


def test_the_window_frame_fits_the_screen_and_reopens_where_it_was(qtbot, tmp_path, model):
    root = tmp_path / "lib"
    with _window(qtbot, root, model) as win:
        free = win.screen().availableGeometry()
        win.show()
        qtbot.waitUntil(lambda: free.contains(win.frameGeometry()), timeout=5_000)
        assert win.statusBar().isVisible()
        bar = win.statusBar().geometry().translated(win.geometry().topLeft())
        assert free.contains(bar)  # the status bar is on the screen, not below its edge
        wanted = QRect(free.x() + 10, free.y() + 40, win.minimumSizeHint().width() + 10, 500)
        win.setGeometry(wanted)
        qtbot.waitUntil(lambda: win.geometry() == wanted, timeout=5_000)
    stored = json.loads((root / "settings.json").read_text())["gui"]["window"]
    assert stored == {
        "x": wanted.x(),
        "y": wanted.y(),
        "width": wanted.width(),
        "height": wanted.height(),
        "maximized": False,
    }
    with _window(qtbot, root, model) as again:
        assert again.geometry() == wanted  # before it is shown, so it opens there
        again.show()
        qtbot.waitUntil(lambda: again.isVisible(), timeout=5_000)
        assert again.geometry() == wanted

    # A place on a screen that is gone (or a size bigger than this one) is fitted in.
    data = json.loads((root / "settings.json").read_text())
    data["gui"]["window"].update(x=9000, y=-3000, width=5000, height=4000)
    (root / "settings.json").write_text(json.dumps(data))
    with _window(qtbot, root, model) as moved:
        moved.show()
        qtbot.waitUntil(lambda: free.contains(moved.frameGeometry()), timeout=5_000)


def test_a_broken_window_placement_is_ignored(qtbot, tmp_path, model):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "settings.json").write_text(json.dumps({"gui": {"window": {"x": "left"}}}))
    with _window(qtbot, root, model) as win:
        win.show()
        free = win.screen().availableGeometry()
        qtbot.waitUntil(lambda: free.contains(win.frameGeometry()), timeout=5_000)


# -- 2. a failed search replaces the results with the reason ------------------------------


def test_a_failed_search_replaces_the_results_with_the_reason(qtbot, window, tmp_path, caplog):
    _photos(tmp_path / "photos", 4)
    _index(qtbot, window, tmp_path / "photos")
    window.show()
    assert _search(qtbot, window, "anything") == 4
    assert window.stack.currentWidget() is window.view

    missing = tmp_path / "nowhere" / "gone.jpg"
    assert _search(qtbot, window, f'img:"{missing}"') == 0
    assert window.results.rowCount() == 0  # the old grid is gone, not left as the answer
    assert window.stack.currentWidget() is window.empty and window.empty_label.isVisible()
    page = window.empty_label.text()
    assert "The search failed" in page and "no such picture file" in page and "gone.jpg" in page
    assert window.header.summary.full_text().startswith("Search failed: ")
    assert not window.header.button.isVisible()
    # A clear message needs no traceback on the terminal.
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures and not any(r.exc_info for r in failures)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    assert _search(qtbot, window, f'img:"{broken}"') == 0
    assert "broken.jpg" in window.empty_label.text()
    assert "The search failed" in window.empty_label.text()
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2 and not any(r.exc_info for r in failures)

    assert _search(qtbot, window, "anything") == 4  # and a search that works shows again
    assert window.stack.currentWidget() is window.view
    assert window.header.summary.full_text() == "4 photos for “anything”"


# -- 3. the relevance cut-off says what it hides ---------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_library(tmp_path_factory)


def test_show_all_lifts_the_cut_off_and_says_how_many_lay_below(qtbot, demo):
    root, tiny, _ = demo
    with _window(qtbot, root, tiny) as win:
        win.show()
        kept = _search(qtbot, win, "a red circle")
        outcome = win.header.outcome
        assert 0 < kept < 200 and outcome.cut > 0 and outcome.threshold is not None
        summary = win.header.summary.full_text()
        assert f"{kept} photos for “a red circle”" in summary
        assert (
            f"{outcome.cut} more below the relevance cut-off ({outcome.threshold:.3f})" in summary
        )
        button = win.header.button
        assert button.isVisible() and button.text() == f"Show all {kept + outcome.cut}"
        with qtbot.waitSignal(win.searchFinished, timeout=20_000) as blocker:
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert blocker.args == [kept + outcome.cut]
        scores = [row.score for row in win.results.rows()]
        assert sum(s >= outcome.threshold for s in scores) == kept  # the same ones on top
        assert f"cut-off lifted: {kept} score {outcome.threshold:.3f} or more" in (
            win.header.summary.full_text()
        )
        # Scores in the grid's tooltip, against the cut-off...
        below = win.results.index(kept)  # the first below the cut
        rect = win.view.visualRect(below)
        win.view.scrollTo(below)
        rect = win.view.visualRect(below)
        event = QHelpEvent(
            QEvent.Type.ToolTip, rect.center(), win.view.viewport().mapToGlobal(rect.center())
        )
        QApplication.sendEvent(win.view.viewport(), event)
        tip = QToolTip.text()
        assert win.results.rows()[kept].path in tip
        assert f"score {scores[kept]:.3f} (below the relevance cut-off" in tip
        # ...and in the preview.
        win.view.setCurrentIndex(below)
        with qtbot.waitSignal(win.previewShown, timeout=10_000):
            win.show_preview()
        assert win.preview.fields["score"].text() == (
            f"{scores[kept]:.3f} (below the relevance cut-off {outcome.threshold:.3f})"
        )
        win.preview.close()
        # Back to what stands out; a new search starts with the cut-off again.
        with qtbot.waitSignal(win.searchFinished, timeout=20_000) as blocker:
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert blocker.args == [kept]
        with qtbot.waitSignal(win.searchFinished, timeout=20_000):
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert _search(qtbot, win, "a blue square") < 200 and win.header.outcome.show_all is False


def _photo_dates(win):
    from photofind.gui.filters import photo_date

    return {p.path: photo_date(p)[:10] for p in win.library.catalog.photos()}


def test_nothing_found_names_the_cut_off_and_the_filters_with_one_click_each(qtbot, demo):
    root, tiny, scenes = demo
    with _window(qtbot, root, tiny) as win:
        win.show()
        # A day with one photo on it, and that photo is no red circle: below the cut-off.
        dates = _photo_dates(win)
        per_day = {}
        for path, day in dates.items():
            per_day.setdefault(day, []).append(path)
        lonely = [
            (day, paths[0])
            for day, paths in sorted(per_day.items())
            if len(paths) == 1
            and not any(o.colour == "red" for o in scenes[paths[0]].objects)
            and len(scenes[paths[0]].objects) == 1
        ]
        day, path = lonely[len(lonely) // 2]
        when = QDate.fromString(day, "yyyy-MM-dd")
        bar = win.filter_bar
        bar.blockSignals(True)
        bar.after.setDate(when)
        bar.before.setDate(when)
        bar.blockSignals(False)
        assert _search(qtbot, win, "a red circle") == 0
        page = win.empty_label.text()
        assert "Nothing found for “a red circle”" in page
        assert "1 photo lies below the relevance cut-off" in page
        assert f"Only photos taken {day} to {day} were searched" in page
        assert "Clear the filters" in page
        assert SHOW_ALL_LINK in page and CLEAR_FILTERS_LINK in page
        with qtbot.waitSignal(win.searchFinished, timeout=20_000) as blocker:
            win.empty_label.linkActivated.emit(SHOW_ALL_LINK)
        assert blocker.args == [1] and _paths(win) == [path]
        assert win.header.button.text() == "Only those that stand out"
        with qtbot.waitSignal(win.searchFinished, timeout=20_000) as blocker:
            win.header.button.click()
        assert blocker.args == [0]
        # A type the library does not hold: nothing below any cut, the filter is why.
        with qtbot.waitSignal(win.searchFinished, timeout=20_000):
            bar.type.setCurrentIndex(bar.type.findText("GIF"))
        page = win.empty_label.text()
        assert "Nothing found" in page and "of type GIF" in page and "lies below" not in page
        assert win.header.summary.full_text().startswith("Nothing found for “a red circle” (")
        with qtbot.waitSignal(win.searchFinished, timeout=20_000) as blocker:
            win.empty_label.linkActivated.emit(CLEAR_FILTERS_LINK)
        assert bar.search_filter() is None and blocker.args[0] > 0
        assert bar.after.text() == "any" and bar.type.currentIndex() == 0


def test_find_similar_is_cut_and_keeps_the_photo_first(qtbot, demo):
    root, tiny, scenes = demo
    with _window(qtbot, root, tiny) as win:
        win.show()
        _search(qtbot, win, "a red circle")
        first = win.results.rows()[0]
        win.view.setCurrentIndex(win.results.index(0))
        with qtbot.waitSignal(win.searchFinished, timeout=20_000) as blocker:
            win.find_similar_action.trigger()
        shown = blocker.args[0]
        assert 1 < shown < 60  # was 200 of the 300, most unlike
        assert win.results.rows()[0].path == first.path
        outcome = win.header.outcome
        assert outcome.cut > 0 and win.header.button.text() == f"Show all {shown + outcome.cut}"
        # What the cut keeps looks like the photo more often than what it hides.
        pairs = {(o.colour, o.shape) for o in scenes[first.path].objects}

        def alike(path):
            return bool(pairs & {(o.colour, o.shape) for o in scenes[path].objects})

        kept = [alike(p) for p in _paths(win)[1:]]
        with qtbot.waitSignal(win.searchFinished, timeout=20_000):
            win.header.button.click()
        hidden = [alike(p) for p in _paths(win)[shown:]]
        assert sum(kept) / len(kept) > 2 * sum(hidden) / len(hidden)


def test_photofind_similar_is_cut_unless_all(demo, capsys):
    from photofind.cli import main

    root, _, _ = demo
    photo = sorted((root / "photos" / "garden").iterdir())[0]
    argv = ["--library", str(root), "--model", "tiny-synthetic", "--provider", "cpu"]
    assert main([*argv, "similar", str(photo), "-n", "100"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert 1 < len(lines) < 100 and lines[0].endswith(photo.name)
    assert "more below the relevance cut-off" in out.err and "--all shows them" in out.err
    assert main([*argv, "similar", str(photo), "-n", "100", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 100


# -- 7. a cleared date means "any" -------------------------------------------------------------


def test_a_cleared_date_means_any_and_a_step_from_any_starts_today(qtbot):
    bar = FilterBar()
    qtbot.addWidget(bar)
    bar.show()
    edit = bar.after
    with qtbot.waitSignal(bar.changed):
        edit.setDate(QDate(2021, 3, 4))
    assert bar.search_filter().after == "2021-03-04"
    edit.setFocus()
    edit.lineEdit().selectAll()
    with qtbot.waitSignal(bar.changed):
        qtbot.keyClick(edit, Qt.Key.Key_Delete)
    assert edit.date() == NO_DATE and edit.text() == "any"
    assert bar.search_filter() is None
    assert bar.describe() == []
    # Up from "any" (arrow key, wheel, the spin arrows) used to give 1901-01-01.
    with qtbot.waitSignal(bar.changed):
        qtbot.keyClick(edit, Qt.Key.Key_Up)
    assert edit.date() == QDate.currentDate()
    qtbot.keyClick(edit, Qt.Key.Key_Backspace)  # erasing part of a date keeps it a date
    bar.before.setFocus()
    assert edit.date() == QDate.currentDate()


def test_clearing_a_date_in_the_window_shows_every_photo_again(qtbot, window, tmp_path):
    import os

    paths = _photos(tmp_path / "photos", 4)
    for year, path in zip((2019, 2020, 2021, 2022), paths):
        stamp = datetime(year, 6, 1).timestamp()
        os.utime(path, (stamp, stamp))
    _index(qtbot, window, tmp_path / "photos")
    window.show()
    assert _search(qtbot, window, "anything") == 4
    bar = window.filter_bar
    with qtbot.waitSignal(window.searchFinished, timeout=10_000) as blocker:
        bar.after.setDate(QDate(2021, 1, 1))
    assert blocker.args == [2]
    bar.after.setFocus()
    bar.after.lineEdit().selectAll()
    with qtbot.waitSignal(window.searchFinished, timeout=10_000) as blocker:
        qtbot.keyClick(bar.after, Qt.Key.Key_Backspace)
    assert blocker.args == [4] and bar.after.text() == "any"
    assert date.today().year > 1901  # (what the cleared field used to hold)


# -- 8. the preview's keys, and small pictures scaled to fit ------------------------------------


def test_the_preview_moves_through_the_results_with_its_keys(qtbot, window, tmp_path):
    _photos(tmp_path / "photos", 3)
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tmp_path / "photos" / "dot.png")
    _index(qtbot, window, tmp_path / "photos")
    window.show()
    assert _search(qtbot, window, "anything") == 4
    order = _paths(window)
    window.view.setCurrentIndex(window.results.index(1))
    with qtbot.waitSignal(window.previewShown, timeout=10_000):
        window.show_preview()
    preview = window.preview
    assert preview.fields["path"].text() == order[1]

    def press(key, expected):
        with qtbot.waitSignal(window.previewShown, timeout=10_000) as blocker:
            qtbot.keyClick(preview, key)
        assert blocker.args == [expected] and preview.fields["path"].text() == expected
        assert window.view.currentIndex().row() == order.index(expected)

    press(Qt.Key.Key_Right, order[2])
    press(Qt.Key.Key_End, order[3])
    press(Qt.Key.Key_Home, order[0])
    qtbot.keyClick(preview, Qt.Key.Key_Left)  # at the first: it stays
    assert preview.fields["path"].text() == order[0] and preview.isVisible()
    press(Qt.Key.Key_Right, order[1])
    press(Qt.Key.Key_Left, order[0])

    # The 1x1 picture fills the preview instead of being a dot.
    window.view.setCurrentIndex(window.results.index_of(str(tmp_path / "photos" / "dot.png")))
    with qtbot.waitSignal(window.previewShown, timeout=10_000):
        window.show_preview()
    shown = preview.image.pixmap()
    side = min(preview.image.width(), preview.image.height())
    assert shown.width() / shown.devicePixelRatio() >= side - 1
    assert preview.fields["dimensions"].text() == "1 × 1 pixels"
    qtbot.keyClick(preview, Qt.Key.Key_Escape)
    assert not preview.isVisible()


# -- 9. Open says when no application took the photo ---------------------------------------


def _error_boxes():
    return [
        w
        for w in QApplication.topLevelWidgets()
        if isinstance(w, QMessageBox) and w.objectName() == "errorDialog" and w.isVisible()
    ]


def test_open_without_a_launcher_says_so_in_the_app(qtbot, window, tmp_path, monkeypatch):
    photo = _photos(tmp_path / "photos", 1)[0]
    (tmp_path / "empty-path").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))  # no xdg-open to be found
    window.show()
    window.open_photo(str(photo))
    qtbot.waitUntil(lambda: len(_error_boxes()) == 1, timeout=5_000)
    box = _error_boxes()[0]
    assert box.windowTitle() == "Cannot open photo_00.jpg"
    assert str(photo) in box.text() and "No application" in box.text()
    assert not box.isModal()
    box.close()
    window.show_in_folder(str(photo))
    qtbot.waitUntil(lambda: len(_error_boxes()) == 1, timeout=5_000)
    assert _error_boxes()[0].windowTitle() == "Cannot show photo_00.jpg"
    _error_boxes()[0].close()


# -- 10. the summary stays readable in a narrow window ---------------------------------------


def test_the_summary_and_show_all_stay_visible_at_the_minimum_width(qtbot, demo):
    root, tiny, _ = demo
    with _window(qtbot, root, tiny) as win:
        win.show()
        _search(qtbot, win, "a red circle")
        full = win.header.summary.full_text()
        assert "more below the relevance cut-off" in full
        for width in (1000, win.minimumSizeHint().width()):
            win.resize(width, 700)
            qtbot.waitUntil(lambda w=width: win.width() == w, timeout=5_000)
            qtbot.waitUntil(lambda: win.header.summary.width() > 0, timeout=5_000)
            summary, button = win.header.summary, win.header.button
            for widget in (summary, button):
                assert widget.isVisible()
                where = QRect(widget.mapTo(win, QPoint(0, 0)), widget.size())
                assert win.rect().contains(where), (width, widget.objectName(), where)
            shown = summary.text()
            if width == 1000:
                assert shown == full  # whole at 1000 px
            elif shown != full:
                assert shown.endswith("…") and shown[:-1] in full
            assert summary.fontMetrics().horizontalAdvance(shown) <= summary.width()
            assert summary.toolTip() == full
        # At the minimum width the filter bar lost its labels, not its boxes.
        bar = win.filter_bar
        assert all(w.isVisible() for w in (bar.folder, bar.after, bar.before, bar.type))
        assert not bar._labels[0].isVisible()


def test_the_engine_counts_every_photo_below_the_cut_off_not_only_those_fetched(demo):
    from photofind.library.library import Library
    from photofind.search import SearchEngine, SearchFilter

    root, tiny, _ = demo
    with Library.open(root, readonly=True) as library:
        engine = SearchEngine(library, tiny)
        results = engine.search("a red circle", k=50)
        kept = len(results)
        assert 0 < kept < 50 and results.cut == 50 - kept
        assert results.below == len(library.index) - kept
        garden = SearchFilter(folders=(str(root / "photos" / "garden"),))
        few = engine.search("a red circle", k=20, filter=garden)
        assert few.below == 100 - len(few)  # the garden album's 100 photos
        whole = engine.search("a red circle", k=1000)
        assert whole.below == whole.cut == len(library.index) - len(whole)
