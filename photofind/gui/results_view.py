"""The two widgets of the main window that take keys of their own: the grid and the query field."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import QLineEdit, QListView, QToolTip


class ResultsView(QListView):
    """The thumbnail grid; Ctrl+wheel zooms."""

    zoomBy = Signal(int)  # noqa: N815 - Qt naming
    previewRequested = Signal()  # noqa: N815
    painted = Signal()  # after each paint of the grid (benchmarks, tests)
    resized = Signal()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.resized.emit()

    def viewportEvent(self, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.ToolTip:  # the path and the score (ResultsModel)
            index = self.indexAt(event.pos())
            text = self.model().tooltip(index) if index.isValid() else ""
            if text:
                QToolTip.showText(event.globalPos(), text, self.viewport(), self.visualRect(index))
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        self.painted.emit()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.modifiers():
            self.previewRequested.emit()  # Space previews (as in Finder/Nautilus), not selects
            event.accept()
            return
        super().keyPressEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoomBy.emit(1 if event.angleDelta().y() > 0 else -1)
            event.accept()
            return
        super().wheelEvent(event)


class SearchBox(QLineEdit):
    """The query field; Esc clears it (and the results) wherever the focus came from."""

    escapePressed = Signal()  # noqa: N815 - Qt naming

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.escapePressed.emit()
            event.accept()
            return
        super().keyPressEvent(event)
