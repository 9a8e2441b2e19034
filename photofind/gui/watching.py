"""The app keeps its library equal to the disk with the same engine as ``photofind watch``.

Who writes the library while the app runs — thought through, since the :class:`Library`
object is shared by the GUI thread, the search pool and the watcher:

- **The watcher's worker thread is the only writer of photos and vectors.** It reconciles
  folders with the disk and runs every index pass (:meth:`Library.index_pending`). The GUI
  never scans or indexes by itself any more.
- **Readers run alongside it.** Searches (search pool) and the folders panel read the
  catalog, whose calls each take its internal lock, and the vector index, which supports
  queries while its writer adds (see ``VectorIndex``). A search during indexing simply sees
  the photos committed so far: results appear while indexing continues.
- **A new folder row** (``add_folder``) is written beside the watcher, on a pool thread
  (never the GUI thread: the watcher may hold the catalog for a long reconcile). It is a
  single catalog transaction that touches no photo and no vector; the worker notices the new
  folder at its next health check (once a second), starts watching it and reconciles it.
- **Anything that rewrites photos or vectors from the GUI** (removing a folder, switching
  the model) first detaches the watcher (:meth:`WatcherJob.detach`), stops it on a pool
  thread (the batch in flight is committed), does its work there, and then starts a new
  watcher: at every moment exactly one thread may write.

Pause and progress: the watcher starts index passes itself, so the GUI cannot hand each
pass an :class:`IndexControl`. :class:`ObservedLibrary` sees every pass instead (it *is* the
library the watcher calls): it reports the indexer's progress to listeners and applies the
GUI's pause to whichever pass is running, or the next one to start.

A model change re-indexes on the same thread: the :class:`Watcher` runs the passes of the
window's :class:`~photofind.library.model_session.ModelSession` in its order (new photos
with the active model, then the re-index for the staged one), with the same rules for giving
way to changes and for stopping. Searches keep the active model meanwhile; at the swap the
job emits ``modelSwapped`` and the window opens a new engine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from photofind.library.indexer import IndexControl, Progress
from photofind.library.library import Library
from photofind.library.model_session import ModelSession
from photofind.library.watcher import BatchReport, Watcher, WatchOptions

log = logging.getLogger(__name__)

HEALTH_POLL_MS = 1000


class ObservedLibrary(Library):
    """A :class:`Library` whose index passes, whoever starts them, can be observed and paused.

    Plain Python (no Qt): ``listeners`` are called on the indexing thread.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.listeners: list[Callable[[Progress], None]] = []
        #: called on the indexing thread with the model a staged change made active
        self.swap_listeners: list[Callable[[object], None]] = []
        self._gate = threading.Lock()
        self._paused = False
        self._control: IndexControl | None = None

    def index_pending(self, model, *, progress=None, control=None, **options):
        return self._observed(super().index_pending, model, progress, control, options)

    def reindex_staged(self, model, *, progress=None, control=None, **options):
        if control is not None and control is self._control:
            # Called by index_pending (a model change it finishes): already observed.
            stats = super().reindex_staged(model, progress=progress, control=control, **options)
        else:
            stats = self._observed(super().reindex_staged, model, progress, control, options)
        if stats.swapped:
            for listener in list(self.swap_listeners):
                listener(model)
        return stats

    def _observed(self, run, model, progress, control, options):
        control = control or IndexControl()
        with self._gate:
            self._control = control
            if self._paused:
                control.pause()

        def report(p: Progress) -> None:
            for listener in list(self.listeners):
                listener(p)
            if progress is not None:
                progress(p)

        try:
            return run(model, progress=report, control=control, **options)
        finally:
            with self._gate:
                self._control = None

    def pause_indexing(self) -> None:
        with self._gate:
            self._paused = True
            if self._control is not None:
                self._control.pause()

    def resume_indexing(self) -> None:
        with self._gate:
            self._paused = False
            if self._control is not None:
                self._control.resume()

    @property
    def indexing_paused(self) -> bool:
        return self._paused


class WatcherJob(QObject):
    """Runs a :class:`Watcher` for the window and turns what it does into signals.

    ``progress(Progress)`` during index passes; ``runningChanged(bool)`` when indexing starts
    and stops; ``finished(BatchReport, None)`` after each round that left nothing pending
    (the library caught up with the disk); ``health(dict)`` every second with
    :meth:`Watcher.status`; ``message(str)`` for the watcher's one-line news.
    """

    progress = Signal(object)
    runningChanged = Signal(bool)  # noqa: N815 - Qt naming
    #: a staged model change completed: the model (a ClipModel) is now the library's
    modelSwapped = Signal(object)  # noqa: N815
    _swapped_from_worker = Signal(object)
    finished = Signal(object, object)
    batchDone = Signal(object)  # noqa: N815
    health = Signal(dict)
    message = Signal(str)
    _progress_from_worker = Signal(object)
    _batch_from_worker = Signal(object)
    _message_from_worker = Signal(str)

    def __init__(
        self,
        library: ObservedLibrary,
        session: ModelSession,
        options: WatchOptions,
        parent=None,
        *,
        analysers=(),
    ):
        super().__init__(parent)
        self.library = library
        #: which model indexes and which is staged; the watcher's worker runs its passes
        #: (and it changes at a swap, on that thread: the window keeps its own copy)
        self.session = session
        #: what the watcher runs beside CLIP (a callable: called on its thread)
        self.analysers = analysers
        self.options = options
        self.watcher: Watcher | None = None
        self.last_progress: Progress | None = None
        #: photos by status after the last round, counted on the watcher's thread (the GUI
        #: thread never waits on the catalog's lock, which the writer may hold)
        self.last_counts: dict[str, int] | None = None
        #: photos per folder id and status after the last round (as count_photos), likewise
        self.last_folder_counts: dict | None = None
        self._reconciling = self._full_seen = False
        self._indexing = False
        # Worker-thread callbacks only emit; Qt queues them onto the GUI thread.
        self._progress_from_worker.connect(self._on_progress)
        self._batch_from_worker.connect(self._on_batch)
        self._message_from_worker.connect(self.message)
        self._swapped_from_worker.connect(self._on_swapped)
        self._timer = QTimer(self)
        self._timer.setInterval(HEALTH_POLL_MS)
        self._timer.timeout.connect(self._poll_health)

    @property
    def running(self) -> bool:
        return self.watcher is not None

    @property
    def indexing(self) -> bool:
        return self._indexing

    @property
    def reconciling(self) -> bool:
        """A full reconcile was asked for (start, a folder added) and has not reported yet:
        folders not counted since are being scanned."""
        return self._reconciling and self.watcher is not None

    def start(self) -> None:
        self._reconciling, self._full_seen = True, False
        if self.watcher is not None:
            self.watcher.request_full_reconcile("asked by the app")
            return
        self.library.listeners.append(self._progress_from_worker.emit)
        self.library.swap_listeners.append(self._swapped_from_worker.emit)
        self.watcher = Watcher(
            self.library,
            options=self.options,
            say=self._message_from_worker.emit,
            session=self.session,
            on_batch=self._report_batch,
            analysers=self.analysers,
        )
        self.watcher.start()
        self._timer.start()
        self._poll_health()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop watching; the batch in flight is committed, the rest stays pending."""
        watcher = self.detach()
        if watcher is not None:
            watcher.stop(timeout)

    def detach(self) -> Watcher | None:
        """Let go of the running watcher without waiting for it; the caller must
        ``stop()`` it (on any thread) before writing the library itself."""
        self._timer.stop()
        watcher, self.watcher = self.watcher, None
        with contextlib.suppress(ValueError):
            self.library.listeners.remove(self._progress_from_worker.emit)
        with contextlib.suppress(ValueError):
            self.library.swap_listeners.remove(self._swapped_from_worker.emit)
        self._set_indexing(False)
        return watcher

    def pause(self) -> None:
        self.library.pause_indexing()

    def resume(self) -> None:
        self.library.resume_indexing()

    @property
    def paused(self) -> bool:
        return self.library.indexing_paused

    def status(self) -> dict | None:
        return self.watcher.status() if self.watcher is not None else None

    # -- from the worker, on the GUI thread --------------------------------------------------

    def _set_indexing(self, on: bool) -> None:
        if on != self._indexing:
            self._indexing = on
            self.runningChanged.emit(on)

    def _on_swapped(self, model) -> None:
        # Emitted even from a watcher being stopped: the library did swap, and the window
        # must search with the model whose vectors it now holds.
        self.modelSwapped.emit(model)

    def _on_progress(self, p: Progress) -> None:
        if self.watcher is None:
            return  # a late signal from a stopped watcher
        self.last_progress = p
        if p.done < p.total:
            self._set_indexing(True)
        self.progress.emit(p)
        if p.done >= p.total:
            self._set_indexing(False)

    def _report_batch(self, batch: BatchReport) -> None:
        """On the watcher's thread: the round's report, with the catalog's counts."""
        from photofind.gui.folders_panel import count_photos

        catalog = self.library.catalog
        self._batch_from_worker.emit((batch, catalog.counts(), count_photos(catalog)))

    def _on_batch(self, report: tuple[BatchReport, dict[str, int], dict]) -> None:
        if self.watcher is None:
            return
        batch, self.last_counts, self.last_folder_counts = report
        # Files still being written wait for a later round (not a full one) to be added.
        self._full_seen = self._full_seen or batch.full
        if self._full_seen and not batch.unsettled:
            self._reconciling = False
        # The folders' watch state as of this round (a folder added since the last poll is
        # watched by now): the window shows it with the round's end, not a second later.
        self._poll_health()
        self.batchDone.emit(batch)
        if self.watcher is None:
            return  # the health check found the watcher failed, and said so
        if batch.pending_after == 0 and not batch.unsettled:
            self._set_indexing(False)
            self.finished.emit(batch, None)

    def _poll_health(self) -> None:
        status = self.status()
        if status is None:
            return
        self.health.emit(status)
        if status.get("state") == "failed" and self.watcher is not None:
            self._timer.stop()
            self._set_indexing(False)
            self.finished.emit(None, self.watcher.error)


def health_text(status: dict | None, *, readonly: bool = False) -> str:
    """One short line for the status bar: how the library follows the disk."""
    if readonly:
        return "Read-only: another photofind writes this library"
    if status is None:
        return "Not watching"
    if status.get("state") == "failed":
        return "Watching stopped: " + str(status.get("error", "an error"))
    parts = []
    if status.get("watching"):
        n = status["watching"]
        parts.append(f"Watching {n} folder{'s' if n != 1 else ''}")
    if status.get("polling"):
        parts.append(f"polling {status['polling']} (every {status['poll_interval_s']:g} s)")
    if status.get("offline"):
        parts.append(f"{status['offline']} offline")
    if status.get("watch_limit_reached"):
        parts.append("watch limit hit")
    if not parts:
        return "No folders to watch"
    text = " · ".join(parts)
    return text[0].upper() + text[1:]
