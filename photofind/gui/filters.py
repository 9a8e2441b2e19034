"""The filter bar under the search box: folder, date range, file type, person, and the sort
order."""

from __future__ import annotations

import os
from datetime import datetime

from PySide6.QtCore import QDate, QEvent, QObject, QSize, Qt, Signal
from PySide6.QtWidgets import QComboBox, QDateEdit, QHBoxLayout, QLabel, QSizePolicy, QWidget

from photofind.formats.kinds import TYPE_LABELS
from photofind.gui.plaintext import tooltip
from photofind.search import SearchFilter

# (label, types) — what a person calls a type, and the type names SearchFilter expands
# (photofind.formats.kinds.TYPE_GROUPS: "raw" is every camera RAW extension).
FILE_TYPES = (("All types", ()), *((label, (key,)) for label, key in TYPE_LABELS))
SORTS = (("Relevance", "relevance"), ("Newest first", "newest"), ("Oldest first", "oldest"))
ANYONE = "Anyone"
# A QDateEdit cannot be empty: its minimum date stands for "no bound" and shows as "any".
NO_DATE = QDate(1900, 1, 1)


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of widening the window."""

    def __init__(self, parent=None, mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle):
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)

    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(tooltip(text))
        self._elide()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        metrics = self.fontMetrics()
        self.setText(metrics.elidedText(self._full, self._mode, self.width()))


class _OpenOnToday(QObject):
    """The calendar of an "any" date edit opens on this month, not on January 1900."""

    def __init__(self, edit: QDateEdit):
        super().__init__(edit)
        self._edit = edit

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if event.type() == QEvent.Type.Show and self._edit.date() == NO_DATE:
            today = QDate.currentDate()
            watched.setCurrentPage(today.year(), today.month())
        return False


class AnyDateEdit(QDateEdit):
    """A date bound whose lowest value, shown as "any", means no bound.

    Two ways out of "any" used to land on a date nobody chose: stepping up from it (arrow
    key, wheel) gave 1901-01-01, and a field emptied with Backspace kept its old date while
    showing nothing. Both hid photos without saying so: a step from "any" starts at today,
    and an emptied field is "any".
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.lineEdit().textChanged.connect(self._text_changed)

    def is_any(self) -> bool:
        return self.date() == NO_DATE

    def clear_date(self) -> None:
        """Back to "any" (emits dateChanged when there was a date)."""
        if self.date() != NO_DATE:
            self.setDate(NO_DATE)
        else:
            self.lineEdit().setText(self.specialValueText())

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt naming
        if self.is_any():
            if steps > 0:
                self.setDate(QDate.currentDate())
            return
        super().stepBy(steps)

    def _text_changed(self, text: str) -> None:
        if not text.strip():
            self.clear_date()

    def focusOutEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().focusOutEvent(event)
        # Left half-erased ("an" of "any"): the date is still "any", so say so again.
        if self.is_any() and self.lineEdit().text() != self.specialValueText():
            self.clear_date()


def _date_edit(parent, name: str, accessible: str) -> QDateEdit:
    edit = AnyDateEdit(parent)
    edit.setObjectName(name)
    edit.setAccessibleName(accessible)
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setMinimumDate(NO_DATE)
    edit.setSpecialValueText("any")
    edit.setDate(NO_DATE)
    edit.calendarWidget().installEventFilter(_OpenOnToday(edit))
    return edit


def sort_rows(rows, how: str, date_of):
    """Results in the order asked for; ``date_of(row)`` gives a sortable date string."""
    if how == "relevance":
        return list(rows)
    return sorted(rows, key=date_of, reverse=(how == "newest"))


def photo_date(photo) -> str:
    """A photo's date as the search filters see it: EXIF capture date, else file time."""
    if photo.capture_date:
        return photo.capture_date[:19]
    return datetime.fromtimestamp(photo.mtime_ns / 1e9).isoformat(timespec="seconds")


class FilterBar(QWidget):
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("filterBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 0, 8, 4)
        layout.setSpacing(6)
        # The bar's narrowest is without its labels (minimumSizeHint, _fit_labels), so the
        # window fits a narrow screen: 1280x800 at 150% is 853 points wide.
        layout.setSizeConstraint(QHBoxLayout.SizeConstraint.SetNoConstraint)

        self.folder = QComboBox(self)
        self.folder.setObjectName("folderFilter")
        self.folder.setAccessibleName("Only photos in folder")
        # A long folder name is shortened in the box (whole in its list and tooltip), so
        # it cannot widen the window past the screen.
        self.folder.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.folder.setMinimumContentsLength(6)
        self.folder.addItem("All folders", "")
        self.after = _date_edit(self, "afterFilter", "Taken on or after")
        self.before = _date_edit(self, "beforeFilter", "Taken on or before")
        self.type = QComboBox(self)
        self.type.setObjectName("typeFilter")
        self.type.setAccessibleName("File type")
        for label, exts in FILE_TYPES:
            self.type.addItem(label, exts)
        self.person = QComboBox(self)
        self.person.setObjectName("personFilter")
        self.person.setAccessibleName("Only photos of person")
        self.person.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        # Narrow at its narrowest: the window must still fit a 800 px wide screen.
        self.person.setMinimumContentsLength(2)
        self.person.addItem(ANYONE, "")
        self._labels: list[QLabel] = []
        self.sort = QComboBox(self)
        self.sort.setObjectName("sortOrder")
        self.sort.setAccessibleName("Sort results by")
        for label, key in SORTS:
            self.sort.addItem(label, key)

        self._person_label = None
        for label, widget in (
            ("Folder", self.folder),
            ("From", self.after),
            ("to", self.before),
            ("Type", self.type),
            ("Person", self.person),
            ("Sort", self.sort),
        ):
            text = QLabel(label, self)
            text.setBuddy(widget)
            widget.setToolTip(widget.accessibleName())  # what it is when the label is hidden
            layout.addWidget(text)
            layout.addWidget(widget)
            self._labels.append(text)
            if widget is self.person:
                self._person_label = text
        # No named person yet, nothing to choose: the person filter shows with the first.
        self._show_person(False)
        layout.addStretch(1)  # (what the grid shows is said above it: results_header.py)

        self.folder.currentIndexChanged.connect(self.changed)
        self.type.currentIndexChanged.connect(self.changed)
        self.person.currentIndexChanged.connect(self.changed)
        self.sort.currentIndexChanged.connect(self.changed)
        self.after.dateChanged.connect(self.changed)
        self.before.dateChanged.connect(self.changed)

    def _width(self, *, labels: bool) -> int:
        layout = self.layout()
        items = [layout.itemAt(i) for i in range(layout.count())]
        widgets = [it.widget() for it in items if it.widget() is not None]
        widgets = [w for w in widgets if not w.isHidden()]
        if not labels:
            widgets = [w for w in widgets if w not in self._labels]
        margins = layout.contentsMargins()
        return (
            sum(w.minimumSizeHint().width() for w in widgets)
            + layout.spacing() * max(0, len(widgets) - 1)
            + margins.left()
            + margins.right()
        )

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        hint = super().minimumSizeHint()
        return QSize(self._width(labels=False), hint.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        hint = super().sizeHint()
        return QSize(self._width(labels=True), hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_labels()

    def _fit_labels(self) -> None:
        """The labels go when the bar is too narrow for them (the boxes say what they hold
        in their tooltips and accessible names)."""
        show = self.width() >= self._width(labels=True)
        for label in self._labels:
            if label is self._person_label and self.person.isHidden():
                continue
            if label.isVisibleTo(self) != show:
                label.setVisible(show)

    def _show_person(self, show: bool) -> None:
        self.person.setVisible(show)
        self._person_label.setVisible(show and self.width() >= self._width(labels=True))
        self.updateGeometry()

    def set_folders(self, paths: list[str]) -> None:
        """Offer these folders; keep the one chosen when it is still there."""
        chosen = self.folder.currentData()
        current = [self.folder.itemData(i) for i in range(1, self.folder.count())]
        if current == list(paths):
            return
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItem("All folders", "")
        for path in paths:
            self.folder.addItem(os.path.basename(path.rstrip(os.sep)) or path, path)
            self.folder.setItemData(self.folder.count() - 1, path, 3)  # tooltip role
        index = self.folder.findData(chosen) if chosen else 0
        self.folder.setCurrentIndex(max(index, 0))
        self.folder.blockSignals(False)
        if chosen and index < 0:
            self.changed.emit()  # the chosen folder went away: the filter widened

    def set_people(self, names: list[str]) -> None:
        """Offer these named people (:class:`photofind.gui.people_controller`); keep the one
        chosen when they are still there."""
        chosen = self.person.currentData()
        current = [self.person.itemData(i) for i in range(1, self.person.count())]
        if current == list(names):
            return
        self.person.blockSignals(True)
        self.person.clear()
        self.person.addItem(ANYONE, "")
        for name in names:
            self.person.addItem(name, name)
        index = self.person.findData(chosen) if chosen else 0
        self.person.setCurrentIndex(max(index, 0))
        self.person.blockSignals(False)
        self._show_person(bool(names))
        if chosen and index < 0:
            self.changed.emit()  # renamed or merged away: the filter widened

    def search_filter(self) -> SearchFilter | None:
        folder = self.folder.currentData() or None
        after = self.after.date() if self.after.date() != NO_DATE else None
        before = self.before.date() if self.before.date() != NO_DATE else None
        types = self.type.currentData() or ()
        f = SearchFilter(
            folders=(folder,) if folder else (),
            after=after.toString("yyyy-MM-dd") if after else None,
            before=before.toString("yyyy-MM-dd") if before else None,
            types=tuple(types),
            people=(self.person.currentData(),) if self.person.currentData() else (),
        )
        return None if f.is_empty else f

    def describe(self) -> list[str]:
        """The active filters in words, each to follow "photos": "in folder holiday",
        "taken 2021-01-01 to 2021-06-30", "of type PNG"."""
        out = []
        if self.folder.currentIndex() > 0:
            out.append(f"in folder {self.folder.currentText()}")
        after, before = (
            None if edit.is_any() else edit.date().toString("yyyy-MM-dd")
            for edit in (self.after, self.before)
        )
        if after and before:
            out.append(f"taken {after} to {before}")
        elif after:
            out.append(f"taken on or after {after}")
        elif before:
            out.append(f"taken on or before {before}")
        if self.type.currentIndex() > 0:
            out.append(f"of type {self.type.currentText()}")
        if self.person.currentIndex() > 0:
            out.append(f"of {self.person.currentText()}")
        return out

    def clear(self) -> None:
        """Every filter back to "all"; ``changed`` is emitted once (when one was set)."""
        if not self.describe():
            return
        widgets = (self.folder, self.type, self.person, self.after, self.before)
        for widget in widgets:
            widget.blockSignals(True)
        self.folder.setCurrentIndex(0)
        self.type.setCurrentIndex(0)
        self.person.setCurrentIndex(0)
        self.after.clear_date()
        self.before.clear_date()
        for widget in widgets:
            widget.blockSignals(False)
        self.changed.emit()

    def sort_order(self) -> str:
        return self.sort.currentData()
