"""Debouncing file-system events into batches of "dirty" library folders.

Watchdog threads call :meth:`DirtyFolders.mark` for every event that matters; the watcher's
single worker thread waits in :meth:`DirtyFolders.wait` and then takes the whole set at once.
A burst of 500 copies therefore becomes one reconcile, not 500: the batch is due once the
folders have been quiet for ``quiet_s``, or at the latest ``max_delay_s`` after its first
event, so a folder that never stops changing is still caught up regularly.

Marking only takes a short lock and never touches the catalog, so event threads can never
be held up by a scan, an index run or a search.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class DirtyFolders:
    def __init__(
        self,
        *,
        quiet_s: float = 0.5,
        max_delay_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._cond = threading.Condition()
        self._folders: set[int] = set()
        self._full_reasons: list[str] = []
        self._first: float | None = None
        self._last: float | None = None
        self._stopped = False
        self.events = 0  # every event marked, for the status

    # -- producers (any thread) -----------------------------------------------------------

    def mark(self, folder_id: int) -> None:
        with self._cond:
            now = self._clock()
            self._folders.add(folder_id)
            self._first = now if self._first is None else self._first
            self._last = now
            self.events += 1
            self._cond.notify_all()

    def mark_full(self, reason: str) -> None:
        """Ask for a full reconcile of every folder (an overflow, an error), due at once."""
        with self._cond:
            self._full_reasons.append(reason)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- the consumer (the worker thread) -------------------------------------------------

    def _due_at(self) -> float | None:
        if self._full_reasons:
            return self._clock()
        if self._first is None:
            return None
        return min(self._last + self.quiet_s, self._first + self.max_delay_s)

    def wait(self, deadline: float | None) -> None:
        """Block until a batch is due, ``deadline`` (a clock value) passes, or :meth:`stop`."""
        with self._cond:
            while not self._stopped:
                now = self._clock()
                due = self._due_at()
                until = (
                    min(t for t in (due, deadline) if t is not None) if (due or deadline) else None
                )
                if until is not None and until <= now:
                    return
                self._cond.wait(None if until is None else until - now)

    def due(self) -> bool:
        with self._cond:
            due = self._due_at()
            return due is not None and due <= self._clock()

    def take(self) -> tuple[set[int], list[str]]:
        """The dirty folder ids and the reasons for a full reconcile; both reset."""
        with self._cond:
            folders, reasons = self._folders, self._full_reasons
            self._folders, self._full_reasons = set(), []
            self._first = self._last = None
            return folders, reasons

    def waiting_s(self) -> float:
        """How long the oldest unhandled event has waited (0 when none)."""
        with self._cond:
            if self._full_reasons:
                return float("inf")
            return 0.0 if self._first is None else self._clock() - self._first
