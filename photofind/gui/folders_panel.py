"""The folders panel: each library folder with its photo count and what is happening to it."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from photofind.gui.plaintext import tooltip


@dataclass(frozen=True)
class FolderRow:
    path: str
    photos: int  # catalogued photos (indexed, pending, failed, offline)
    pending: int  # photos still to index (0: none, or not known yet)
    #: "scanning", "indexing", "re-indexing" (for a new model), "paused", "watching",
    #: "polling", "offline", "not watched", "needs a model"
    state: str


def count_photos(catalog) -> dict[int, Counter]:
    """Photos per folder id and status, by SQL aggregates (milliseconds at 100,000 photos).

    Still run it off the GUI thread: the catalog's lock may be held by the indexer's writer.
    """
    return {
        folder_id: Counter({s: n for s, n in counts.items() if n})
        for folder_id, counts in catalog.folder_counts().items()
    }


def folder_rows(
    folders,
    counts: dict[int, Counter],
    watch_status: dict | None,
    progress=None,
    *,
    reconciling: bool = False,
    has_model: bool = True,
) -> list[FolderRow]:
    """Join the catalog's folders, their counts and the watcher's view of them.

    ``watch_status`` is the watcher's last :meth:`~photofind.library.watcher.Watcher.status`
    ({}: a watcher that has not reported yet; None: no watcher). ``reconciling``: the
    watcher scans every folder now, so one not counted yet is being scanned. ``has_model``:
    without one nothing is indexed (and the watcher does not run). ``progress`` is the index pass running now (a :class:`~photofind.library.indexer.Progress`),
    or the last one to run. The counts were read a moment ago and lag a pass, so the pass
    decides what is being indexed: a folder with pending photos, or one not counted yet
    (just added: its photos were scanned in for this pass). With one such folder, its photos
    left are the pass's own, exact to the batch. Once the pass is done, what the counts
    still call pending was done by it.
    """
    modes = {f["path"]: f["mode"] for f in (watch_status or {}).get("folders", [])}
    running = progress is not None and progress.done < progress.total
    caught_up = progress is not None and not running
    # A model change re-indexes every photo (its progress names the new model).
    restaging = running and bool(getattr(progress, "model", ""))

    def pending_of(folder_id: int) -> int:
        return 0 if caught_up else counts.get(folder_id, Counter())["pending"]

    busy = {f.id for f in folders if pending_of(f.id) or (running and f.id not in counts)}
    rows = []
    for folder in folders:
        c = counts.get(folder.id, Counter())
        mode = modes.get(folder.path)
        pending = pending_of(folder.id)
        if mode == "offline" or (mode is None and not os.path.isdir(folder.path)):
            state = "offline"
        elif not has_model:
            state = "needs a model"
        elif restaging:
            pending = progress.total - progress.done if len(folders) == 1 else 0
            state = "paused" if progress.paused else "re-indexing"
        elif folder.id in busy and (running or pending):
            if running and len(busy) == 1:
                pending = progress.total - progress.done
            state = "paused" if running and progress.paused else "indexing"
        elif watch_status is not None and (
            mode is None or (reconciling and folder.id not in counts)
        ):
            state = "scanning"  # added since the watcher last counted: this round scans it
        elif mode in ("inotify", "native"):
            state = "watching"
        elif mode == "polling":
            state = "polling"
        else:
            state = "not watched"
        rows.append(FolderRow(folder.path, sum(c.values()), pending, state))
    return rows


def state_text(row: FolderRow) -> str:
    """The State column: what happens to the folder, with its photos left to index."""
    if row.state in ("indexing", "re-indexing", "paused") and row.pending:
        return f"{row.state} ({row.pending:,} left)"
    return row.state


class FoldersPanel(QWidget):
    """A list of folders with Add and Remove; the window does the work on the signals."""

    addRequested = Signal()  # noqa: N815 - Qt naming
    removeRequested = Signal(str)  # noqa: N815

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("foldersPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("foldersList")
        self.tree.setAccessibleName("Library folders")
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Folder", "Photos", "State"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.tree, 1)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add…", self)
        self.add_button.setObjectName("addFolderButton")
        self.add_button.setAccessibleName("Add a photo folder")
        self.add_button.clicked.connect(self.addRequested)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setObjectName("removeFolderButton")
        self.remove_button.setAccessibleName("Remove the selected folder")
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self._remove_selected)
        self.tree.itemSelectionChanged.connect(
            lambda: self.remove_button.setEnabled(self.selected() is not None and self._writable)
        )
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self._writable = True
        self._rows: list[FolderRow] | None = None

    def set_writable(self, writable: bool) -> None:
        self._writable = writable
        self.add_button.setEnabled(writable)
        self.remove_button.setEnabled(writable and self.selected() is not None)

    def selected(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def select(self, path: str) -> None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == path:
                self.tree.setCurrentItem(item)

    def rows(self) -> list[tuple[str, str, str]]:
        """What the panel shows: (path, count, state) per folder."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            out.append((item.data(0, Qt.ItemDataRole.UserRole), item.text(1), item.text(2)))
        return out

    def set_rows(self, rows: list[FolderRow]) -> None:
        if rows == self._rows:
            return  # the watcher's health arrives every second, mostly unchanged
        self._rows = list(rows)
        chosen = self.selected()
        self.tree.clear()
        for row in rows:
            name = os.path.basename(row.path.rstrip(os.sep)) or row.path
            item = QTreeWidgetItem([name, f"{row.photos:,}", state_text(row)])
            item.setData(0, Qt.ItemDataRole.UserRole, row.path)
            item.setToolTip(0, tooltip(row.path))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
        if chosen:
            self.select(chosen)

    def _remove_selected(self) -> None:
        path = self.selected()
        if path:
            self.removeRequested.emit(path)
