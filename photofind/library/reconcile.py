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
- **A photo removed may only have moved.** A file moved while the scan walks, out of a
  folder not walked yet into one already walked, is seen nowhere: its photo is removed.
  The next round finds it under its new path as a new file. :class:`RecentlyRemoved`
  keeps the vectors of removed photos for a while, by content (size and partial hash, the
  scanner's test for a move), and such a file gets its vector back instead of an encode.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from photofind.library.catalog import FAILED, Folder
from photofind.library.scanner import FileInfo, ScanResult, any_change, scan

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


class RecentlyRemoved:
    """The vectors of photos that reconciles removed, kept ``keep_s`` by content (at most
    ``limit`` of them: a deleted folder of 100,000 photos must not hold their vectors in
    memory), for a file that turns out to be one of them moved (module docstring)."""

    def __init__(
        self,
        keep_s: float = 30.0,
        limit: int = 4096,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.keep_s = keep_s
        self.limit = limit
        self._clock = clock
        #: (size, phash) -> {entry number: (model id, vector, capture date)}
        self._kept: dict[tuple[int, str], dict[int, tuple]] = {}
        #: (removed at, (size, phash), entry number), oldest first; claimed ones linger
        self._order: deque[tuple[float, tuple[int, str], int]] = deque()
        self._count = 0
        self._numbers = itertools.count()

    def __len__(self) -> int:
        return self._count

    def keep(self, rows) -> None:
        """Rows of :meth:`Catalog.vectors_of`, for photos removed just now."""
        now = self._clock()
        for _, size, phash, mid, vector, date in rows:
            number = next(self._numbers)
            self._kept.setdefault((size, phash), {})[number] = (mid, vector, date)
            self._order.append((now, (size, phash), number))
            self._count += 1
        self._expire(now)

    def claim(self, info: FileInfo, model_id: str | None):
        """``(vector, capture date)`` of a removed photo with ``info``'s content and a
        vector of ``model_id``, taken out of the pool; None when there is none."""
        self._expire(self._clock())
        key = (info.size, info.phash)
        kept = self._kept.get(key)
        if not kept or info.phash is None:
            return None
        for number, (mid, vector, date) in kept.items():
            if mid == model_id:
                self._drop(key, number)
                return vector, date
        return None

    def _drop(self, key, number) -> None:
        kept = self._kept.get(key)
        if kept is not None and kept.pop(number, None) is not None:
            self._count -= 1
            if not kept:
                del self._kept[key]

    def _expire(self, now: float) -> None:
        while self._order and (self._order[0][0] < now - self.keep_s or self._count > self.limit):
            _, key, number = self._order.popleft()
            self._drop(key, number)


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
        return any_change(self)

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


def reconcile(
    library,
    folders: Iterable[Folder] | None,
    settler: Settler,
    removed: RecentlyRemoved | None = None,
) -> ReconcileReport:
    """Scan ``folders`` (default: all), hold back unsettled files, apply the rest. With
    ``removed``, new files that are photos removed by an earlier round get their vectors
    back, and the photos this round removes are kept there.

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

    doomed = []
    if removed is not None:
        # The newest ones only: a deleted folder of 100,000 photos is not read whole.
        doomed = library.catalog.vectors_of(result.removed[-removed.limit :])
    applied = library.catalog.apply_scan(result)
    if applied.dropped_ids:
        library.index.remove(applied.dropped_ids)
    library.index.generation = applied.generation
    revived = _revive(library, result.added, applied.added_ids, removed)
    if removed is not None:
        removed.keep(doomed)

    report.added = len(result.added) - revived
    report.updated = len(result.updated)
    report.moved = len(result.moved) + revived
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


def _revive(library, added: list[FileInfo], ids: list[int], removed) -> int:
    """Give the new photos that are removed ones moved their vectors back; how many."""
    if removed is None or not len(removed):
        return 0
    model_id = library.catalog.model_id
    batch = []
    for info, photo_id in zip(added, ids):
        found = removed.claim(info, model_id)
        if found is not None:
            vector, date = found
            batch.append((photo_id, vector, date))
    if not batch:
        return 0
    written, generation = library.catalog.record_embeddings(batch)
    written = set(written)
    keep = [row for row in batch if row[0] in written]
    if keep:
        library.index.add(np.asarray([row[0] for row in keep]), np.stack([row[1] for row in keep]))
    library.index.generation = generation
    log.info("%d new file(s) are photos removed a moment ago, moved: vectors kept", len(keep))
    return len(keep)


def _retry_failed_moves(catalog, result: ScanResult) -> None:
    for photo_id, info in result.moved:
        photo = catalog.photo(photo_id)
        if photo is not None and photo.status == FAILED:
            # ``apply_scan`` handles ``updated`` before ``moved``: the photo turns pending,
            # then follows its new path.
            result.updated.append((photo_id, info))
