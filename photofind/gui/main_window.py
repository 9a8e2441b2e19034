"""The main window: the widgets, composed with the controllers that drive them.

What the window does lives beside it, one module each: the searches and the empty page
(search_controller.py), folders and indexing status (folders_controller.py), the model and
its watcher (model_controller.py), the photo actions and keys (actions.py). While the
window runs nothing waits on the watcher, the catalog's lock or a photo's file: that work
runs on a pool thread (gui/tasks.py), so the event loop keeps turning. (Two reads stay here:
the folders once at start, the installed models' manifests when Settings opens; closing
waits for the work in flight, so the library closes consistent.) The window keeps the names
the rest of the app and the tests use, delegating to the controllers.
"""

from __future__ import annotations

import dataclasses
import logging

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from photofind.gui.actions import PhotoActions, image_path
from photofind.gui.filters import FilterBar
from photofind.gui.folders_controller import FoldersController
from photofind.gui.folders_panel import FoldersPanel
from photofind.gui.model_controller import ModelController
from photofind.gui.people_controller import PeopleController
from photofind.gui.placement import place, save_placement, saved_placement
from photofind.gui.plaintext import plain_box
from photofind.gui.results_header import ResultsHeader
from photofind.gui.results_model import ResultsModel
from photofind.gui.results_view import ResultsView, SearchBox
from photofind.gui.search_controller import SearchController
from photofind.gui.settings import GuiSettings
from photofind.gui.tasks import TaskRunner, WriteQueue
from photofind.gui.thumbnails import ThumbnailLoader

log = logging.getLogger(__name__)


def _to(controller: str, name: str):
    """A window method that runs the controller's (the names the app and tests call)."""

    def call(self, *args, **kwargs):
        return getattr(getattr(self, controller), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"See {controller}.{name}."
    return call


def _state(controller: str, name: str):
    """A window attribute that is the controller's."""
    return property(lambda self: getattr(getattr(self, controller), name))


class MainWindow(QMainWindow):
    searchFinished = Signal(int)  # noqa: N815 - number of results shown
    folderRemoved = Signal(str)  # noqa: N815
    foldersShown = Signal()  # noqa: N815 - the folders panel was redrawn
    modelChanged = Signal(str)  # noqa: N815
    #: a set_model is in effect (the model searched with; the new watcher runs)
    modelSet = Signal(object)  # noqa: N815
    previewShown = Signal(str)  # noqa: N815 - the preview holds this photo (or its error)
    #: ``create_window(library_dir, model)`` for the windows this one opens (the demo's);
    #: :func:`photofind.gui.app.create_window` hands itself in
    create_window = None

    def __init__(
        self,
        library,
        model,
        engine,
        *,
        thumbnail_dir=None,
        watch_options=None,
        staged_model=None,
        session=None,
    ):
        super().__init__()
        from photofind.library.watcher import WatchOptions

        self.library = library
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
        self.writes = WriteQueue(self.tasks)
        self.thumbnails = ThumbnailLoader(thumbnail_dir)
        self.results = ResultsModel(self.thumbnails, self)
        #: the per-query relevance cut-off of photofind.search (a setting)
        self.relevance_cutoff = self.settings.relevance_cutoff
        self._closing = False
        self.preview = None
        self.models = ModelController(self, model, engine, staged_model, session)
        self.search = SearchController(self)
        self.folders = FoldersController(self)

        self._build_search_bar()
        self._build_central()
        self._build_status_bar()
        self._build_folders_dock()
        self.people = PeopleController(self)  # the People dock, beside the folders
        self.photo_actions = PhotoActions(self)
        self.photo_actions.connect_view(self.view)
        self.search.connect_widgets()
        self.folders.show()
        self.search.refresh_empty_state()
        self._set_zoom(self.settings.thumbnail_size)
        self.models.make_indexing_job()
        self.folders.refresh()
        self.people.refresh()
        # Once the window shows: the first query's one-off costs, off the GUI thread.
        QTimer.singleShot(0, self.search.warm_up)
        if library.readonly:
            self.setWindowTitle("photofind (read-only)")
            for button in (self.add_folder_button, self.empty_button):
                button.setEnabled(False)
                button.setToolTip("Another photofind writes this library")
        from photofind.gui.first_run import ModelSetup

        self.model_setup = ModelSetup(self)  # first run, installs, "no model yet"

    # -- what the controllers own, under the window's old names -----------------------------

    model = _state("models", "model")
    staged_model = _state("models", "staged_model")
    engine = _state("models", "engine")
    indexing = _state("models", "indexing")
    _folders = _state("folders", "folders")
    _folder_counts = _state("folders", "counts")
    _last_query = _state("search", "last_query")
    _rerun = _state("search", "rerun")

    run_search = _to("search", "run_search")
    clear_search = _to("search", "clear_search")
    find_similar = _to("search", "find_similar")
    search_by_image = _to("search", "search_by_image")
    _refresh_empty_state = _to("search", "refresh_empty_state")
    choose_folder = _to("folders", "choose_folder")
    add_folder = _to("folders", "add_folder")
    ask_remove_folder = _to("folders", "ask_remove_folder")
    remove_folder = _to("folders", "remove_folder")
    refresh_folders = _to("folders", "refresh")
    toggle_pause = _to("folders", "toggle_pause")
    _show_folders = _to("folders", "show")
    _indexed_count = _to("folders", "indexed_count")
    _on_watch_health = _to("folders", "on_watch_health")
    set_model = _to("models", "set_model")
    start_indexing = _to("models", "start_indexing")
    open_demo = _to("models", "open_demo")
    show_preview = _to("photo_actions", "show_preview")
    open_photo = _to("photo_actions", "open_photo")
    show_in_folder = _to("photo_actions", "show_in_folder")
    copy_path = _to("photo_actions", "copy_path")
    copy_image = _to("photo_actions", "copy_image")
    paste_image = _to("photo_actions", "paste_image")

    def offer_model(self) -> None:
        """The first-run dialog: download, import, or the demo library (gui/first_run.py)."""
        self.model_setup.offer()

    def _install_model(self, source: str) -> None:
        self.model_setup.install(source)

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
        layout.addWidget(self.search_box, 1)

        self.add_folder_button = QToolButton(bar)
        self.add_folder_button.setText("Add folder…")
        self.add_folder_button.setAccessibleName("Add a photo folder")
        self.add_folder_button.clicked.connect(self.folders.choose_folder)
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
        self._bar = bar

    def _build_central(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._bar)
        self.filter_bar = FilterBar(central)
        layout.addWidget(self.filter_bar)
        self.header = ResultsHeader(central)
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
        empty_layout.addWidget(self.empty_label)
        self.empty_button = QPushButton("Add folder…", self.empty)
        self.empty_button.setAccessibleName("Add a photo folder")
        self.empty_button.clicked.connect(self.folders.choose_folder)
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
        self.pause_button.clicked.connect(self.folders.toggle_pause)
        self.model_label = QLabel(self.models.text(), status)
        self.model_label.setObjectName("modelLabel")
        self.watch_label = QLabel("", status)
        self.watch_label.setObjectName("watchLabel")
        self.watch_label.setAccessibleName("Folder watching")
        for label in (self.index_label, self.watch_label, self.model_label):
            label.setContentsMargins(6, 0, 6, 0)
            label.setTextFormat(Qt.TextFormat.PlainText)  # they name folders and errors
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
        self.folders_panel.addRequested.connect(self.folders.choose_folder)
        self.folders_panel.removeRequested.connect(self.folders.ask_remove_folder)
        dock = QDockWidget("Folders", self)
        dock.setObjectName("foldersDock")
        dock.setWidget(self.folders_panel)
        # Not closable: there is no menu to bring a closed panel back.
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.resizeDocks([dock], [250], Qt.Orientation.Horizontal)
        self.folders_dock = dock

    # -- messages ---------------------------------------------------------------------------

    def report_error(self, title: str, text: str) -> None:
        """Say what went wrong without blocking the event loop (a non-modal box)."""
        from photofind.gui.errors import show_error_dialog

        log.warning("%s: %s", title, text)
        show_error_dialog(self, title, text)

    def confirm(self, title: str, text: str) -> bool:
        """Ask yes or no (tests replace it to answer without a modal dialog)."""
        yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
        box = plain_box(QMessageBox.Icon.Question, title, text, yes | no, self)
        answer = box.exec()
        box.deleteLater()
        return answer == yes

    # -- drop ---------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if image_path(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = image_path(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.search.search_by_image(path)

    # -- settings ---------------------------------------------------------------------------

    def _load_settings(self) -> GuiSettings:
        try:
            return GuiSettings.load(self.library.root)
        except Exception as exc:  # noqa: BLE001 - a broken settings file must not stop the app
            log.warning("settings ignored: %s", exc)
            return GuiSettings()

    def open_settings(self) -> None:
        from photofind.gui.settings import SettingsDialog, installed_choices

        # The model the status bar names (the one being re-indexed for, during a change),
        # not whatever settings.json says: --model or the demo may have chosen another.
        shown = self.staged_model or self.model
        current = dataclasses.replace(
            self.settings, model=shown.info.name if shown is not None else None
        )
        # Open at once; the installed models' manifests are read on a pool thread.
        dialog = SettingsDialog(current, None, self)
        open_ = [True]
        root = self.library.root

        def listed(result, error):
            if not open_[0]:
                return  # closed before the list came
            if error is None:
                dialog.show_models(*result)
            else:
                log.warning("listing the installed models failed: %s", error)
                dialog.show_models_failed(str(error))

        self.tasks.run(lambda: installed_choices(root), listed, pool=self.tasks.io_pool)
        accepted = dialog.exec() == SettingsDialog.DialogCode.Accepted
        open_[0] = False
        value = dialog.value()
        dialog.deleteLater()
        if accepted:
            self.apply_settings(value)

    def apply_settings(self, new: GuiSettings) -> None:
        """Use ``new`` from now on and store it; a model or provider change reloads the
        model off the GUI thread (a different model re-indexes the library)."""
        off = "Turning face recognition off deletes every face and person found. Go on?"
        turning_off = self.settings.faces_enabled and not new.faces_enabled
        if turning_off and not self.confirm("Face recognition", off):
            new = dataclasses.replace(new, faces_enabled=True)
        old, self.settings = self.settings, new
        if not self.library.readonly:
            try:
                new.save(self.library.root, since=old)
            except Exception as exc:  # noqa: BLE001 - shown, the settings still apply now
                self.statusBar().showMessage(f"Settings not saved: {exc}", 8000)
        self._set_zoom(new.thumbnail_size)
        self.watch_options.reconcile_s = 60.0 * new.reconcile_minutes
        if new.faces_enabled != old.faces_enabled and not self.library.readonly:
            self.people.set_recognition(new.faces_enabled)
        if new.relevance_cutoff != self.relevance_cutoff:
            self.relevance_cutoff = new.relevance_cutoff
            self.search.run_again()
        current_name = self.model.info.name if self.model is not None else None
        model_changed = new.model is not None and new.model != current_name
        provider_changed = new.provider != old.provider and self.model is not None
        precision_changed = new.precision != old.precision and self.model is not None
        if model_changed or provider_changed or precision_changed:
            self.models.load_model(
                new.model or current_name,
                new.provider,
                new.precision,
                keep_variant=not (model_changed or precision_changed),
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
        """Stop background work; safe to call twice. (Closing may wait: for the watcher's
        batch in flight and for the tasks running, so the library closes consistent.)"""
        self._closing = True
        self.search.stop()
        self.folders.recount_timer.stop()
        if self.indexing is not None:
            self.indexing.stop()
        self.models.forget_analysers()  # the face worker processes end
        self.thumbnails.clear_queue()
        self.tasks.wait()
        self.thumbnails.wait()

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.library.readonly:
            save_placement(self, self.library.root)
        self.shutdown()
        super().closeEvent(event)
