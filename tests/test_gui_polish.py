"""What a newcomer trying the app on a small or HiDPI screen runs into, on real widgets."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from images import write_photo_jpeg  # noqa: E402
from PySide6.QtCore import QDate, QPoint, QSize, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from photofind.gui.filters import FilterBar  # noqa: E402
from photofind.gui.placement import fit_to_screen  # noqa: E402
from photofind.gui.preview import PhotoDetails, PreviewDialog  # noqa: E402


def test_a_window_too_big_for_the_screen_is_fitted_to_it(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    free = widget.screen().availableGeometry().size()
    assert fit_to_screen(widget, free + QSize(400, 300))
    assert widget.width() <= free.width() and widget.height() <= free.height()
    assert not fit_to_screen(widget, QSize(200, 150))
    assert widget.size() == QSize(200, 150)


def test_the_preview_fits_the_screen_and_scales_a_small_photo_up_to_fit(qtbot):
    dialog = PreviewDialog()
    qtbot.addWidget(dialog)
    free = dialog.screen().availableGeometry().size()
    assert dialog.width() <= 0.85 * free.width() and dialog.height() <= 0.85 * free.height()
    dialog.show()
    small = QImage(120, 90, QImage.Format.Format_RGB888)
    small.fill(QColor("red"))
    dialog.show_loading("/photos/small.jpg")
    dialog.show_photo(small, PhotoDetails("/photos/small.jpg", None, 120, 90, 2048, 0.5))
    shown = dialog.image.pixmap()
    ratio = shown.devicePixelRatio()
    label = dialog.image.size()
    assert label.width() > 120  # there was room to enlarge it: it fills the label now
    assert shown.width() / ratio <= label.width() and shown.height() / ratio <= label.height()
    assert (
        max(shown.width() / ratio / label.width(), shown.height() / ratio / label.height()) > 0.98
    )
    assert abs(shown.width() / shown.height() - 120 / 90) < 0.02  # its shape kept


def test_an_any_date_opens_its_calendar_on_this_month_not_on_1900(qtbot):
    bar = FilterBar()
    qtbot.addWidget(bar)
    bar.show()
    edit = bar.after
    qtbot.mouseClick(
        edit, Qt.MouseButton.LeftButton, pos=QPoint(edit.width() - 6, edit.height() // 2)
    )
    calendar = edit.calendarWidget()
    qtbot.waitUntil(calendar.isVisible, timeout=5_000)
    today = QDate.currentDate()
    assert (calendar.yearShown(), calendar.monthShown()) == (today.year(), today.month())
    assert bar.search_filter() is None  # looking at the calendar chose no date


def test_first_screen_examples_search_and_find_similar_names_its_results(qtbot, window, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        write_photo_jpeg(folder / f"photo_{i:02d}.jpg", width=200, height=150, seed=i)
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(folder))
    window.show()
    # The first screen offers searches to click (links in the empty state).
    text = window.empty_label.text()
    assert "<a href=" in text
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.empty_label.linkActivated.emit("a dog on a beach")
    assert window.search_box.text() == "a dog on a beach"
    assert window.header.summary.full_text() == "4 photos for “a dog on a beach”"
    # After Find similar the search box is empty: the summary says what the grid shows.
    window.view.setCurrentIndex(window.results.index(1))
    name = window.results.row_at(window.results.index(1)).path.rsplit("/", 1)[-1]
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.find_similar_action.trigger()
    assert window.search_box.text() == ""
    assert window.header.summary.full_text() == f"4 photos like {name}"
    window.clear_search()
    assert window.header.summary.full_text() == ""
