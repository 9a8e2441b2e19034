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
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofind.library import migrations
from photofind.library.catalog_error import CatalogError
from photofind.library.face_records import FaceRecords
from photofind.library.filesystems import mounted_readonly, network_filesystem
from photofind.library.lockfile import LibraryLockedError, ProcessLock

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.sqlite3"
LOCK_NAME = "catalog.lock"

PENDING = "pending"
INDEXED = "indexed"
FAILED = "failed"
OFFLINE = "offline"
STATUSES = (INDEXED, PENDING, FAILED, OFFLINE)

#: the analyser whose vectors are searched, and whose state is the item's status
CLIP = "clip"
DONE = "done"

# The library's model, for SQL that needs it without a parameter.
_ACTIVE = "(SELECT value FROM meta WHERE key = 'model_id')"
_STAGED = "(SELECT value FROM meta WHERE key = 'staged_model_id')"
_HAS_VECTOR = "EXISTS (SELECT 1 FROM vectors v WHERE v.item_id = photos.id)"
# The vectors readers see: those of an existing item. A connection without foreign keys (a
# repair tool, a restore) may delete photos and leave their vectors behind.
_LIVE_VECTORS = "vectors v JOIN photos p ON p.id = v.item_id"

# SQLite's primary result codes (sqlite3 names them from Python 3.11 on).
_SQLITE_FULL = 13
_SQLITE_IOERR = 10  # also what a file-size limit (EFBIG) gives
_SQLITE_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB

__all__ = [
    "Catalog",
    "CatalogError",
    "Folder",
    "KnownFile",
    "KnownFiles",
    "LibraryLockedError",
    "Photo",
    "ScanApplied",
]


@dataclass(frozen=True)
class Folder:
    id: int
    path: str


@dataclass(frozen=True)
class Photo:
    id: int
    folder_id: int
    path: str
    size: int
    mtime_ns: int
    phash: str | None
    status: str
    error: str | None
    capture_date: str | None
    #: the library's model when the photo is indexed (its vectors are that model's), else None
    model_id: str | None


@dataclass(frozen=True)
class KnownFile:
    """What the scanner needs to know about a catalogued file to compare it with the disk."""

    id: int
    folder_id: int
    path: str
    size: int
    mtime_ns: int
    phash: str | None
    status: str


class KnownFiles(Mapping):
    """A folder's catalogued files by path (:meth:`Catalog.known_files`), each read as a
    :class:`KnownFile`.

    The rows are kept as plain tuples of numbers and strings, which the garbage collector
    stops tracking after its first look at them; 100,000 KnownFile objects instead each
    stayed tracked for the whole scan, and pushed the collector into full collections of
    the app's heap (60-190 ms with the GIL held on this loaded 2-core machine, in the
    watcher's thread: a GUI stall).
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[str, tuple]):
        self._rows = rows

    def __getitem__(self, path: str) -> KnownFile:
        return KnownFile(*self._rows[path])

    def get(self, path: str, default=None):
        row = self._rows.get(path)
        return default if row is None else KnownFile(*row)

    def __contains__(self, path) -> bool:
        return path in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class ScanApplied:
    """What :meth:`Catalog.apply_scan` changed, for the pipeline and the vector index."""

    added_ids: list[int]
    #: vectors that left the catalog (item deleted or its content changed): drop from index
    dropped_ids: list[int]
    moved: int
    generation: int


_PHOTO_COLUMNS = "id, folder_id, path, size, mtime_ns, phash, status, error, capture_date"


def _enc(path: str | os.PathLike) -> bytes:
    return os.fsencode(path)


def _dec(blob: bytes) -> str:
    return os.fsdecode(bytes(blob))


def _id_vector_arrays(rows) -> tuple[np.ndarray, np.ndarray]:
    """``(id, embedding blob)`` rows as ``(ids int64 [n], vectors float32 [n, D])``."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
    return ids, vecs.reshape(len(rows), -1).astype(np.float32, copy=False)


def _photo(row, active: str | None) -> Photo:
    """A photo row; its ``model_id`` is the library's model when it is indexed."""
    return Photo(row[0], row[1], _dec(row[2]), *row[3:], active if row[6] == INDEXED else None)


def _check_vectors(batch, dim: int | None, model_id: str) -> int | None:
    """Every vector 1-D, of dimension ``dim`` (the first one's when None), L2-normalised:
    one wrong vector aborts the whole batch. Returns the dimension. ``batch`` holds
    ``(item id, frames, capture date)``, frames being ``(frame ms or None, vector)``."""
    for photo_id, frames, _ in batch:
        for _, vector in frames:
            dim = _check_vector(photo_id, vector, dim, model_id)
    return dim


def _in_time_order(frames) -> list:
    """``(frame ms or None, vector)`` pairs, a still's (None) first, then by time."""
    return sorted(frames, key=lambda f: (f[0] is not None, f[0] or 0))


def _stills(batch) -> list:
    """``(item id, vector, capture date)`` rows as ``(item id, [(None, vector)], date)``."""
    return [(item_id, [(None, vector)], date) for item_id, vector, date in batch]


def _check_vector(photo_id, vector, dim: int | None, model_id: str) -> int:
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1 or (dim is not None and v.shape[0] != dim):
        raise CatalogError(
            f"photo {photo_id}: embedding of shape {v.shape}, the model "
            f"{model_id!r} gives dimension {dim}"
        )
    norm = float(np.linalg.norm(v))
    if not abs(norm - 1.0) < 1e-3:
        raise CatalogError(f"photo {photo_id}: embedding not normalised (norm {norm})")
    return v.shape[0]


@dataclass(frozen=True)
class Recorded:
    """What :meth:`Catalog.record_vectors` wrote: for the vector index."""

    items: list[int]  # items written (those removed meanwhile are skipped)
    vector_ids: list[int]  # one per vector written, in the batch's order
    vectors: np.ndarray  # [len(vector_ids), D]
    removed_ids: list[int]  # vectors of those items that the new ones replaced
    generation: int


class Catalog(FaceRecords):
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

    @staticmethod
    def _next_id(conn) -> int:
        """The next id of the sequence items and extra frame vectors share."""
        return (
            conn.execute(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM photos), 0), "
                "COALESCE((SELECT MAX(id) FROM vectors), 0), "
                "COALESCE((SELECT MAX(id) FROM staged_vectors), 0))"
            ).fetchone()[0]
            + 1
        )

    def _store_frames(self, conn, table: str, model_id: str, item_id: int, frames, gen) -> tuple:
        """Replace the item's vectors in ``table`` by ``frames``; ``(new ids, replaced ids)``.
        The first frame (a still's only one) takes the item's id, the others the sequence's."""
        old = [
            r[0]
            for r in conn.execute(f"DELETE FROM {table} WHERE item_id = ? RETURNING id", (item_id,))
        ]
        frames = _in_time_order(frames)
        ids = []
        for n, (frame_ms, vector) in enumerate(frames):
            vector_id = item_id if n == 0 else self._next_id(conn)
            blob = np.asarray(vector, dtype="<f4").tobytes()
            if table == "vectors":
                conn.execute(
                    "INSERT INTO vectors(id, item_id, frame_ms, model_id, embedding, gen) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (vector_id, item_id, frame_ms, model_id, blob, gen),
                )
            else:
                conn.execute(
                    "INSERT INTO staged_vectors(id, item_id, frame_ms, model_id, embedding) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (vector_id, item_id, frame_ms, model_id, blob),
                )
            ids.append(vector_id)
        return ids, [i for i in old if i not in ids]

    @staticmethod
    def _set_analysis(conn, item_id, analyser, model_id, status, error=None, data=None, gen=0):
        conn.execute(
            "INSERT OR REPLACE INTO analyses(item_id, analyser, model_id, status, error, data, "
            "updated_gen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item_id, analyser, model_id, status, error, data, gen),
        )

    def record_vectors(self, batch: Iterable[tuple[int, Sequence, str | None]]) -> Recorded:
        """Store ``(item id, frames, capture date)`` in one transaction, ``frames`` being
        ``(frame time in ms or None for a still, vector)``: the item's vectors of the
        library's model (replacing any it had), its CLIP state done, the item indexed.

        Vectors must be 1-D, of the model's dimension, L2-normalised float32 (checked: one
        wrong vector aborts the whole batch). Items removed meanwhile are skipped.
        """
        batch = list(batch)
        items: list[int] = []
        vector_ids: list[int] = []
        vectors: list = []
        removed: list[int] = []
        with self._write() as conn:
            model_id = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if not model_id:
                raise CatalogError(f"{self.path}: set_model() before recording embeddings")
            row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
            dim = _check_vectors(batch, int(row[0]) if row else None, model_id)
            if dim is not None and row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))
            generation = self._bump_generation(conn)
            for item_id, frames, capture_date in batch:
                cur = conn.execute(
                    "UPDATE photos SET capture_date = ?, status = 'indexed', error = NULL "
                    "WHERE id = ?",
                    (capture_date, item_id),
                )
                if not cur.rowcount:
                    continue
                ids, old = self._store_frames(
                    conn, "vectors", model_id, item_id, frames, generation
                )
                self._set_analysis(conn, item_id, CLIP, model_id, DONE, gen=generation)
                items.append(item_id)
                vector_ids.extend(ids)
                vectors.extend(v for _, v in _in_time_order(frames))
                removed.extend(old)
        stacked = np.asarray(vectors, dtype=np.float32).reshape(len(vector_ids), -1)
        return Recorded(items, vector_ids, stacked, removed, generation)

    def record_embeddings(
        self, batch: Iterable[tuple[int, np.ndarray, str | None]]
    ) -> tuple[list[int], int]:
        """Store a batch of ``(photo_id, vector, capture_date)`` of stills (see
        :meth:`record_vectors`). Returns ``(ids written, new generation)``: a still's
        vector id is its photo id, so the ids go into the vector index as they are, and the
        generation into its sidecar."""
        recorded = self.record_vectors(_stills(batch))
        return recorded.items, recorded.generation

    def record_failure(self, photo_id: int, reason: str) -> None:
        """Mark a photo failed with a readable reason; it is not retried until it changes."""
        with self._write() as conn:
            conn.execute(
                "UPDATE photos SET status = 'failed', error = ? WHERE id = ?", (reason, photo_id)
            )
            model_id = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if (
                model_id
                and conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone()
            ):
                self._set_analysis(conn, photo_id, CLIP, model_id, FAILED, reason)

    # ----------------------------------------------------------------- a staged model change
    #
    # Changing the model of an indexed library takes as long as indexing it. Meanwhile the
    # active model's vectors keep serving searches, and the new model's vectors are collected
    # in ``staged_vectors``, the outcome per photo in ``analyses`` (done, or failed with the
    # reason). Every photo that is indexed or pending needs one (new photos also get the
    # active model's vector, so they are searchable at once). When none is missing,
    # :meth:`swap_staged` makes them the photos' vectors in one transaction. Removing a photo
    # removes its staged rows (foreign key cascade); a photo whose content changed loses
    # them (see ``apply_scan``) and is encoded again.

    @property
    def staged_model_id(self) -> str | None:
        """The model a staged change re-indexes for; ``None`` when no change runs."""
        rows = self._query("SELECT value FROM meta WHERE key = 'staged_model_id'")
        return (rows[0][0] or None) if rows else None

    @property
    def staged_dim(self) -> int | None:
        rows = self._query("SELECT value FROM meta WHERE key = 'staged_dim'")
        return int(rows[0][0]) if rows else None

    def begin_staged_model(self, model_id: str) -> bool:
        """Start collecting ``model_id``'s vectors beside the active ones. Returns True
        when a new staged change began (a change to another model is replaced; asking for
        the model already staged keeps its vectors). Asking for the active model cancels
        any staged change and returns False."""
        if not model_id:
            raise CatalogError("model id must not be empty")
        with self._write() as conn:
            active = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            staged = self._staged_id(conn)
            if model_id == active:
                self._clear_staged(conn)
                return False
            if model_id == staged:
                return False
            self._clear_staged(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'staged_model_id'", (model_id,))
            return True

    @staticmethod
    def _staged_id(conn) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'staged_model_id'").fetchone()
        return row[0] or None

    @staticmethod
    def _clear_staged(conn, *, keep_state: bool = False) -> None:
        """Forget the staged change; ``keep_state``: its per-photo outcomes stay (they are
        the active model's at the swap)."""
        if not keep_state:
            conn.execute(
                f"DELETE FROM analyses WHERE analyser = ? AND model_id = {_STAGED}", (CLIP,)
            )
        conn.execute("DELETE FROM staged_vectors")
        conn.execute("UPDATE meta SET value = '' WHERE key = 'staged_model_id'")
        conn.execute("DELETE FROM meta WHERE key = 'staged_dim'")

    def _require_staged(self, conn, model_id: str) -> None:
        staged = self._staged_id(conn)
        if staged != model_id:
            raise CatalogError(
                f"{self.path}: vectors of {model_id!r} offered for a staged model change, but "
                + (f"the change under way is to {staged!r}" if staged else "no change runs")
                + " (it was cancelled or replaced)"
            )

    # Photos that must hold a staged outcome before the swap: those searchable now or about
    # to be. Failed photos fail for every model; offline ones cannot be read (they keep a
    # staged vector if they got one, else they go back to pending when they return).
    _STAGED_MISSING = (
        "FROM photos p WHERE p.status IN ('indexed', 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
        f"AND a.analyser = '{CLIP}' AND a.model_id = {_STAGED})"
    )

    def staged_pending(self, limit: int = 256, *, after_id: int = 0) -> list[Photo]:
        """Up to ``limit`` photos still lacking a staged vector, in id order after
        ``after_id`` (the same paging as :meth:`pending`)."""
        columns = ", ".join(f"p.{c.strip()}" for c in _PHOTO_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns} {self._STAGED_MISSING} AND p.id > ? ORDER BY p.id LIMIT ?",
            (after_id, limit),
        )
        active = self.model_id
        return [_photo(r, active) for r in rows]

    def staged_progress(self) -> tuple[int, int]:
        """``(done, total)`` of the staged change: photos holding a staged outcome, and
        those plus the ones still missing one. ``(0, 0)`` when no change runs."""
        with self._lock:
            if self.staged_model_id is None:
                return 0, 0
            done = self._query(
                f"SELECT COUNT(*) FROM analyses WHERE analyser = ? AND model_id = {_STAGED}",
                (CLIP,),
            )[0][0]
            missing = self._query(f"SELECT COUNT(*) {self._STAGED_MISSING}")[0][0]
        return done, done + missing

    def record_staged_embeddings(
        self, model_id: str, batch: Iterable[tuple[int, np.ndarray, str | None]]
    ) -> list[int]:
        """Store ``(photo_id, vector, capture_date)`` of the staged model ``model_id`` in one
        transaction (same checks as :meth:`record_embeddings`). Photos removed meanwhile
        are skipped; returns the ids written (a still's staged vector id is its photo id).
        Refused when ``model_id`` is not the change under way, so a cancelled change never
        leaves vectors behind."""
        batch = _stills(batch)
        written: list[int] = []
        with self._write() as conn:
            self._require_staged(conn, model_id)
            row = conn.execute("SELECT value FROM meta WHERE key = 'staged_dim'").fetchone()
            dim = _check_vectors(batch, int(row[0]) if row else None, model_id)
            if dim is not None and row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('staged_dim', ?)", (str(dim),))
            for photo_id, frames, capture_date in batch:
                cur = conn.execute(
                    "UPDATE photos SET capture_date = COALESCE(?, capture_date) WHERE id = ?",
                    (capture_date, photo_id),
                )
                if not cur.rowcount:
                    continue
                self._store_frames(conn, "staged_vectors", model_id, photo_id, frames, 0)
                self._set_analysis(conn, photo_id, CLIP, model_id, DONE)
                written.append(photo_id)
        return written

    def record_staged_failure(self, model_id: str, photo_id: int, reason: str) -> None:
        """The staged model could not read a photo: it is not retried during this change,
        and becomes ``failed`` at the swap."""
        with self._write() as conn:
            self._require_staged(conn, model_id)
            if conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone():
                conn.execute("DELETE FROM staged_vectors WHERE item_id = ?", (photo_id,))
                self._set_analysis(conn, photo_id, CLIP, model_id, FAILED, reason)

    def staged_embeddings(self, *, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` chunks of the staged vectors (to rebuild a staged index)."""
        for rows in self._pages(
            "SELECT id, embedding FROM staged_vectors WHERE id > ? ORDER BY id LIMIT ?",
            (),
            chunk,
        ):
            yield _id_vector_arrays(rows)

    def swap_staged(self, model_id: str) -> int | None:
        """Make the staged vectors the photos' vectors and ``model_id`` the library's
        model, in one transaction. Returns the new generation, or ``None`` (nothing
        changed) while some photo still lacks a staged outcome.

        Photos without a staged vector (offline ones) lose their old one and are pending
        again when they return; photos the staged model could not read become failed.
        """
        with self._write() as conn:
            self._require_staged(conn, model_id)
            if conn.execute(f"SELECT EXISTS (SELECT 1 {self._STAGED_MISSING})").fetchone()[0]:
                return None
            generation = self._bump_generation(conn)
            conn.execute(
                "UPDATE photos SET status = CASE status WHEN 'indexed' THEN 'pending' "
                f"ELSE status END WHERE {_HAS_VECTOR} "
                "AND id NOT IN (SELECT item_id FROM staged_vectors)"
            )
            conn.execute(
                "UPDATE photos SET status = 'failed', error = a.error FROM analyses a "
                "WHERE a.item_id = photos.id AND a.analyser = ? AND a.model_id = ? "
                "AND a.status = 'failed' AND photos.status IN ('indexed', 'pending')",
                (CLIP, model_id),
            )
            conn.execute(
                "UPDATE photos SET error = NULL, "
                "status = CASE status WHEN 'offline' THEN 'offline' ELSE 'indexed' END "
                "WHERE id IN (SELECT item_id FROM staged_vectors) "
                "AND status IN ('indexed', 'pending', 'offline')"
            )
            conn.execute("DELETE FROM vectors")
            conn.execute(
                "INSERT INTO vectors(id, item_id, frame_ms, model_id, embedding, gen) "
                "SELECT id, item_id, frame_ms, model_id, embedding, ? FROM staged_vectors",
                (generation,),
            )
            conn.execute(
                "DELETE FROM analyses WHERE analyser = ? AND model_id != ?", (CLIP, model_id)
            )
            conn.execute(
                "UPDATE analyses SET updated_gen = ? WHERE analyser = ? AND model_id = ?",
                (generation, CLIP, model_id),
            )
            staged_dim = conn.execute("SELECT value FROM meta WHERE key = 'staged_dim'").fetchone()
            conn.execute("DELETE FROM meta WHERE key = 'dim'")
            if staged_dim is not None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", staged_dim)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_id,))
            self._clear_staged(conn, keep_state=True)
        return generation

    # ----------------------------------------------------------------- analysers
    #
    # Each analyser's outcome per item is a row of ``analyses`` keyed by (item, analyser,
    # model): done (with its small results in ``data``) or failed (with the reason); no row
    # is pending. An analyser's results in use are those of its *active* model (meta key
    # ``analyser:<name>``). A run with another model collects its rows beside them, and
    # :meth:`settle_analyser` swaps them in, in one transaction, once no item lacks one: the
    # staged model change, for every analyser. The CLIP embedding keeps its own methods
    # above (its vectors and the items' status live beside its rows).

    _ANALYSABLE = "p.status IN ('indexed', 'pending')"

    def analyser_model(self, analyser: str) -> str | None:
        """The model whose results of ``analyser`` are in use (None: it never ran)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (f"analyser:{analyser}",))
        return rows[0][0] if rows else None

    def begin_analyser(self, analyser: str, model_id: str) -> None:
        """An analyser is about to run with ``model_id``: with no results in use yet, they
        are this model's from now on (nothing would stay searchable by waiting)."""
        if not model_id:
            raise CatalogError(f"analyser {analyser!r}: model id must not be empty")
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                (f"analyser:{analyser}", model_id),
            )

    def analysis_pending(
        self, analyser: str, model_id: str, limit: int = 256, *, after_id: int = 0
    ) -> list[Photo]:
        """Up to ``limit`` items (indexed or pending) lacking an outcome of ``analyser``
        with ``model_id``, in id order after ``after_id``."""
        columns = ", ".join(f"p.{c.strip()}" for c in _PHOTO_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns} FROM photos p WHERE {self._ANALYSABLE} AND p.id > ? "
            "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
            "AND a.analyser = ? AND a.model_id = ?) ORDER BY p.id LIMIT ?",
            (after_id, analyser, model_id, limit),
        )
        active = self.model_id
        return [_photo(r, active) for r in rows]

    def analysis_pending_among(self, analyser: str, model_id: str, ids: Sequence[int]) -> set:
        """Which of ``ids`` lack an outcome of ``analyser`` with ``model_id``."""
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            out.update(
                r[0]
                for r in self._query(
                    f"SELECT p.id FROM photos p WHERE p.id IN ({marks}) AND {self._ANALYSABLE} "
                    "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
                    "AND a.analyser = ? AND a.model_id = ?)",
                    (*part, analyser, model_id),
                )
            )
        return out

    def pending_among(self, ids: Sequence[int], *, staged: bool = False) -> set:
        """Which of ``ids`` wait for their CLIP vector (``staged``: their staged one)."""
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            sql = (
                f"SELECT p.id {self._STAGED_MISSING} AND p.id IN ({marks})"
                if staged
                else f"SELECT id FROM photos WHERE status = 'pending' AND id IN ({marks})"
            )
            out.update(r[0] for r in self._query(sql, part))
        return out

    def record_analyses(
        self,
        analyser: str,
        model_id: str,
        rows: Iterable[tuple[int, str, str | None, bytes | None]],
    ) -> list[int]:
        """Store ``(item id, 'done' or 'failed', error, data)`` outcomes of ``analyser``
        with ``model_id`` in one transaction; items removed meanwhile are skipped. Returns
        the items written."""
        written: list[int] = []
        with self._write() as conn:
            generation = int(
                conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
            )
            for item_id, status, error, data in rows:
                if status not in (DONE, FAILED):
                    raise CatalogError(f"analyser {analyser!r}: unknown outcome {status!r}")
                if not conn.execute("SELECT 1 FROM photos WHERE id = ?", (item_id,)).fetchone():
                    continue
                self._set_analysis(
                    conn, item_id, analyser, model_id, status, error, data, generation
                )
                written.append(item_id)
        return written

    def settle_analyser(self, analyser: str, model_id: str) -> bool:
        """Make ``model_id``'s results of ``analyser`` the ones in use, dropping the other
        models', in one transaction, when no item lacks one. Returns whether they are."""
        with self._write() as conn:
            key = f"analyser:{analyser}"
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row and row[0] == model_id:
                return True
            missing = conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM photos p WHERE {self._ANALYSABLE} "
                "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
                "AND a.analyser = ? AND a.model_id = ?))",
                (analyser, model_id),
            ).fetchone()[0]
            if missing:
                return False
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, model_id))
            conn.execute(
                "DELETE FROM analyses WHERE analyser = ? AND model_id != ?", (analyser, model_id)
            )
            return True

    def analysis(self, item_id: int, analyser: str) -> tuple[str, str | None, bytes | None] | None:
        """``(status, error, data)`` of ``analyser`` on an item, from the model in use;
        None when it has not run there."""
        model_id = self.analyser_model(analyser) if analyser != CLIP else self.model_id
        rows = self._query(
            "SELECT status, error, data FROM analyses WHERE item_id = ? AND analyser = ? "
            "AND model_id = ?",
            (item_id, analyser, model_id),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def analysis_counts(self, analyser: str, model_id: str | None = None) -> dict[str, int]:
        """Items done, failed and pending for ``analyser`` (with ``model_id``, default the
        one in use)."""
        if model_id is None:
            model_id = self.analyser_model(analyser) if analyser != CLIP else self.model_id
        out = {DONE: 0, FAILED: 0, PENDING: 0}
        with self._lock:
            for status, n in self._query(
                "SELECT status, COUNT(*) FROM analyses WHERE analyser = ? AND model_id = ? "
                "GROUP BY status",
                (analyser, model_id),
            ):
                out[status] = n
            out[PENDING] = self._query(
                f"SELECT COUNT(*) FROM photos p WHERE {self._ANALYSABLE} "
                "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
                "AND a.analyser = ? AND a.model_id = ?)",
                (analyser, model_id),
            )[0][0]
        return out

    # ----------------------------------------------------------------- folders

    def add_folder(self, path: str | os.PathLike) -> Folder:
        """Register a folder (stored absolute); adding it again returns the existing one."""
        path = os.path.abspath(os.fspath(path))
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO folders(path, added_ns) VALUES (?, ?)",
                (_enc(path), time.time_ns()),
            )
            (folder_id,) = conn.execute(
                "SELECT id FROM folders WHERE path = ?", (_enc(path),)
            ).fetchone()
        return Folder(folder_id, path)

    def remove_folder(self, folder: Folder | int | str | os.PathLike) -> list[int]:
        """Forget a folder and its photos. Returns the ids of their vectors (the vector
        index must drop them)."""
        with self._write() as conn:
            folder_id = self._folder_id(conn, folder)
            dropped = [
                r[0]
                for r in conn.execute(
                    "SELECT v.id FROM vectors v JOIN photos p ON p.id = v.item_id "
                    "WHERE p.folder_id = ?",
                    (folder_id,),
                )
            ]
            conn.execute("DELETE FROM photos WHERE folder_id = ?", (folder_id,))
            conn.execute("DELETE FROM folders WHERE id = ?", (folder_id,))
            if dropped:
                self._bump_generation(conn)
        return dropped

    def _folder_id(self, conn, folder) -> int:
        if isinstance(folder, Folder):
            return folder.id
        if isinstance(folder, int):
            row = conn.execute("SELECT id FROM folders WHERE id = ?", (folder,)).fetchone()
        else:
            path = os.path.abspath(os.fspath(folder))
            row = conn.execute("SELECT id FROM folders WHERE path = ?", (_enc(path),)).fetchone()
        if row is None:
            raise CatalogError(f"{folder} is not a folder of the library {self.path.parent}")
        return row[0]

    def folders(self) -> list[Folder]:
        return [Folder(r[0], _dec(r[1])) for r in self._query("SELECT id, path FROM folders")]

    # ----------------------------------------------------------------- scanning

    def known_files(self, folder_id: int, *, chunk: int = 4096) -> KnownFiles:
        """Every catalogued file of a folder, by path: the scanner's side of the comparison.

        Read ``chunk`` rows at a time in id order, taking the catalog's lock for each chunk
        only: a whole 100,000-photo folder held it ~0.15 s, which a search (or the GUI's
        counts) waited out. The chunks are not one snapshot, which the scanner does not
        need: it runs on the library's one writer thread, so no photo of the folder
        changes in between, and its scan is compared with the disk, not committed as is.
        """
        known: dict[str, tuple] = {}
        for rows in self._pages(
            "SELECT id, folder_id, path, size, mtime_ns, phash, status FROM photos "
            "WHERE folder_id = ? AND id > ? ORDER BY id LIMIT ?",
            (folder_id,),
            chunk,
        ):
            for photo_id, fid, blob, size, mtime_ns, phash, status in rows:
                path = _dec(blob)
                known[path] = (photo_id, fid, path, size, mtime_ns, phash, status)
        return KnownFiles(known)

    @staticmethod
    def _forget_results(conn, item_id: int) -> list[int]:
        """The item's content is gone or changed: drop its vectors, staged vectors, faces and
        analyser states. Returns the ids of the vectors dropped (for the vector index)."""
        dropped = [
            r[0]
            for r in conn.execute("DELETE FROM vectors WHERE item_id = ? RETURNING id", (item_id,))
        ]
        conn.execute("DELETE FROM staged_vectors WHERE item_id = ?", (item_id,))
        conn.execute("DELETE FROM analyses WHERE item_id = ?", (item_id,))
        conn.execute("DELETE FROM faces WHERE item_id = ?", (item_id,))
        return dropped

    def file_sizes(self) -> set[int]:
        """The sizes of every catalogued file (an index-only scan of ``photos_hash``)."""
        return {r[0] for r in self._query("SELECT DISTINCT size FROM photos")}

    def files_with_content(self, size: int, phash: str) -> list[KnownFile]:
        """Catalogued files of ``size`` and partial hash ``phash`` in any folder (by the
        ``photos_hash`` index): where the scanner looks for the old place of a new file."""
        rows = self._query(
            "SELECT id, folder_id, path, size, mtime_ns, phash, status FROM photos "
            "WHERE size = ? AND phash = ?",
            (size, phash),
        )
        return [KnownFile(r[0], r[1], _dec(r[2]), *r[3:]) for r in rows]

    def vectors_of(
        self, photo_ids: Iterable[int], *, chunk: int = 500
    ) -> list[tuple[int, int, str, str, np.ndarray, str | None]]:
        """``(id, size, phash, model id, vector, capture date)`` of those of ``photo_ids``
        that have a still's vector and a partial hash: what a reconcile keeps of the photos
        it is about to remove, to recognise them if they turn up again."""
        ids = list(photo_ids)
        out = []
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            rows = self._query(
                "SELECT p.id, p.size, p.phash, v.model_id, v.embedding, p.capture_date "
                "FROM photos p JOIN vectors v ON v.item_id = p.id "
                f"WHERE p.id IN ({','.join('?' * len(part))}) "
                "AND v.frame_ms IS NULL AND p.phash IS NOT NULL",
                part,
            )
            for photo_id, size, phash, mid, blob, date in rows:
                vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                out.append((photo_id, size, phash, mid, vector, date))
        return out

    def apply_scan(self, scan) -> ScanApplied:
        """Write a :class:`photofind.library.scanner.ScanResult` in one transaction."""
        added_ids: list[int] = []
        dropped: list[int] = []
        with self._write() as conn:
            for f in scan.added:
                # A new item draws its id from the sequence extra frame vectors share, so
                # that its still's vector (of its own id) is free; a path seen again keeps
                # its id, and may be other content: its results are stale.
                cur = conn.execute(
                    "INSERT INTO photos(id, folder_id, path, size, mtime_ns, phash, status) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending') "
                    "ON CONFLICT(path) DO UPDATE SET folder_id = excluded.folder_id, "
                    "size = excluded.size, mtime_ns = excluded.mtime_ns, phash = excluded.phash, "
                    "status = 'pending', error = NULL "
                    "RETURNING id",
                    (self._next_id(conn), f.folder_id, _enc(f.path), f.size, f.mtime_ns, f.phash),
                )
                added_ids.append(cur.fetchone()[0])
                dropped.extend(self._forget_results(conn, added_ids[-1]))
            for f in scan.failed:
                row = conn.execute(
                    "SELECT id FROM photos WHERE path = ?", (_enc(f.path),)
                ).fetchone()
                if row:  # was fine, now broken (e.g. its link target vanished)
                    dropped.extend(self._forget_results(conn, row[0]))
                conn.execute(
                    "INSERT INTO photos(id, folder_id, path, size, mtime_ns, status, error) "
                    "VALUES (?, ?, ?, 0, 0, 'failed', ?) "
                    "ON CONFLICT(path) DO UPDATE SET status = 'failed', error = excluded.error",
                    (self._next_id(conn), f.folder_id, _enc(f.path), f.reason),
                )
            for photo_id, f in scan.updated:
                dropped.extend(self._forget_results(conn, photo_id))
                conn.execute(
                    "UPDATE photos SET size = ?, mtime_ns = ?, phash = ?, status = 'pending', "
                    "error = NULL WHERE id = ?",
                    (f.size, f.mtime_ns, f.phash, photo_id),
                )
            for photo_id, f in scan.moved:
                # The content is the same file: keep vectors and status, follow the path.
                conn.execute(
                    "UPDATE photos SET folder_id = ?, path = ?, size = ?, mtime_ns = ?, "
                    "status = CASE status WHEN 'offline' THEN "
                    f"(CASE WHEN {_HAS_VECTOR} THEN 'indexed' ELSE 'pending' END) "
                    "ELSE status END WHERE id = ?",
                    (f.folder_id, _enc(f.path), f.size, f.mtime_ns, photo_id),
                )
            if scan.removed:
                dropped.extend(self._delete_photos(conn, scan.removed))
            for photo_id in scan.restored:
                conn.execute(
                    f"UPDATE photos SET status = CASE WHEN {_HAS_VECTOR} THEN 'indexed' "
                    "WHEN error IS NOT NULL THEN 'failed' ELSE 'pending' END "
                    "WHERE id = ? AND status = 'offline'",
                    (photo_id,),
                )
            for folder_id in scan.offline_folders:
                conn.execute(
                    "UPDATE photos SET status = 'offline' WHERE folder_id = ?", (folder_id,)
                )
            # A move changes a path that folder filters read, so it is a new generation
            # too: the search engine's filter table is keyed on it.
            generation = (
                self._bump_generation(conn)
                if dropped or scan.moved
                else int(
                    conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
                )
            )
        return ScanApplied(added_ids, dropped, len(scan.moved), generation)

    @staticmethod
    def _delete_photos(conn, ids: Iterable[int]) -> list[int]:
        """Delete items (their vectors and states follow by cascade); their vector ids."""
        dropped = []
        for photo_id in ids:
            dropped.extend(
                r[0] for r in conn.execute("SELECT id FROM vectors WHERE item_id = ?", (photo_id,))
            )
            conn.execute("DELETE FROM photos WHERE id = ?", (photo_id,))
        return dropped

    def remove_photos(self, ids: Iterable[int]) -> list[int]:
        """Delete photos; returns the ids of their vectors."""
        with self._write() as conn:
            dropped = self._delete_photos(conn, ids)
            if dropped:
                self._bump_generation(conn)
        return dropped

    def move_photo(self, photo_id: int, new_path: str | os.PathLike, folder_id: int | None = None):
        """Follow a rename or move (e.g. from a file watcher): the embedding stays."""
        with self._write() as conn:
            sets, params = "path = ?", [_enc(new_path)]
            if folder_id is not None:
                sets += ", folder_id = ?"
                params.append(folder_id)
            cur = conn.execute(f"UPDATE photos SET {sets} WHERE id = ?", (*params, photo_id))
            if cur.rowcount != 1:
                raise CatalogError(f"no photo with id {photo_id} in {self.path}")
            self._bump_generation(conn)  # folder filters read the path

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

    def max_vector_id(self) -> int:
        """The largest id a vector may hold now: of the sequence items and frames share."""
        return self._query(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM photos), 0), "
            "COALESCE((SELECT MAX(id) FROM vectors), 0))"
        )[0][0]

    def embedding_count(self) -> int:
        """Vectors of the library's model (what the vector index must hold)."""
        return self._query(f"SELECT COUNT(*) FROM {_LIVE_VECTORS}")[0][0]

    def embedding_ids(self) -> np.ndarray:
        """Ids of every vector of the library's model, sorted (a photo's is its own id)."""
        rows = self._query(f"SELECT v.id FROM {_LIVE_VECTORS} ORDER BY v.id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def embeddings(
        self, *, chunk: int = 4096, since_generation: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(vector ids int64 [n], vectors float32 [n, D])`` chunks of stored vectors.

        With ``since_generation`` only those written after that generation: what a vector
        index saved at that generation is missing.
        """
        for rows in self._pages(
            f"SELECT v.id, v.embedding FROM {_LIVE_VECTORS} WHERE v.gen > ? AND v.id > ? "
            "ORDER BY v.id LIMIT ?",
            (since_generation,),
            chunk,
        ):
            yield _id_vector_arrays(rows)

    def embedding(self, photo_id: int) -> np.ndarray | None:
        """The photo's vector (an item of many frames: its first frame's)."""
        rows = self._query(
            "SELECT embedding FROM vectors WHERE item_id = ? "
            "ORDER BY frame_ms IS NOT NULL, frame_ms LIMIT 1",
            (photo_id,),
        )
        if not rows:
            return None
        return np.frombuffer(rows[0][0], dtype="<f4").astype(np.float32)

    def vector_places(self, vector_ids: Iterable[int], *, chunk: int = 500) -> dict:
        """``{vector id: (item id, frame time in ms or None)}`` of the vectors that exist."""
        ids = list(dict.fromkeys(int(i) for i in vector_ids))
        found: dict[int, tuple[int, int | None]] = {}
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            marks = ",".join("?" * len(part))
            for vid, item, frame in self._query(
                f"SELECT id, item_id, frame_ms FROM vectors WHERE id IN ({marks})", part
            ):
                found[vid] = (item, frame)
        return found

    def vector_items(self, *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """``(vector ids, their item ids)`` of every vector, as int64 arrays.

        Read from the (item, id) index alone, ``chunk`` item ids at a time (a range of
        items holds all of each item's vectors): reading the vector rows themselves, a
        page per 512-d vector, took 256 ms at 100,000 photos where the index takes 70.
        """
        vids: list[int] = []
        items: list[int] = []
        top = self.max_vector_id()
        for low in range(0, top + 1, chunk):
            for vid, item in self._query(
                "SELECT v.id, v.item_id FROM vectors v INDEXED BY vectors_item "
                "JOIN photos p ON p.id = v.item_id WHERE v.item_id >= ? AND v.item_id < ?",
                (low, low + chunk),
            ):
                vids.append(vid)
                items.append(item)
        return np.asarray(vids, dtype=np.int64), np.asarray(items, dtype=np.int64)
