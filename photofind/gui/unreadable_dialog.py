"""The photos photofind could not read: "N could not be read" in the status bar opens them,
folder by folder, each with its reason, to copy, show in its folder, or try again.

A photo that fails (damaged, empty, not an image, a broken link) stays in the catalog as
failed with the reason; it is counted in its folder but is in no search. This is where the
user finds it. The list is read from the catalog on a pool thread (the watcher's writer may
hold the catalog's lock); "Try again" has the next scan look at the photos again as if they
had changed (:meth:`photofind.library.catalog.Catalog.recheck_failed`) and asks the watcher
for that scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from photofind.gui.plaintext import tooltip

PathRole = Qt.ItemDataRole.UserRole
IdRole = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class Unreadable:
    photo_id: int
    path: str
    reason: str


@dataclass(frozen=True)
class FolderUnreadable:
    folder: str
    photos: tuple[Unreadable, ...]


def reason_text(path: str, error: str | None) -> str:
    """The catalog's reason without the path it repeats (the list shows the path)."""
    if not error:
        return "could not be read (no reason was recorded)"
    return error.replace(f" {path}", "", 1)


def unreadable_photos(library) -> list[FolderUnreadable]:
    """The failed photos of ``library`` by folder (folders and photos in path order).
    Reads the catalog: run it off the GUI thread."""
    folders = {f.id: f.path for f in library.folders()}
    by_folder: dict[int, list[Unreadable]] = {}
    for photo in library.catalog.photos(status="failed"):
        by_folder.setdefault(photo.folder_id, []).append(
            Unreadable(photo.id, photo.path, reason_text(photo.path, photo.error))
        )
    return sorted(
        (
            FolderUnreadable(
                folders.get(folder_id, os.path.dirname(photos[0].path)),
                tuple(sorted(photos, key=lambda p: p.path)),
            )
            for folder_id, photos in by_folder.items()
        ),
        key=lambda f: f.folder,
    )


def count_text(n: int) -> str:
    return f"{n:,} could not be read"


class UnreadableDialog(QDialog):
    """The list; what its buttons ask for, the window does (signals)."""

    copyPathRequested = Signal(str)  # noqa: N815 - Qt naming
    showInFolderRequested = Signal(str)  # noqa: N815
    retryRequested = Signal(list)  # noqa: N815 - photo ids

    def __init__(self, parent=None, *, writable: bool = True):
        super().__init__(parent)
        self.setObjectName("unreadableDialog")
        self.setWindowTitle("Photos that could not be read")
        self.resize(760, 420)
        layout = QVBoxLayout(self)
        self.heading = QLabel("Reading the list…", self)
        self.heading.setObjectName("unreadableHeading")
        self.heading.setWordWrap(True)
        layout.addWidget(self.heading)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("unreadableList")
        self.tree.setAccessibleName("Photos that could not be read, by folder")
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Photo", "Why"])
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.tree.setColumnWidth(0, 260)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.itemDoubleClicked.connect(lambda item, _col: self._show(item))
        layout.addWidget(self.tree, 1)

        buttons = QHBoxLayout()
        self.copy_button = QPushButton("Copy path", self)
        self.copy_button.setObjectName("copyPathButton")
        self.copy_button.clicked.connect(lambda: self._emit_path(self.copyPathRequested))
        self.show_button = QPushButton("Show in folder", self)
        self.show_button.setObjectName("showInFolderButton")
        self.show_button.clicked.connect(lambda: self._emit_path(self.showInFolderRequested))
        self.retry_button = QPushButton("Try again", self)
        self.retry_button.setObjectName("retryButton")
        self.retry_button.setToolTip(
            "Look at these photos again: after you repaired or replaced them, or when a "
            "newer photofind can read them. (A photo that changes is looked at again anyway.)"
        )
        self.retry_button.clicked.connect(self._retry)
        self._writable = writable
        if not writable:
            self.retry_button.setToolTip("Another photofind writes this library")
        for button in (self.copy_button, self.show_button, self.retry_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self._ids: list[int] = []
        self._selection_changed()

    def set_folders(self, folders: list[FolderUnreadable]) -> None:
        chosen = self.selected_path()
        self.tree.clear()
        self._ids = [p.photo_id for f in folders for p in f.photos]
        n = len(self._ids)
        if n == 0:
            self.heading.setText("Every photo could be read.")
        else:
            where = f"in {len(folders)} folders" if len(folders) > 1 else "in 1 folder"
            photos = "1 photo" if n == 1 else f"{n:,} photos"
            self.heading.setText(
                f"<b>{photos} could not be read</b>, {where}. They are in no search until "
                "they can be read; photofind looks at each again when it changes."
            )
        for folder in folders:
            name = os.path.basename(folder.folder.rstrip(os.sep)) or folder.folder
            top = QTreeWidgetItem([f"{name} ({len(folder.photos):,})", folder.folder])
            top.setToolTip(0, tooltip(folder.folder))
            self.tree.addTopLevelItem(top)
            for photo in folder.photos:
                item = QTreeWidgetItem([os.path.relpath(photo.path, folder.folder), photo.reason])
                item.setData(0, PathRole, photo.path)
                item.setData(0, IdRole, photo.photo_id)
                item.setToolTip(0, tooltip(photo.path))
                item.setToolTip(1, tooltip(photo.reason))
                top.addChild(item)
                if photo.path == chosen:
                    self.tree.setCurrentItem(item)
            top.setExpanded(True)
        self._selection_changed()

    def set_note(self, text: str) -> None:
        self.heading.setText(text)

    def rows(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """What the list shows: (folder, [(path, reason), ...]) per folder."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            photos = [
                (top.child(j).data(0, PathRole), top.child(j).text(1))
                for j in range(top.childCount())
            ]
            out.append((top.text(1), photos))
        return out

    def select(self, path: str) -> None:
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            for j in range(top.childCount()):
                if top.child(j).data(0, PathRole) == path:
                    self.tree.setCurrentItem(top.child(j))

    def selected_path(self) -> str | None:
        item = self.tree.currentItem()
        return item.data(0, PathRole) if item is not None else None

    def _selection_changed(self) -> None:
        has_photo = self.selected_path() is not None
        self.copy_button.setEnabled(has_photo)
        self.show_button.setEnabled(has_photo)
        self.retry_button.setEnabled(bool(self._ids) and self._writable)

    def _emit_path(self, signal) -> None:
        path = self.selected_path()
        if path:
            signal.emit(path)

    def _show(self, item: QTreeWidgetItem) -> None:
        path = item.data(0, PathRole)
        if path:
            self.showInFolderRequested.emit(path)

    def _retry(self) -> None:
        if self._ids:
            self.retry_button.setEnabled(False)  # until the list is read again
            self.retryRequested.emit(list(self._ids))


class UnreadableReport(QObject):
    """The status bar's "N could not be read" button and the list it opens, for ``window``
    (a MainWindow: its task runner, library and photo actions)."""

    listShown = Signal()  # noqa: N815 - the list was (re)filled
    retried = Signal(int)  # photos the next scan looks at again

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.button = QToolButton(window.statusBar())
        self.button.setObjectName("unreadableButton")
        self.button.setAutoRaise(True)
        # It reads as the status message it is, and as a link: one click opens the list.
        self.button.setStyleSheet(
            "QToolButton { color: palette(link); text-decoration: underline; }"
        )
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.setToolTip("Which photos could not be read, and why")
        self.button.setAccessibleName("Show the photos that could not be read")
        self.button.setVisible(False)
        self.button.clicked.connect(self.open)
        self.count = 0
        self.dialog: UnreadableDialog | None = None
        self._reading = False
        self._read_again = False

    def set_count(self, n: int) -> None:
        """The catalog's count of failed photos (from the folder counts)."""
        if n == self.count:
            return
        self.count = n
        self.button.setText(count_text(n))
        self.button.setVisible(n > 0)
        if self.dialog is not None and self.dialog.isVisible():
            self.reload()

    def refresh(self) -> None:
        """Read the list again if it is open (a round of the watcher ended)."""
        if self.dialog is not None and self.dialog.isVisible():
            self.reload()

    def open(self) -> None:
        if self.dialog is None:
            self.dialog = UnreadableDialog(self.window, writable=not self.window.library.readonly)
            self.dialog.copyPathRequested.connect(lambda p: self.window.copy_path(p))
            self.dialog.showInFolderRequested.connect(lambda p: self.window.show_in_folder(p))
            self.dialog.retryRequested.connect(self.retry)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        self.reload()

    def reload(self) -> None:
        """Read the list off the GUI thread and show it (one read at a time)."""
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        library = self.window.library

        def done(folders, error):
            self._reading = False
            if self.window._closing or self.dialog is None:
                return
            if error is not None:
                self.dialog.set_note(f"The list could not be read: {error}")
            else:
                self.dialog.set_folders(folders)
                self.listShown.emit()
            if self._read_again:
                self._read_again = False
                self.reload()

        self.window.tasks.run(
            lambda: unreadable_photos(library), done, pool=self.window.tasks.io_pool
        )

    def retry(self, photo_ids: list[int]) -> None:
        catalog = self.window.library.catalog

        def done(n, error):
            if self.window._closing:
                return
            if error is not None:
                if self.dialog is not None:
                    self.dialog.set_note(f"Could not try again: {error}")
                return
            if self.dialog is not None:
                self.dialog.set_note(f"Looking at {n:,} photos again…")
            self.window.start_indexing()  # a full reconcile: the scan finds them changed
            self.retried.emit(n)

        self.window.tasks.run(
            lambda: catalog.recheck_failed(photo_ids), done, pool=self.window.tasks.io_pool
        )
