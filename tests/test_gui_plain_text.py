"""User paths and messages show as written: a folder named like HTML (``<b>``, ``&amp;``)
is not rendered bold or unescaped in a tooltip, a label or a message box (issue 19's
residuals). Qt renders any text that looks like rich text as HTML unless told otherwise."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtGui import Qt, QTextDocument  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QWidget  # noqa: E402

HOSTILE = "/photos/<b>2024</b> & <i>more</i> &amp; a<br>b"


def shown(text: str) -> str:
    """What a tooltip with ``text`` shows, as Qt decides it (HTML when it looks like it)."""
    doc = QTextDocument()
    if Qt.mightBeRichText(text):
        doc.setHtml(text)
    else:
        doc.setPlainText(text)
    return doc.toPlainText()


def _box_label(box: QMessageBox, name: str = "qt_msgbox_label") -> QLabel:
    return box.findChild(QLabel, name)


def test_the_control_is_rendered_as_html_without_the_fix():
    """The premise: Qt takes this path for HTML and would show it changed."""
    assert Qt.mightBeRichText(HOSTILE)
    assert shown(HOSTILE) != HOSTILE


def test_a_tooltip_shows_text_literally_and_leaves_plain_text_alone():
    from photofind.gui.plaintext import tooltip

    assert shown(tooltip(HOSTILE)) == HOSTILE
    two_lines = f"{HOSTILE}: inotify\n/x/y  z: polling"
    assert shown(tooltip(two_lines)) == two_lines  # line breaks and double spaces kept
    assert tooltip("/photos/Tom & Jerry") == "/photos/Tom & Jerry"  # Qt shows it as is


def test_the_folders_panel_tooltip_shows_the_path(qtbot):
    from photofind.gui.folders_panel import FolderRow, FoldersPanel

    panel = FoldersPanel()
    qtbot.addWidget(panel)
    panel.set_rows([FolderRow(HOSTILE, 3, 0, "watching")])
    item = panel.tree.topLevelItem(0)
    assert shown(item.toolTip(0)) == HOSTILE
    assert panel.rows()[0][0] == HOSTILE  # the path itself is kept as data


def test_an_error_box_shows_the_path_literally(qtbot):
    from photofind.gui.errors import show_error_dialog

    parent = QWidget()
    qtbot.addWidget(parent)
    text = f"{HOSTILE} is not a folder"
    show_error_dialog(parent, "Cannot add folder", text)
    box = parent.findChild(QMessageBox, "errorDialog")
    label = _box_label(box)
    assert label.textFormat() == Qt.TextFormat.PlainText and label.text() == text
    box.close()


def test_remove_folders_question_and_the_status_bar_show_the_path(qtbot, window):
    seen = {}

    def answer():
        box = QApplication.activeModalWidget()
        label = _box_label(box)
        seen["question"] = (label.textFormat(), label.text())
        box.button(QMessageBox.StandardButton.No).click()

    QTimer.singleShot(0, answer)
    window.folders.ask_remove_folder(HOSTILE)  # modal: returns once answered (No)
    text_format, text = seen["question"]
    assert text_format == Qt.TextFormat.PlainText and f"Remove {HOSTILE} from" in text

    window.folders.on_watch_health(
        {"watching": 1, "folders": [{"path": HOSTILE, "mode": "inotify"}]}
    )
    assert shown(window.watch_label.toolTip()) == f"{HOSTILE}: inotify"
    for label in (window.index_label, window.watch_label):
        assert label.textFormat() == Qt.TextFormat.PlainText


def test_the_results_grid_tooltip_shows_the_photo_path(qtbot):
    from photofind.gui.results_model import ResultsModel, Row
    from photofind.gui.thumbnails import ThumbnailLoader

    loader = ThumbnailLoader(None, threads=1)
    model = ResultsModel(loader)
    model.set_rows([Row(HOSTILE + ".jpg", 0.31, 1, companions=(HOSTILE + ".cr2",))])
    index = model.index(0, 0)
    assert shown(model.tooltip(index)).startswith(HOSTILE + ".jpg\n")
    cell = model.data(index, Qt.ItemDataRole.ToolTipRole)
    assert shown(cell) == f"{HOSTILE}.jpg\nwith {HOSTILE}.cr2"
