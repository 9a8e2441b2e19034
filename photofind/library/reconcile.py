"""Reconcile: bring the catalog back to what is on disk, leaving half-written files alone.

This is the scanner plus two rules the live watcher needs and a one-off ``photofind index``
does not:

- **Settling.** A new or changed file is only taken once it is complete: its size and mtime
  have not changed for ``settle_s``. Every write moves the mtime, so a file whose mtime is
  older than ``settle_s`` is settled at once; otherwise (a fresh file, or a clock skewed
  network share) it must be seen twice with the same size and mtime, ``settle_s`` apart.
  An unsettled file is left out of this round (a changed one keeps its old entry) and the
  watcher comes back for it: it is never decoded half-written.
- **A failed photo that moved is retried.** A photo renamed while the indexer was about to
  read it fails with "no such file"; when the scanner then finds it under its new name, it
  would keep that stale failure. It goes back to pending instead (it never had a vector, so
  this is no re-encode).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from photofind.library.catalog import FAILED, Folder
from photofind.library.scanner import FileInfo, ScanResult, scan

log = logging.getLogger(__name__)


class Settler:
    """Remembers what each unsettled file looked like, to tell when it stopped changing."""

    def __init__(
        self,
        settle_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ):
        self.settle_s = settle_s
        self._clock = clock
        self._wall_ns = wall_ns
        self._seen: dict[str, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, since)

    def settled(self, info: FileInfo) -> bool:
        now = self._clock()
        if info.mtime_ns <= self._wall_ns() - int(self.settle_s * 1e9):
            self._seen.pop(info.path, None)
            return True
        seen = self._seen.get(info.path)
        if seen is None or seen[:2] != (info.size, info.mtime_ns):
            self._seen[info.path] = (info.size, info.mtime_ns, now)
            return False
        if now - seen[2] >= self.settle_s:
            del self._seen[info.path]
            return True
        return False

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what is known about files that are no longer waiting (deleted meanwhile)."""
        keep = set(keep)
        for path in [p for p in self._seen if p not in keep]:
            del self._seen[path]

    def due_in(self) -> float:
        """Seconds until the next waiting file can have settled (``settle_s`` if unknown)."""
        if not self._seen:
            return self.settle_s
        oldest = min(since for _, _, since in self._seen.values())
        return max(0.0, oldest + self.settle_s - self._clock())


@dataclass
class ReconcileReport:
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    restored: int = 0
    failed: int = 0
    dropped: int = 0  # vectors that left the catalog (the index must be saved)
    offline_folders: list[int] = field(default_factory=list)
    #: files still being written: left for a later round, with their library folder ids
    unsettled: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.added
            or self.updated
            or self.moved
            or self.removed
            or self.restored
            or self.failed
            or self.offline_folders
        )

    def summary(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.added, "new"),
                (self.updated, "changed"),
                (self.moved, "moved"),
                (self.removed, "removed"),
                (self.restored, "back online"),
                (self.failed, "unreadable"),
            )
            if n
        ]
        if self.unsettled:
            parts.append(f"{len(self.unsettled)} still being written")
        return ", ".join(parts) or "no change"


def reconcile(library, folders: Iterable[Folder] | None, settler: Settler) -> ReconcileReport:
    """Scan ``folders`` (default: all), hold back unsettled files, apply the rest.

    Must run on the library's one writer thread: it commits to the catalog and updates the
    vector index.
    """
    result = _scan_racing_the_disk(library.catalog, folders)
    report = ReconcileReport()
    result.added = _keep_settled(result.added, settler, report)
    kept_updates = []
    for photo_id, info in result.updated:
        if settler.settled(info):
            kept_updates.append((photo_id, info))
        else:
            report.unsettled[info.path] = info.folder_id
    result.updated = kept_updates
    _retry_failed_moves(library.catalog, result)
    settler.forget(report.unsettled)

    applied = library.catalog.apply_scan(result)
    if applied.dropped_ids:
        library.index.remove(applied.dropped_ids)
    library.index.generation = applied.generation

    report.added = len(result.added)
    report.updated = len(result.updated)
    report.moved = len(result.moved)
    report.removed = len(result.removed)
    report.restored = len(result.restored)
    report.failed = len(result.failed)
    report.dropped = len(applied.dropped_ids)
    report.offline_folders = list(result.offline_folders)
    report.problems = [f"{p.path}: {p.reason}" for p in result.problems]
    for problem in report.problems:
        log.warning("%s", problem)
    return report


def _scan_racing_the_disk(catalog, folders, attempts: int = 5) -> ScanResult:
    """The scanner, retried when a folder vanishes under its walk (a folder deleted or moved
    between listing its parent and looking at it raises ``FileNotFoundError`` there)."""
    folders = None if folders is None else list(folders)
    for attempt in range(attempts):
        try:
            return scan(catalog, folders)
        except FileNotFoundError as exc:
            if attempt == attempts - 1:
                raise
            log.info("the disk changed under the scan (%s); scanning again", exc)
    raise AssertionError("unreachable")


def _keep_settled(infos: list[FileInfo], settler: Settler, report: ReconcileReport):
    kept = []
    for info in infos:
        if settler.settled(info):
            kept.append(info)
        else:
            report.unsettled[info.path] = info.folder_id
    return kept


def _retry_failed_moves(catalog, result: ScanResult) -> None:
    for photo_id, info in result.moved:
        photo = catalog.photo(photo_id)
        if photo is not None and photo.status == FAILED:
            # ``apply_scan`` handles ``updated`` before ``moved``: the photo turns pending,
            # then follows its new path.
            result.updated.append((photo_id, info))
