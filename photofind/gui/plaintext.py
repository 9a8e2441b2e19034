"""User text (paths, file names, error messages) shown as written, never read as HTML.

Qt guesses: a label, a message box or a tooltip whose text looks like rich text
(``Qt.mightBeRichText``: something like a tag before the first line break) is rendered as
HTML, so a folder named ``<b>2024</b> & more`` would show in bold, and ``&amp;`` as ``&``.
Labels and boxes take ``Qt.TextFormat.PlainText``; a tooltip has no such setting, so
:func:`tooltip` escapes a text Qt would take for HTML and leaves every other one as it is.
"""

from __future__ import annotations

from PySide6.QtGui import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def tooltip(text: str) -> str:
    """``text`` as a tooltip that shows it literally (spaces and line breaks kept)."""
    if not Qt.mightBeRichText(text):
        return text
    return Qt.convertFromPlainText(text, Qt.WhiteSpaceMode.WhiteSpacePre)


def plain_box(
    icon: QMessageBox.Icon,
    title: str,
    text: str,
    buttons: QMessageBox.StandardButton,
    parent: QWidget | None = None,
) -> QMessageBox:
    """A message box whose text (and informative text) is plain."""
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    return box
