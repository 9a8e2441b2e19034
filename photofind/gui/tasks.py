"""Run a function off the GUI thread and get its result (or exception) back on it.

The one helper every long task goes through (MusicBrainz Picard's ``run_task``): the work
runs on a ``QThreadPool``; the callback runs on the GUI thread via a queued signal.
Separate pools keep separate kinds of work from starving each other (thumbnails must not
wait behind a search, a search not behind thumbnails).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class _Relay(QObject):
    finished = Signal(object, object)  # (result, exception)


class _Task(QRunnable):
    def __init__(self, fn: Callable, relay: _Relay):
        super().__init__()
        self.fn = fn
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the GUI thread
            self.relay.finished.emit(None, exc)
        else:
            self.relay.finished.emit(result, None)


class TaskRunner(QObject):
    """Owns the pools; ``run(fn, done)`` calls ``done(result, error)`` on the GUI thread."""

    def __init__(self, parent: QObject | None = None, *, search_threads: int = 1):
        super().__init__(parent)
        self.search_pool = QThreadPool(self)
        self.search_pool.setMaxThreadCount(search_threads)
        self.io_pool = QThreadPool(self)
        self.io_pool.setMaxThreadCount(2)
        # One thread: rewrites of the library run one after the other (see WriteQueue).
        self.write_pool = QThreadPool(self)
        self.write_pool.setMaxThreadCount(1)
        self._live: set[_Relay] = set()

    def run(
        self,
        fn: Callable,
        done: Callable[[object, BaseException | None], None] | None = None,
        *,
        pool: QThreadPool | None = None,
    ) -> None:
        relay = _Relay()  # lives on the GUI thread: its signal is delivered there
        self._live.add(relay)

        def finished(result, error):
            self._live.discard(relay)
            relay.deleteLater()
            if error is not None and done is None:
                log.error("background task failed", exc_info=error)
            if done is not None:
                done(result, error)

        relay.finished.connect(finished)
        (pool or self.search_pool).start(_Task(fn, relay))

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until every task ended (closing the window, tests)."""
        ok = self.search_pool.waitForDone(msecs)
        ok = self.write_pool.waitForDone(msecs) and ok
        return self.io_pool.waitForDone(msecs) and ok


class WriteQueue:
    """The GUI's rewrites of the library (removing a folder, changing the model), one at a
    time and in the order asked, off the GUI thread.

    Each stops the watcher it detached before it writes; while any is queued or running no
    new watcher may start (``busy``), so at every moment exactly one thread writes.
    """

    def __init__(self, tasks: TaskRunner):
        self.tasks = tasks
        self.pending = 0

    @property
    def busy(self) -> bool:
        return self.pending > 0

    def run(self, fn: Callable, done: Callable[[object, BaseException | None], None]) -> None:
        self.pending += 1

        def finished(result, error):
            self.pending -= 1  # before done: its start_indexing may go ahead now
            done(result, error)

        self.tasks.run(fn, finished, pool=self.tasks.write_pool)
