"""Scanning and indexing on a worker thread, reported to the GUI by signals."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QThread, Signal

from photofind.library.indexer import IndexControl, Progress

log = logging.getLogger(__name__)


class _Worker(QObject):
    progress = Signal(object)  # photofind.library.indexer.Progress
    finished = Signal(object, object)  # (IndexStats or None, exception or None)

    def __init__(self, library, model, control: IndexControl):
        super().__init__()
        self.library = library
        self.model = model
        self.control = control

    def run(self) -> None:
        try:
            self.library.scan()
            stats = self.library.index_pending(
                self.model, progress=self.progress.emit, control=self.control
            )
        except BaseException as exc:  # noqa: BLE001 - shown by the GUI
            self.finished.emit(None, exc)
        else:
            self.finished.emit(stats, None)


class IndexingJob(QObject):
    """One scan-and-index run at a time; ``start()`` again while running queues one more."""

    progress = Signal(object)
    finished = Signal(object, object)
    runningChanged = Signal(bool)  # noqa: N815 - Qt naming

    def __init__(self, library, model, parent=None):
        super().__init__(parent)
        self.library = library
        self.model = model
        self.control = IndexControl()
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._again = False
        self.last_progress: Progress | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            self._again = True
            return
        self.control = IndexControl()
        thread = QThread(self)
        thread.setObjectName("photofind-indexing")
        worker = _Worker(self.library, self.model, self.control)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        self._thread, self._worker = thread, worker
        thread.start()
        self.runningChanged.emit(True)

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    @property
    def paused(self) -> bool:
        return self.control.paused

    def stop(self, msecs: int = 60_000) -> None:
        """Cancel and wait for the batch in flight to be committed."""
        self._again = False
        if self._thread is None:
            return
        self.control.cancel()
        self._thread.quit()
        self._thread.wait(msecs)

    def _on_progress(self, progress: Progress) -> None:
        self.last_progress = progress
        self.progress.emit(progress)

    def _on_finished(self, stats, error) -> None:
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        if worker is not None:
            worker.deleteLater()
        if error is not None:
            log.error("indexing failed", exc_info=error)
        self.runningChanged.emit(False)
        self.finished.emit(stats, error)
        if self._again:
            self._again = False
            self.start()
