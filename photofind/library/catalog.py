"""The catalog: one SQLite file that is the truth about a library.

It holds the folders, every item (a photo today: path, size, mtime, partial hash, status,
error, capture date), its vectors (one for a still, one per sampled frame for a video, each
with its frame time), each analyser's per-item state, and the model that produced the
vectors. The vector index is derived from it and can always be rebuilt from it.

Vector ids: a still's vector has its item's id; a frame beyond an item's first, and every
new item, draw their ids from one sequence (:meth:`Catalog._next_id`), so no vector id is
ever another item's. A vector index's labels are vector ids, which for photos are photo ids.

Concurrency: one writer *process* per library, enforced by a lock file (a second writer gets
:class:`LibraryLockedError` naming the holder's pid); any number of read-only opens
(``mode=ro``) alongside it, which WAL mode makes safe. Inside the writer, one ``Catalog``
object may be shared between threads: every call takes an internal lock, so the indexing
pipeline's single writer thread and a GUI thread asking for ``counts()`` do not collide.

Paths cross this boundary as ``str`` (non-UTF-8 bytes as surrogate escapes, which is what
``os.scandir`` yields) and are stored as ``os.fsencode`` BLOBs, so every name round-trips.

This module keeps the connection, its locking and write transactions, the model and the
photos' queries; :class:`Catalog` takes the rest from one module per idea: the rows and
shared rules (:mod:`~photofind.library.catalog_rows`), vectors
(:mod:`~photofind.library.vector_records`), the staged model change
(:mod:`~photofind.library.staged_model`), analyser state
(:mod:`~photofind.library.analyser_state`), folders and scans
(:mod:`~photofind.library.scan_records`), faces and people
(:mod:`~photofind.library.face_records`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from photofind.library import migrations
from photofind.library.analyser_state import AnalyserState
from photofind.library.catalog_rows import (
    _HAS_VECTOR,
    _PHOTO_COLUMNS,
    CLIP,
    DONE,
    FAILED,
    INDEXED,
    OFFLINE,
    PENDING,
    STATUSES,
    CatalogError,
    Folder,
    KnownFile,
    KnownFiles,
    Photo,
    Recorded,
    ScanApplied,
    _enc,
    _photo,
)
from photofind.library.face_records import FaceRecords
from photofind.library.filesystems import mounted_readonly, network_filesystem
from photofind.library.lockfile import LibraryLockedError, ProcessLock
from photofind.library.scan_records import ScanRecords
from photofind.library.staged_model import StagedModel
from photofind.library.vector_records import VectorRecords

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.sqlite3"
LOCK_NAME = "catalog.lock"

# SQLite's primary result codes (sqlite3 names them from Python 3.11 on).
_SQLITE_FULL = 13
_SQLITE_IOERR = 10  # also what a file-size limit (EFBIG) gives
_SQLITE_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB

__all__ = [
    "CATALOG_NAME",
    "CLIP",
    "DONE",
    "FAILED",
    "INDEXED",
    "LOCK_NAME",
    "OFFLINE",
    "PENDING",
    "STATUSES",
    "Catalog",
    "CatalogError",
    "Folder",
    "KnownFile",
    "KnownFiles",
    "LibraryLockedError",
    "Photo",
    "Recorded",
    "ScanApplied",
]


class Catalog(VectorRecords, StagedModel, AnalyserState, ScanRecords, FaceRecords):
    """A library's SQLite catalog. Open with :meth:`open`; close (or use ``with``) when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool, lock=None):
        self._conn = conn
        self._lock = threading.RLock()
        self._process_lock = lock
        self.path = path
        self.readonly = readonly
        #: the network file system type (e.g. "nfs4") the library is on; None: local. The
        #: catalog then runs without WAL (see :meth:`_set_journal`).
        self.network_fs: str | None = None

    # ----------------------------------------------------------------- opening, closing

    @classmethod
    def open(cls, library_dir: str | os.PathLike, *, readonly: bool = False) -> Catalog:
        """Open (creating and migrating when writable) the catalog of ``library_dir``.

        Raises :class:`LibraryLockedError` when another process holds the writer lock, and
        :class:`CatalogError` when a read-only open finds no catalog or a corrupt one.
        """
        library_dir = Path(library_dir)
        path = library_dir / CATALOG_NAME
        if readonly:
            if not path.is_file():
                raise CatalogError(f"no photofind library at {library_dir} ({path} is missing)")
            conn = cls._connect_readonly(path)
            try:
                version = migrations.schema_version(conn)
                if version != migrations.SCHEMA_VERSION:
                    raise CatalogError(
                        f"{path} has schema version {version}, this photofind reads "
                        f"{migrations.SCHEMA_VERSION}; open it once for writing to migrate"
                    )
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise CatalogError(f"{path} is not a usable catalog: {exc}") from exc
            except BaseException:
                conn.close()
                raise
            return cls(conn, path, readonly=True)

        library_dir.mkdir(parents=True, exist_ok=True)
        lock = ProcessLock(library_dir / LOCK_NAME, what=f"library {library_dir}")
        lock.acquire()
        network = network_filesystem(library_dir)
        try:
            conn = cls._connect(str(path), path, uri=False)
            try:
                cls._set_journal(conn, path, network)
                migrations.migrate(conn, where=str(path))
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise CatalogError(f"{path} is not a usable catalog: {exc}") from exc
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.release()
            raise
        catalog = cls(conn, path, readonly=False, lock=lock)
        catalog.network_fs = network
        return catalog

    @staticmethod
    def _set_journal(conn: sqlite3.Connection, path: Path, network: str | None) -> None:
        if network is None:
            # WAL lets readers run alongside the writer; NORMAL sync is crash-safe in WAL
            # (a power cut may lose the last commits, never corrupt the file).
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            return
        # WAL's shared-memory index (-shm) is mapped by each machine separately over a
        # network file system, so readers and the writer stop seeing each other: SQLite
        # documents that as corrupting. The rollback journal only needs file locks.
        try:
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.OperationalError:  # busy: another connection holds it in WAL mode
            mode = "wal"
        if str(mode).lower() != "delete":
            raise CatalogError(
                f"{path} is on a network file system ({network}) and still in WAL mode, "
                "which is unsafe there; close every other photofind using this library "
                "and try again"
            )
        log.warning(
            "%s is on a network file system (%s): the catalog uses SQLite's rollback "
            "journal instead of WAL (WAL does not work over a network); searches wait "
            "while photos are written, and only one machine at a time may use it",
            path,
            network,
        )

    @classmethod
    def _connect_readonly(cls, path: Path) -> sqlite3.Connection:
        """A read-only connection, also on read-only media.

        A WAL catalog opened with ``mode=ro`` still needs its ``-shm`` file, which SQLite
        cannot create on a read-only mount, or in a folder this user may not write: "unable
        to open database file". Where nothing can be writing it (nothing may write there,
        and no ``-wal`` is left over) the catalog is opened ``immutable``, which needs no
        ``-shm`` and takes no locks.
        """
        uri = path.resolve().as_uri()
        conn = cls._connect(uri + "?mode=ro", path, uri=True)
        try:
            migrations.schema_version(conn)
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            first = exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CatalogError(f"{path} is not a usable catalog: {exc}") from exc
        folder = path.parent
        if not (mounted_readonly(folder) or not os.access(folder, os.W_OK)):
            raise CatalogError(f"cannot open catalog {path} read-only: {first}")
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise CatalogError(
                f"cannot open catalog {path}: it is on read-only media (or in a folder you "
                f"may not write) with an unfinished write-ahead log ({wal.name}), which "
                "SQLite can only read where it may write; open the library once where it "
                "is writable, and close it, to fold the log in"
            )
        log.info("%s: read-only media, opening the catalog immutable", path)
        return cls._connect(uri + "?immutable=1", path, uri=True)

    @staticmethod
    def _connect(target: str, path: Path, *, uri: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                target, uri=uri, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open catalog {path}: {exc}") from exc
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._process_lock is not None:
                self._process_lock.release()
                self._process_lock = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolls back on any exception."""
        if self.readonly:
            raise CatalogError(f"{self.path} is open read-only")
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite rolls a transaction back by itself on some errors (a full
                    # disk, an I/O error): a second ROLLBACK would then fail with "cannot
                    # rollback - no transaction is active" and hide the real error.
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from exc

    def _query(self, sql: str, params: Sequence = ()) -> list:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from exc

    def _error(self, exc: sqlite3.DatabaseError) -> CatalogError:
        """A SQLite error as one line that names the catalog and what to do."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code (3.11+)
        text = str(exc)
        if code == _SQLITE_FULL or "disk is full" in text:
            return CatalogError(
                f"the disk holding {self.path} is full: the change was not saved (the "
                "catalog is as it was); free some space and run again"
            )
        if code == _SQLITE_IOERR:
            return CatalogError(
                f"cannot write {self.path} ({exc}: is the disk full, gone or failing?); the "
                "change was not saved (the catalog is as it was)"
            )
        if code in _SQLITE_DAMAGED or "malformed" in text or "not a database" in text:
            return CatalogError(
                f"{self.path} is damaged ({exc}); it cannot be repaired in place: restore "
                "it from a backup, or move it away and index your folders again"
            )
        return CatalogError(f"catalog {self.path}: {exc}")

    def _pages(self, sql: str, params: Sequence, chunk: int) -> Iterator[list]:
        """The rows of ``sql`` page by page in key order, the lock held for one page at a
        time (a 100k-row read in one go held it for a search's whole wait). ``sql`` selects
        the key first and ends with ``KEY > ? ORDER BY KEY LIMIT ?``."""
        last = 0
        while rows := self._query(sql, (*params, last, chunk)):
            yield rows
            last = rows[-1][0]

    def _meta(self, key: str) -> str:
        return self._query("SELECT value FROM meta WHERE key = ?", (key,))[0][0]

    @staticmethod
    def _bump_generation(conn: sqlite3.Connection) -> int:
        conn.execute(
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
            "WHERE key = 'generation'"
        )
        return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    # ----------------------------------------------------------------- model

    @property
    def model_id(self) -> str | None:
        """The model whose vectors the catalog holds; ``None`` before the first ``set_model``."""
        return self._meta("model_id") or None

    @property
    def dim(self) -> int | None:
        """Dimension of the stored embeddings; ``None`` until the first is recorded."""
        rows = self._query("SELECT value FROM meta WHERE key = 'dim'")
        return int(rows[0][0]) if rows else None

    @property
    def generation(self) -> int:
        """Counter bumped by every transaction that changes the set of stored embeddings."""
        return int(self._meta("generation"))

    def set_model(self, model_id: str) -> bool:
        """Make ``model_id`` the library's model. Returns True when it changed.

        Vectors of two models never mix: on a change every stored vector is cleared and
        every indexed photo goes back to pending, in one transaction.
        """
        if not model_id:
            raise CatalogError("model id must not be empty")
        with self._write() as conn:
            current = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if current == model_id:
                return False
            self._clear_staged(conn)  # a wholesale change supersedes a staged one
            conn.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_id,))
            conn.execute("DELETE FROM meta WHERE key = 'dim'")
            if current:
                conn.execute(
                    "UPDATE photos SET status = CASE status WHEN 'indexed' THEN 'pending' "
                    f"ELSE status END WHERE {_HAS_VECTOR}"
                )
                conn.execute("DELETE FROM vectors")
                conn.execute(
                    "DELETE FROM analyses WHERE analyser = ? AND model_id != ?", (CLIP, model_id)
                )
                self._bump_generation(conn)
            return True

    # ----------------------------------------------------------------- the pipeline's side

    def pending(self, limit: int = 256, *, after_id: int = 0) -> list[Photo]:
        """Up to ``limit`` photos waiting for an embedding, in id order after ``after_id``.

        Pass the last id of the previous batch as ``after_id`` to page through without
        seeing a photo twice while the writer is still committing the earlier ones.
        """
        rows = self._query(
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE status = 'pending' AND id > ? "
            "ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_photo(r, None) for r in rows]

    def recheck_failed(self, photo_ids: Iterable[int] | None = None) -> int:
        """Have the next scan look again at failed photos (all, or ``photo_ids``) as if
        their files had changed: a photo fixed on disk, or one a newer decoder reads, is then
        indexed; one still broken fails again with its reason. Only the recorded mtime
        changes (to a value no file has), so the watcher, which writes everything else,
        may be running meanwhile. Returns how many photos will be looked at again."""
        ids = None if photo_ids is None else [int(i) for i in photo_ids]
        with self._write() as conn:
            if ids is None:
                cur = conn.execute("UPDATE photos SET mtime_ns = -1 WHERE status = 'failed'")
                return cur.rowcount
            changed = 0
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                cur = conn.execute(
                    "UPDATE photos SET mtime_ns = -1 WHERE status = 'failed' "
                    f"AND id IN ({','.join('?' * len(part))})",
                    part,
                )
                changed += cur.rowcount
            return changed

    # ----------------------------------------------------------------- reading

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._query("SELECT status, COUNT(*) FROM photos GROUP BY status"):
            out[status] = n
        return out

    def folder_counts(self) -> dict[int, dict[str, int]]:
        """Photos per folder id and status, by SQL aggregates on the folder and status
        indexes: a few milliseconds at 100,000 photos, where reading every row costs a
        second of Python. Only the rare statuses are counted row by row; ``indexed`` is
        the folder's total less them."""
        out: dict[int, dict[str, int]] = {}
        for folder_id, n in self._query("SELECT folder_id, COUNT(*) FROM photos GROUP BY 1"):
            out[folder_id] = dict.fromkeys(STATUSES, 0)
            out[folder_id][INDEXED] = n
        rare = [s for s in STATUSES if s != INDEXED]
        rows = self._query(
            "SELECT folder_id, status, COUNT(*) FROM photos "
            f"WHERE status IN ({', '.join('?' * len(rare))}) GROUP BY 1, 2",
            rare,
        )
        for folder_id, status, n in rows:
            counts = out.setdefault(folder_id, dict.fromkeys(STATUSES, 0))
            counts[status] += n
            counts[INDEXED] -= n
        return out

    def photo(self, photo_id: int) -> Photo | None:
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE id = ?", (photo_id,))
        return _photo(rows[0], self.model_id) if rows else None

    def photos_by_id(self, photo_ids: Iterable[int], *, chunk: int = 500) -> dict[int, Photo]:
        """The photos of ``photo_ids`` that still exist, by id: one query (and one wait for
        the lock, which the indexer's writer holds while it commits) per ``chunk`` ids,
        where a page of search results asked one photo at a time."""
        ids = list(dict.fromkeys(int(i) for i in photo_ids))
        found: dict[int, Photo] = {}
        active = self.model_id
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            marks = ",".join("?" * len(part))
            for row in self._query(
                f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE id IN ({marks})", part
            ):
                photo = _photo(row, active)
                found[photo.id] = photo
        return found

    def photo_by_path(self, path: str | os.PathLike) -> Photo | None:
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE path = ?", (_enc(path),))
        return _photo(rows[0], self.model_id) if rows else None

    def photos(self, status: str | None = None, *, chunk: int = 1000) -> Iterator[Photo]:
        """Every photo (or those with ``status``), in id order, fetched ``chunk`` at a time."""
        where = "" if status is None else "status = ? AND"
        extra = () if status is None else (status,)
        active = self.model_id
        for rows in self._pages(
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE {where} id > ? ORDER BY id LIMIT ?",
            extra,
            chunk,
        ):
            for r in rows:
                yield _photo(r, active)

    def has_photos(self) -> bool:
        return bool(self._query("SELECT EXISTS (SELECT 1 FROM photos)")[0][0])

    def max_photo_id(self) -> int:
        """The largest photo id in use (0 when there is none)."""
        return self._query("SELECT COALESCE(MAX(id), 0) FROM photos")[0][0]
