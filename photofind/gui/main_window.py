"""The main window: search box, results grid, folders, indexing progress."""

from __future__ import annotations

import dataclasses
import html
import logging
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QStackedWidget,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from photofind.gui.filters import FilterBar, photo_date, sort_rows
from photofind.gui.folders_panel import FoldersPanel, count_photos, folder_rows
from photofind.gui.placement import place, save_placement, saved_placement
from photofind.gui.results_header import (
    CLEAR_FILTERS_LINK,
    SHOW_ALL_LINK,
    SHOW_ALL_MAX,
    Outcome,
    ResultsHeader,
    empty_page_html,
)
from photofind.gui.results_model import PathRole, ResultsModel, Row
from photofind.gui.settings import GuiSettings
from photofind.gui.tasks import TaskRunner
from photofind.gui.thumbnails import ThumbnailLoader
from photofind.gui.watching import WatcherJob, health_text
from photofind.library.scanner import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


DEFAULT_RESULTS = 200
TYPE_DEBOUNCE_MS = 300
# While indexing, the shown search is re-run this often so new photos join it.
LIVE_REFRESH_MS = 1500


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


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


class MainWindow(QMainWindow):
    searchFinished = Signal(int)  # noqa: N815 - number of results shown
    folderRemoved = Signal(str)  # noqa: N815
    foldersShown = Signal()  # noqa: N815 - the folders panel was redrawn
    modelChanged = Signal(str)  # noqa: N815
    previewShown = Signal(str)  # noqa: N815 - the preview holds this photo (or its error)

    def __init__(
        self,
        library,
        model,
        engine,
        *,
        thumbnail_dir: Path | None = None,
        watch_options=None,
        staged_model=None,
    ):
        super().__init__()
        from photofind.library.watcher import WatchOptions

        self.library = library
        self.model = model
        #: the model a staged change re-indexes for; searches use self.model until the swap
        self.staged_model = staged_model
        self.engine = engine
        self.settings = self._load_settings()
        # A copy: the watcher reads it on every round, so a new interval applies without
        # a restart, and a caller's options object is never changed behind its back.
        self.watch_options = dataclasses.replace(
            watch_options or WatchOptions(), reconcile_s=60.0 * self.settings.reconcile_minutes
        )
        self.setWindowTitle("photofind")
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)
        place(self, saved_placement(library.root))  # inside the screen, where it was

        self.tasks = TaskRunner(self)
        self.thumbnails = ThumbnailLoader(thumbnail_dir)
        self.results = ResultsModel(self.thumbnails, self)
        self.indexing: WatcherJob | None = None
        self._query_serial = 0
        self._last_query = ""
        # The search on screen, and whether its relevance cut-off was lifted ("Show all");
        # a new search (another key) starts with the cut-off again.
        self._query_key: tuple | None = None
        self._show_all = False
        # The cut-off last seen for a query key: "Show all" runs without one and still says
        # how many of its results stand out (the cut-off does not depend on the filters).
        self._seen_threshold: tuple[tuple | None, float | None] = (None, None)
        #: the per-query relevance cut-off of photofind.search (a setting)
        self.relevance_cutoff = self.settings.relevance_cutoff
        self._closing = False
        self.preview = None

        self._build_search_bar()
        self._build_central()
        self._build_status_bar()
        self._build_folders_dock()
        self._build_actions()
        self._refresh_empty_state()
        self._set_zoom(self.settings.thumbnail_size)
        self._live_refresh = QTimer(self)
        self._live_refresh.setSingleShot(True)
        self._live_refresh.setInterval(LIVE_REFRESH_MS)
        self._live_refresh.timeout.connect(self._refresh_results_live)
        self._rerun = None  # re-runs the search on screen (live refresh, filters)
        self._make_indexing_job()
        self.refresh_folders()
        # Once the window shows: the first query's one-off costs, off the GUI thread.
        QTimer.singleShot(0, self._warm_up)
        if library.readonly:
            self.setWindowTitle("photofind (read-only)")
            for button in (self.add_folder_button, self.empty_button):
                button.setEnabled(False)
                button.setToolTip("Another photofind writes this library")
        from photofind.gui.first_run import ModelSetup

        self.model_setup = ModelSetup(self)  # first run, installs, "no model yet"

    def _make_indexing_job(self) -> None:
        """The watcher runs only on a writable library with a model (see gui/watching.py)."""
        if self.model is None or self.library.readonly:
            self.watch_label.setText(health_text(None, readonly=self.library.readonly))
            return
        self.indexing = WatcherJob(
            self.library, self.model, self.watch_options, self, staged_model=self.staged_model
        )
        self.indexing.progress.connect(self._on_index_progress)
        self.indexing.modelSwapped.connect(self._on_model_swapped)
        self.indexing.finished.connect(self._on_index_finished)
        self.indexing.runningChanged.connect(self._on_indexing_running)
        self.indexing.health.connect(self._on_watch_health)
        self.indexing.message.connect(lambda text: log.info("watcher: %s", text))
        self.watch_label.setText(health_text(None) if self._folders else "No folders to watch yet")

    # -- construction ---------------------------------------------------------------------

    def _build_search_bar(self) -> None:
        bar = QWidget(self)
        layout = QHBoxLayout(bar)
        layout.setContentsMargins(8, 8, 8, 4)
        self.search_box = SearchBox(bar)
        self.search_box.setObjectName("searchBox")
        self.search_box.setAccessibleName("Search photos")
        self.search_box.setPlaceholderText(
            "Describe a photo — “a red circle”, “beach + sunset − people” — or drop one here"
        )
        self.search_box.setClearButtonEnabled(True)
        self.search_box.returnPressed.connect(self.run_search)
        self.search_box.textEdited.connect(self._on_text_edited)
        self.search_box.escapePressed.connect(self.clear_search)
        layout.addWidget(self.search_box, 1)

        self.add_folder_button = QToolButton(bar)
        self.add_folder_button.setText("Add folder…")
        self.add_folder_button.setAccessibleName("Add a photo folder")
        self.add_folder_button.clicked.connect(self.choose_folder)
        layout.addWidget(self.add_folder_button)

        self.zoom = QSlider(Qt.Orientation.Horizontal, bar)
        self.zoom.setObjectName("zoomSlider")
        self.zoom.setAccessibleName("Thumbnail size")
        self.zoom.setRange(64, 320)
        self.zoom.setFixedWidth(140)
        self.zoom.setToolTip("Thumbnail size (Ctrl+wheel, Ctrl+= and Ctrl+-)")
        self.zoom.valueChanged.connect(self._set_zoom)
        layout.addWidget(self.zoom)

        self.settings_button = QToolButton(bar)
        self.settings_button.setObjectName("settingsButton")
        self.settings_button.setText("Settings…")
        self.settings_button.setAccessibleName("Settings")
        self.settings_button.clicked.connect(self.open_settings)
        layout.addWidget(self.settings_button)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(TYPE_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.run_search)
        self._bar = bar

    def _build_central(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._bar)
        self.filter_bar = FilterBar(central)
        self.filter_bar.changed.connect(self._on_filters_changed)
        layout.addWidget(self.filter_bar)
        self.header = ResultsHeader(central)
        self.header.showAllChanged.connect(self._set_show_all)
        layout.addWidget(self.header)

        self.stack = QStackedWidget(central)
        self.view = ResultsView(self.stack)
        self.view.setObjectName("resultsView")
        self.view.setAccessibleName("Search results")
        self.view.setModel(self.results)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(500)
        self.view.setSpacing(6)
        self.view.setWordWrap(False)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        # Double-click opens a photo; the names are not for editing (see ResultsModel).
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.activated.connect(lambda idx: self.open_photo(idx.data(PathRole)))
        self.view.previewRequested.connect(self.show_preview)
        self.view.resized.connect(self._fit_grid)
        self.view.zoomBy.connect(lambda step: self._set_zoom(self.zoom.value() + 24 * step))
        self.stack.addWidget(self.view)

        self.empty = QWidget(self.stack)
        empty_layout = QVBoxLayout(self.empty)
        empty_layout.setSpacing(14)
        empty_layout.addStretch(1)
        self.empty_label = QLabel(self.empty)
        self.empty_label.setObjectName("emptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.linkActivated.connect(self._on_empty_link)
        empty_layout.addWidget(self.empty_label)
        self.empty_button = QPushButton("Add folder…", self.empty)
        self.empty_button.setAccessibleName("Add a photo folder")
        self.empty_button.clicked.connect(self.choose_folder)
        empty_layout.addWidget(self.empty_button, 0, Qt.AlignmentFlag.AlignHCenter)
        empty_layout.addStretch(2)
        self.stack.addWidget(self.empty)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.index_label = QLabel("", status)
        self.index_label.setObjectName("indexLabel")
        self.progress = QProgressBar(status)
        self.progress.setObjectName("indexProgress")
        self.progress.setAccessibleName("Indexing progress")
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.pause_button = QToolButton(status)
        self.pause_button.setObjectName("pauseButton")
        self.pause_button.setText("Pause")
        self.pause_button.setAccessibleName("Pause indexing")
        self.pause_button.setVisible(False)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.model_label = QLabel(self._model_text(), status)
        self.model_label.setObjectName("modelLabel")
        self.watch_label = QLabel("", status)
        self.watch_label.setObjectName("watchLabel")
        self.watch_label.setAccessibleName("Folder watching")
        for label in (self.index_label, self.watch_label, self.model_label):
            label.setContentsMargins(6, 0, 6, 0)
        from photofind.gui.unreadable_dialog import UnreadableReport

        self.unreadable = UnreadableReport(self)  # "N could not be read": opens the list
        status.addWidget(self.index_label)
        status.addWidget(self.unreadable.button)
        status.addWidget(QWidget(status), 1)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.pause_button)
        status.addPermanentWidget(self.watch_label)
        status.addPermanentWidget(self.model_label)

    def _build_folders_dock(self) -> None:
        self.folders_panel = FoldersPanel(self)
        self.folders_panel.set_writable(not self.library.readonly)
        self.folders_panel.addRequested.connect(self.choose_folder)
        self.folders_panel.removeRequested.connect(self.ask_remove_folder)
        dock = QDockWidget("Folders", self)
        dock.setObjectName("foldersDock")
        dock.setWidget(self.folders_panel)
        # Not closable: there is no menu to bring a closed panel back.
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.resizeDocks([dock], [250], Qt.Orientation.Horizontal)
        self.folders_dock = dock
        # What the GUI thread shows of the catalog, read on a pool thread (refresh_folders):
        # the catalog's lock may be held by the watcher's writer for a long query, and the
        # GUI thread must never wait on it. Only this first read is made here, at start.
        self._folders = self.library.folders()
        self._folder_counts: dict = {}  # folder id -> Counter of statuses; {} until counted
        self._watch_status: dict | None = None
        self._counting = False
        self._recount_again = False
        self._recount_timer = QTimer(self)
        self._recount_timer.setSingleShot(True)
        self._recount_timer.setInterval(1000)
        self._recount_timer.timeout.connect(self.refresh_folders)
        self._show_folders()

    def _build_actions(self) -> None:
        self.find_similar_action = QAction("Find similar", self)
        self.find_similar_action.triggered.connect(self._find_similar_selected)
        self.open_action = QAction("Open", self)
        self.open_action.triggered.connect(lambda: self._for_current(self.open_photo))
        self.show_action = QAction("Show in folder", self)
        self.show_action.triggered.connect(lambda: self._for_current(self.show_in_folder))
        self.copy_path_action = QAction("Copy path", self)
        self.copy_path_action.triggered.connect(lambda: self._for_current(self.copy_path))
        self.copy_image_action = QAction("Copy image", self)
        self.copy_image_action.triggered.connect(lambda: self._for_current(self.copy_image))
        QShortcut(
            QKeySequence.StandardKey.ZoomIn, self, lambda: self._set_zoom(self.zoom.value() + 24)
        )
        QShortcut(QKeySequence("Ctrl+="), self, lambda: self._set_zoom(self.zoom.value() + 24))
        QShortcut(
            QKeySequence.StandardKey.ZoomOut, self, lambda: self._set_zoom(self.zoom.value() - 24)
        )
        QShortcut(QKeySequence.StandardKey.Paste, self, self.paste_image)
        # Ctrl+Q on every platform: StandardKey.Quit is empty on Windows (and offscreen).
        QShortcut(QKeySequence("Ctrl+Q"), self, self.close)

    def _model_text(self) -> str:
        if self.model is None:
            return "no model"
        info = self.model.info
        text = f"{info.name} · {info.provider.upper()}"
        if self.staged_model is not None:
            text += f" (re-indexing for {self.staged_model.info.name})"
        return text

    # -- search ---------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Pay the first query's one-off costs now, on an I/O thread, while the user reads
        the window: the text encoder's first run (ONNX Runtime sets itself up), the
        cut-off's background sample, the index's first walk. The first Enter then runs on
        the search thread as fast as any other; it never waits for this (the engine's own
        lock is held only while the sample is drawn, a few milliseconds)."""
        engine = self.engine
        if engine is None or self._closing:
            return
        cutoff = self.relevance_cutoff

        def work():
            vector = engine.text_vector("a photo")
            if cutoff:
                engine.threshold(vector, plain_text=True)
            engine.library.index.query(vector, 1)

        self.tasks.run(work, pool=self.tasks.io_pool)

    def _on_text_edited(self, _text: str) -> None:
        self._debounce.start()

    def clear_search(self) -> None:
        self._debounce.stop()
        self.search_box.clear()
        self._last_query = ""
        self._rerun = None
        self._query_key = None
        self.results.set_rows([])
        self.header.clear()
        self._refresh_empty_state()

    def run_search(self) -> None:
        self._debounce.stop()
        text = self.search_box.text().strip()
        if not text:
            self.clear_search()
            return
        if self.engine is None:
            self.model_setup.missing("search")
            return
        self._last_query = text
        self._rerun = self.run_search
        cutoff = self._cutoff_for(("text", text))
        k = self._result_count()
        flt = self.filter_bar.search_filter()
        self._submit(
            lambda: self.engine.search(text, k=k, cutoff=cutoff, filter=flt),
            f"for “{text}”",
        )

    def find_similar(self, photo_id: int | None, path: str) -> None:
        if self.engine is None:
            self.model_setup.missing("similar")
            return
        self.search_box.setText("")
        self._last_query = ""
        self._rerun = lambda: self.find_similar(photo_id, path)
        cutoff = self._cutoff_for(("similar", photo_id, path))
        k = self._result_count()
        flt = self.filter_bar.search_filter()
        self._submit(
            lambda: self.engine.similar(
                photo_id if photo_id is not None else path,
                k=k,
                filter=flt,
                cutoff=cutoff,
            ),
            f"like {os.path.basename(path)}",
        )

    def search_by_image(self, path: str) -> None:
        if self.engine is None:
            self.model_setup.missing("similar")
            return
        self._rerun = lambda: self.search_by_image(path)
        cutoff = self._cutoff_for(("image", path))
        k = self._result_count()
        flt = self.filter_bar.search_filter()
        self._submit(
            lambda: self.engine.similar(path, k=k, filter=flt, cutoff=cutoff),
            f"like {os.path.basename(path)}",
        )

    def _cutoff_for(self, key: tuple) -> bool:
        """Whether the search ``key`` runs with the relevance cut-off; a new one always does
        (when the setting is on), the one on screen not after "Show all"."""
        if key != self._query_key:
            self._query_key = key
            self._show_all = False
        return self.relevance_cutoff and not self._show_all

    def _result_count(self) -> int:
        """Results fetched: a screenful and more, or after "Show all" up to its most."""
        return SHOW_ALL_MAX if self._show_all else DEFAULT_RESULTS

    def _set_show_all(self, show_all: bool) -> None:
        """The header's button: the search on screen again, with or without its cut-off."""
        self._show_all = show_all
        if self._rerun is not None:
            self._rerun()

    def _on_empty_link(self, href: str) -> None:
        if href == SHOW_ALL_LINK:
            self._set_show_all(True)
        elif href == CLEAR_FILTERS_LINK:
            self.filter_bar.clear()  # its changed signal re-runs the search
        else:
            self._try_example(href)

    def _submit(self, fn, what: str) -> None:
        """Run a search off the GUI thread; only the newest one's results are shown."""
        self._query_serial += 1
        serial = self._query_serial
        order = self.filter_bar.sort_order()
        catalog = self.library.catalog
        key, show_all = self._query_key, self._show_all
        filters = tuple(self.filter_bar.describe())

        def work():
            found = fn()
            rows = [Row(r.path, float(r.score), r.photo_id) for r in found]
            if order != "relevance":
                ids = (r.photo_id for r in rows if r.photo_id is not None)
                photos = catalog.photos_by_id(ids)
                dates = {
                    row.path: photo_date(photos[row.photo_id]) if row.photo_id in photos else ""
                    for row in rows
                }
                rows = sort_rows(rows, order, lambda row: dates[row.path])
            return rows, found.threshold, found.below

        def done(result, error):
            if serial != self._query_serial:
                return  # a newer query was typed meanwhile
            if error is not None:
                self._show_failure(what, error)
                return
            rows, threshold, cut = result
            if threshold is not None:
                self._seen_threshold = (key, threshold)
            if show_all:
                seen_key, seen = self._seen_threshold
                threshold = seen if seen_key == key else None
            stand_out = None
            if show_all and threshold is not None:
                stand_out = sum(row.score >= threshold for row in rows)
            self.header.set_outcome(
                Outcome(what, len(rows), cut, threshold, show_all, stand_out, filters)
            )
            self.results.set_threshold(threshold)
            if rows != self.results.rows():
                # (A live refresh mostly finds the same photos: no reset, no repaint then.)
                current = self._current()
                self.results.set_rows(rows)
                if current is not None and current.path in self.results.paths():
                    self.view.setCurrentIndex(self.results.index_of(current.path))
            self._refresh_empty_state()
            self.searchFinished.emit(len(rows))

        self.tasks.run(work, done)

    def _show_failure(self, what: str, error: BaseException) -> None:
        """A search that failed: the reason replaces the results (an old grid under a
        passing status message looked like the answer)."""
        from photofind.errors import PhotofindError

        if isinstance(error, PhotofindError):
            log.warning("search %s failed: %s", what, error)  # a clear message: no traceback
        else:
            log.error("search %s failed", what, exc_info=error)
        self.results.set_rows([])
        self.header.set_outcome(Outcome(what, error=str(error) or type(error).__name__))
        self._refresh_empty_state()
        self.searchFinished.emit(0)

    def _on_filters_changed(self) -> None:
        if self._rerun is not None:
            self._rerun()

    def show_preview(self) -> None:
        """The large preview of the current photo, loaded off the GUI thread."""
        from photofind.gui.preview import PreviewDialog, load_preview

        row = self._current()
        if row is None:
            return
        if self.preview is None:
            self.preview = PreviewDialog(self)
            self.preview.stepRequested.connect(self._step_preview)
        dialog = self.preview
        dialog.threshold = self.header.threshold
        dialog.show_loading(row.path)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()  # Space and Esc then reach it, to close it again
        catalog = self.library.catalog

        def work():
            photo = catalog.photo(row.photo_id) if row.photo_id is not None else None
            date = photo_date(photo) if photo is not None else None
            return load_preview(row.path, row.score, date)

        def done(result, error):
            if error is not None:
                dialog.show_error(row.path, str(error))
            else:
                dialog.show_photo(*result)
            self.previewShown.emit(row.path)

        self.tasks.run(work, done, pool=self.tasks.io_pool)

    def _step_preview(self, step: str) -> None:
        """The preview's arrow keys, Home and End: the next photo of the grid, in its order."""
        count = self.results.rowCount()
        if count == 0:
            return
        row = self.view.currentIndex().row()
        target = {
            "next": min(count - 1, row + 1),
            "previous": max(0, row - 1),
            "first": 0,
            "last": count - 1,
        }[step]
        if target != row:
            self.view.setCurrentIndex(self.results.index(target))
            self.show_preview()

    # -- photo actions --------------------------------------------------------------------

    def _current(self):
        index = self.view.currentIndex()
        return self.results.row_at(index) if index.isValid() else None

    def _for_current(self, fn) -> None:
        row = self._current()
        if row is not None:
            fn(row.path)

    def _find_similar_selected(self) -> None:
        row = self._current()
        if row is not None:
            self.find_similar(row.photo_id, row.path)

    def _context_menu(self, pos) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.view.setCurrentIndex(index)
        menu = QMenu(self.view)
        menu.addAction(self.find_similar_action)
        menu.addSeparator()
        for action in (
            self.open_action,
            self.show_action,
            self.copy_path_action,
            self.copy_image_action,
        ):
            menu.addAction(action)
        menu.exec(self.view.viewport().mapToGlobal(pos))

    def open_photo(self, path: str) -> None:
        # openUrl says False when no launcher took it (no xdg-open, no default app): Qt
        # only warns on stderr, where nobody looking at the app reads it.
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self._cannot_launch(f"Cannot open {os.path.basename(path)}", path)

    def show_in_folder(self, path: str) -> None:
        try:
            if sys.platform == "darwin":
                subprocess.Popen(["open", "-R", path])
                return
            if sys.platform == "win32":
                subprocess.Popen(["explorer", "/select,", os.path.normpath(path)])
                return
        except OSError as exc:
            self._cannot_launch(f"Cannot show {os.path.basename(path)}", path, str(exc))
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path))):
            self._cannot_launch(f"Cannot show {os.path.basename(path)}", os.path.dirname(path))

    def _cannot_launch(self, title: str, path: str, reason: str = "") -> None:
        self.report_error(
            title,
            f"No application on this computer opened {path}"
            + (f" ({reason})" if reason else "")
            + ". The desktop's file launcher (xdg-open on Linux) may be missing, or no "
            "application is set for this kind of file. Copy path gives the file's place.",
        )

    def copy_path(self, path: str) -> None:
        QGuiApplication.clipboard().setText(path)

    def copy_image(self, path: str) -> None:
        image = QImage(path)
        if image.isNull():
            self.statusBar().showMessage(f"Cannot copy {path}: not readable", 5000)
            return
        QGuiApplication.clipboard().setImage(image)

    # -- drop and paste -------------------------------------------------------------------

    @staticmethod
    def _image_path(mime: QMimeData) -> str | None:
        for url in mime.urls():
            if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in IMAGE_EXTENSIONS:
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._image_path(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._image_path(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.search_by_image(path)

    def paste_image(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        path = self._image_path(mime)
        if path:
            self.search_by_image(path)

    # -- folders and indexing -------------------------------------------------------------

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a photo folder", str(Path.home()))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        """Add a photo folder, then watch and index it. The catalog write runs on a pool
        thread: the watcher may hold the catalog for a long reconcile meanwhile."""
        library = self.library

        def work():
            library.add_folder(folder)
            return library.folders()

        def done(folders, error):
            if self._closing:
                return
            if error is not None:
                self.report_error("Cannot add folder", str(error))
                return
            self._folders = folders
            self._show_folders()
            self._refresh_empty_state()
            self.refresh_folders()
            self.start_indexing()
            if self.model is None:
                self.model_setup.missing("folder")

        self.tasks.run(work, done, pool=self.tasks.io_pool)

    def report_error(self, title: str, text: str) -> None:
        """Say what went wrong without blocking the event loop (a non-modal box)."""
        from photofind.gui.errors import show_error_dialog

        log.warning("%s: %s", title, text)
        show_error_dialog(self, title, text)

    def confirm(self, title: str, text: str) -> bool:
        """Ask yes or no (tests replace it to answer without a modal dialog)."""
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def ask_remove_folder(self, path: str) -> None:
        n = self._photo_count(path)
        what = f"its {n:,} photos" if n else "it"
        if self.confirm(
            "Remove folder",
            f"Remove {path} from the library?\n\nphotofind forgets {what}; the files on "
            "disk are not touched.",
        ):
            self.remove_folder(path)

    def _photo_count(self, path: str) -> int:
        for folder in self._folders:
            if folder.path == path:
                return sum(self._folder_counts.get(folder.id, {}).values())
        return 0

    def remove_folder(self, path: str) -> None:
        """Forget a folder. Its photos and vectors are rewritten, so the watcher is stopped
        first and started again after (one writer at a time: see gui/watching.py)."""
        job = self.indexing
        watcher = job.detach() if job is not None else None
        self.index_label.setText(f"Removing {os.path.basename(path)}…")

        def work():
            if watcher is not None:
                watcher.stop()
            return self.library.remove_folder(path)

        def done(n, error):
            if self._closing:
                return
            if error is not None:
                self.report_error("Cannot remove folder", str(error))
            else:
                self.index_label.setText(f"Removed {path} ({n:,} photos forgotten)")
                if self.engine is not None:
                    self.engine.refresh()
            self.refresh_folders()
            self._refresh_empty_state()
            if self._rerun is not None:
                self._rerun()
            self.start_indexing()
            self.folderRemoved.emit(path)

        self.tasks.run(work, done, pool=self.tasks.io_pool)

    def refresh_folders(self) -> None:
        """Read the folders and count their photos off the GUI thread, then show them."""
        if self._counting:
            self._recount_again = True
            return
        self._counting = True
        library = self.library

        def done(result, error):
            self._counting = False
            if self._closing:
                return
            if error is None:
                self._folders, self._folder_counts = result
                self._show_folders()
                self._refresh_empty_state()
            else:
                log.warning("counting the library's photos failed: %s", error)
            if self._recount_again:
                self._recount_again = False
                self.refresh_folders()

        self.tasks.run(
            lambda: (library.folders(), count_photos(library.catalog)),
            done,
            pool=self.tasks.io_pool,
        )

    def _indexed_count(self) -> int | None:
        """Photos with a vector, as last counted (None before the first count)."""
        if not self._folder_counts:
            return None
        return sum(c["indexed"] for c in self._folder_counts.values())

    def _show_folders(self) -> None:
        job = self.indexing
        running = job is not None and job.running
        self.unreadable.set_count(sum(c["failed"] for c in self._folder_counts.values()))
        rows = folder_rows(
            self._folders,
            self._folder_counts,
            self._watch_status if self._watch_status is not None or job is None else {},
            job.last_progress if running else None,
            reconciling=running and job.reconciling,
            has_model=self.model is not None,
        )
        self.folders_panel.set_rows(rows)
        self.filter_bar.set_folders([r.path for r in rows])
        self.foldersShown.emit()

    def start_indexing(self) -> None:
        """Start watching (a reconcile of every folder, then indexing what is new)."""
        if self.indexing is not None and self._folders:
            self.indexing.start()

    def toggle_pause(self) -> None:
        if self.indexing is None:
            return
        if self.indexing.paused:
            self.indexing.resume()
            self.pause_button.setText("Pause")
        else:
            self.indexing.pause()
            self.pause_button.setText("Resume")
            self.index_label.setText("Indexing paused")

    def _on_indexing_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.pause_button.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.index_label.setText("Looking for new photos…")
            self.refresh_folders()  # the pass's photos are catalogued now: count them
        self._show_folders()

    def _on_watch_health(self, status: dict) -> None:
        self._watch_status = status
        self._show_folders()
        self.watch_label.setText(health_text(status))
        self.watch_label.setToolTip(
            "\n".join(f"{f['path']}: {f['mode']}" for f in status.get("folders", []))
            + (f"\n{status['last_error']}" if status.get("last_error") else "")
        )

    def _refresh_results_live(self) -> None:
        """Re-run the search on screen so photos indexed meanwhile join it — only while
        the user looks at the top of the list, so the grid never jumps under them."""
        if self._rerun is not None and self.view.verticalScrollBar().value() == 0:
            self._rerun()

    def _on_index_progress(self, p) -> None:
        if not self._recount_timer.isActive():
            self._recount_timer.start()
        self._show_folders()  # photos left, from the pass itself (the counts lag it)
        if self._rerun is not None and not self._live_refresh.isActive():
            self._live_refresh.start()
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        if not p.paused and getattr(p, "model", None):  # a staged model change
            self.index_label.setText(
                f"Re-indexing for model {p.model}: {p.done:,}/{p.total:,} · "
                f"{_fmt_eta(p.eta_s)} left" + (f" · {p.failed} failed" if p.failed else "")
            )
        elif not p.paused:
            self.index_label.setText(
                f"Indexing {p.done:,} / {p.total:,} · {p.images_per_s:.1f} photos/s · "
                f"{_fmt_eta(p.eta_s)} left" + (f" · {p.failed} failed" if p.failed else "")
            )

    def _on_index_finished(self, stats, error) -> None:
        if self._closing:
            return  # the library may be closed already
        if error is not None:
            self.index_label.setText("Indexing stopped")
            self.report_error("Indexing failed", str(error))
            return
        counts = self.indexing.last_counts  # counted on the watcher's thread
        if self.indexing.last_folder_counts is not None:
            self._folder_counts = self.indexing.last_folder_counts
        if counts is not None:
            # (What could not be read is the status bar's button beside it: it opens the list.)
            self.index_label.setText(f"{counts['indexed']:,} photos indexed")
        self.unreadable.refresh()
        self._refresh_empty_state()
        self.refresh_folders()
        self._live_refresh.stop()
        if self._rerun is not None:
            self._rerun()  # new photos may now match

    def _refresh_empty_state(self) -> None:
        if self.results.rowCount() > 0:
            self.stack.setCurrentWidget(self.view)
            return
        outcome = self.header.outcome
        if outcome is not None and outcome.error is not None:
            self.empty_label.setText(empty_page_html(outcome))
            self.empty_button.setVisible(False)
        elif not self._folders:
            self.empty_label.setText(
                "<h2>No photo folders yet</h2>"
                "<p>Add a folder of photos. photofind looks at each photo once, on this "
                "computer, and then finds them by what they show.</p>"
            )
            self.empty_button.setVisible(True)
        elif outcome is not None:  # a search ran: why it shows nothing
            self.empty_label.setText(empty_page_html(outcome))
            self.empty_button.setVisible(False)
        else:
            n = self._indexed_count()  # counted off the GUI thread; None until then
            what = f"{n:,} photos" if n is not None else "your photos"
            tries = " · ".join(
                f'<a href="{html.escape(q)}">{html.escape(q)}</a>' for q in self._examples()
            )
            self.empty_label.setText(
                f"<h2>Search {what}</h2><p>Describe what you are looking for, or drop "
                f"a photo here to find the ones like it.</p><p>Try {tries}</p>"
            )
            self.empty_button.setVisible(False)
        self.stack.setCurrentWidget(self.empty)

    def _examples(self) -> tuple[str, ...]:
        """Searches to click on the first screen: the demo model knows only its shapes."""
        from photofind.demo import DEMO_MODEL, FIRST_SCREEN_EXAMPLES

        if self.model is not None and self.model.info.name == DEMO_MODEL:
            return FIRST_SCREEN_EXAMPLES
        return ("a dog on a beach", "a birthday cake", "snow in the mountains")

    def _try_example(self, text: str) -> None:
        self.search_box.setText(text)
        self.run_search()

    # -- the model ------------------------------------------------------------------------

    def set_model(self, model) -> None:
        """Index with ``model`` from now on. A library holding the current model's vectors
        re-indexes in the background and searches with them until the swap."""
        from photofind.library.library import model_id
        from photofind.search import SearchEngine

        if self.indexing is not None:
            self.indexing.stop()  # the watcher of the old model must not write any more
            self.indexing.deleteLater()
            self.indexing = None
        staged = self.library.begin_model_change(model)
        held = self.library.catalog.model_id
        # (A change the stopped watcher completed may not have reached _on_model_swapped.)
        searching = [m for m in (self.model, self.staged_model) if m and model_id(m) == held]
        if staged and searching:
            # The library holds these vectors: they keep serving searches while the
            # watcher re-indexes for the new model (see _on_model_swapped).
            if searching[0] is not self.model:
                self.model = searching[0]
                self.engine = SearchEngine(self.library, self.model)
            self.staged_model = model
        else:
            self.model, self.staged_model = model, None
            self.engine = SearchEngine(self.library, model)
        self._make_indexing_job()
        self.model_label.setText(self._model_text())
        self.start_indexing()

    def _on_model_swapped(self, model) -> None:
        """A staged model change completed: search with the new model from now on."""
        from photofind.search import SearchEngine

        current = self.staged_model is model or (self.staged_model is None and self.model is model)
        if self._closing or not current:
            return  # from a watcher stopped since: set_model already saw the swap
        self.model, self.staged_model = model, None
        self.engine = SearchEngine(self.library, model)
        self.model_label.setText(self._model_text())
        self.index_label.setText(f"Re-indexed for model {model.info.name}: it is now in use")
        self.modelChanged.emit(model.info.name)
        if self._rerun is not None:
            self._rerun()

    def offer_model(self) -> None:
        """The first-run dialog: download, import, or the demo library (gui/first_run.py)."""
        self.model_setup.offer()

    def _install_model(self, source: str) -> None:
        self.model_setup.install(source)

    def open_demo(self) -> None:
        """Build (once) and open the demo library in a new window; close this one."""
        from photofind.clip import load_model
        from photofind.demo import DEMO_MODEL, build_demo_library, demo_root

        root = demo_root(self.library.root)
        self.index_label.setText("Making the demo library…")

        def work():
            model = load_model(DEMO_MODEL, provider="cpu", library=self.library.root)
            build_demo_library(root, model)
            return model

        def done(model, error):
            if error is not None:
                self.report_error("The demo could not be built", str(error))
                return
            from photofind.gui import create_window

            window = create_window(root, model)
            window.resize(self.size())  # this one was fitted to the screen
            window.setWindowState(self.windowState())
            window.show()
            window.start_indexing()  # the watcher: without it the demo says "Not watching"
            window.search_box.setText("a red circle")
            window.run_search()
            self.demo_window = window
            self.close()

        self.tasks.run(work, done, pool=self.tasks.io_pool)

    # -- settings ---------------------------------------------------------------------------

    def _load_settings(self) -> GuiSettings:
        try:
            return GuiSettings.load(self.library.root)
        except Exception as exc:  # noqa: BLE001 - a broken settings file must not stop the app
            log.warning("settings ignored: %s", exc)
            return GuiSettings()

    def open_settings(self) -> None:
        from photofind.gui.settings import SettingsDialog
        from photofind.models.store import ModelStore

        store = ModelStore(self.library.root)
        names = [m.name for m in store.list() if m.problem is None]
        # The model the status bar names (the one being re-indexed for, during a change),
        # not whatever settings.json says: --model or the demo may have chosen another.
        shown = self.staged_model or self.model
        current = dataclasses.replace(
            self.settings, model=shown.info.name if shown is not None else None
        )
        dialog = SettingsDialog(current, names, self)
        if dialog.exec() == SettingsDialog.DialogCode.Accepted:
            self.apply_settings(dialog.value())

    def apply_settings(self, new: GuiSettings) -> None:
        """Use ``new`` from now on and store it; a model or provider change reloads the
        model off the GUI thread (a different model re-indexes the library)."""
        old, self.settings = self.settings, new
        if not self.library.readonly:
            try:
                new.save(self.library.root, since=old)
            except Exception as exc:  # noqa: BLE001 - shown, the settings still apply now
                self.statusBar().showMessage(f"Settings not saved: {exc}", 8000)
        self._set_zoom(new.thumbnail_size)
        self.watch_options.reconcile_s = 60.0 * new.reconcile_minutes
        if new.relevance_cutoff != self.relevance_cutoff:
            self.relevance_cutoff = new.relevance_cutoff
            if self._rerun is not None:
                self._rerun()
        current_name = self.model.info.name if self.model is not None else None
        model_changed = new.model is not None and new.model != current_name
        provider_changed = new.provider != old.provider and self.model is not None
        if model_changed or provider_changed:
            self._load_model(new.model or current_name, new.provider)

    def _load_model(self, name: str, provider: str) -> None:
        from photofind.clip import load_model

        self.index_label.setText(f"Loading the model {name}…")
        root = self.library.root
        # A later choice supersedes this one: a slower earlier load must not win (each
        # set_model of a model the library does not hold begins a re-index).
        request = self._model_request = object()

        def done(model, error):
            if self._closing or request is not self._model_request:
                return
            if error is not None:
                self.index_label.setText("")
                self.report_error("The model could not be loaded", str(error))
                return
            self.set_model(model)
            if self.model is model:  # else it is re-indexed for; _on_model_swapped says when
                self.modelChanged.emit(model.info.name)

        self.tasks.run(
            lambda: load_model(name, provider=provider, library=root),
            done,
            pool=self.tasks.io_pool,
        )

    # -- zoom and shutdown ----------------------------------------------------------------

    def _set_zoom(self, size: int) -> None:
        size = max(self.zoom.minimum(), min(self.zoom.maximum(), size))
        if self.zoom.value() != size:
            self.zoom.setValue(size)  # re-enters through valueChanged
            return
        self.view.setIconSize(QSize(size, size))
        self.results.set_icon_size(size)
        self._fit_grid()

    def _fit_grid(self) -> None:
        """Share the row's spare width among its cells, so the grid fills the window
        instead of leaving a ragged empty band on the right."""
        size = self.view.iconSize().width()
        width = self.view.viewport().width() - 2 * self.view.spacing()
        columns = max(1, width // (size + 16))
        cell = max(size + 16, width // columns - 1)
        if self.view.gridSize() != QSize(cell, size + 36):
            self.view.setGridSize(QSize(cell, size + 36))

    def shutdown(self) -> None:
        """Stop background work; safe to call twice."""
        self._closing = True
        self._debounce.stop()
        self._live_refresh.stop()
        self._recount_timer.stop()
        if self.indexing is not None:
            self.indexing.stop()
        self.thumbnails.clear_queue()
        self.tasks.wait()
        self.thumbnails.wait()

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.library.readonly:
            save_placement(self, self.library.root)
        self.shutdown()
        super().closeEvent(event)
