"""The catalog: one SQLite file that is the truth about a library.

It holds the folders, every photo (path, size, mtime, partial hash, status, error, capture
date, embedding) and the model that produced the embeddings. The vector index is derived
from it and can always be rebuilt from it.

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
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofind.errors import PhotofindError
from photofind.library import migrations
from photofind.library.lockfile import LibraryLockedError, ProcessLock

CATALOG_NAME = "catalog.sqlite3"
LOCK_NAME = "catalog.lock"

PENDING = "pending"
INDEXED = "indexed"
FAILED = "failed"
OFFLINE = "offline"
STATUSES = (INDEXED, PENDING, FAILED, OFFLINE)

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


class CatalogError(PhotofindError):
    """The catalog is missing, unreadable, or asked to do something inconsistent."""


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
    #: photos whose embedding left the catalog (deleted or content changed): drop from index
    dropped_ids: list[int]
    moved: int
    generation: int


_PHOTO_COLUMNS = "id, folder_id, path, size, mtime_ns, phash, status, error, capture_date, model_id"


def _enc(path: str | os.PathLike) -> bytes:
    return os.fsencode(path)


def _dec(blob: bytes) -> str:
    return os.fsdecode(bytes(blob))


def _id_vector_arrays(rows) -> tuple[np.ndarray, np.ndarray]:
    """``(id, embedding blob)`` rows as ``(ids int64 [n], vectors float32 [n, D])``."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
    return ids, vecs.reshape(len(rows), -1).astype(np.float32, copy=False)


def _photo(row) -> Photo:
    return Photo(row[0], row[1], _dec(row[2]), *row[3:])


def _check_vectors(batch, dim: int | None, model_id: str) -> int | None:
    """Every vector 1-D, of dimension ``dim`` (the first one's when None), L2-normalised:
    one wrong vector aborts the whole batch. Returns the dimension."""
    for photo_id, vector, _ in batch:
        v = np.asarray(vector, dtype=np.float32)
        if v.ndim != 1 or (dim is not None and v.shape[0] != dim):
            raise CatalogError(
                f"photo {photo_id}: embedding of shape {v.shape}, the model "
                f"{model_id!r} gives dimension {dim}"
            )
        dim = v.shape[0]
        norm = float(np.linalg.norm(v))
        if not abs(norm - 1.0) < 1e-3:
            raise CatalogError(f"photo {photo_id}: embedding not normalised (norm {norm})")
    return dim


class Catalog:
    """A library's SQLite catalog. Open with :meth:`open`; close (or use ``with``) when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool, lock=None):
        self._conn = conn
        self._lock = threading.RLock()
        self._process_lock = lock
        self.path = path
        self.readonly = readonly

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
            uri = path.resolve().as_uri() + "?mode=ro"
            conn = cls._connect(uri, path, uri=True)
            try:
                version = migrations.schema_version(conn)
                if version != migrations.SCHEMA_VERSION:
                    raise CatalogError(
                        f"{path} has schema version {version}, this photofind reads "
                        f"{migrations.SCHEMA_VERSION}; open it once for writing to migrate"
                    )
            except BaseException:
                conn.close()
                raise
            return cls(conn, path, readonly=True)

        library_dir.mkdir(parents=True, exist_ok=True)
        lock = ProcessLock(library_dir / LOCK_NAME, what=f"library {library_dir}")
        lock.acquire()
        try:
            conn = cls._connect(str(path), path, uri=False)
            try:
                # WAL lets readers run alongside the writer; NORMAL sync is crash-safe in WAL
                # (a power cut may lose the last commits, never corrupt the file).
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                migrations.migrate(conn, where=str(path))
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise CatalogError(f"{path} is not a usable catalog: {exc}") from exc
        except BaseException:
            lock.release()
            raise
        return cls(conn, path, readonly=False, lock=lock)

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
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> list:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

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

        Vectors of two models never mix: on a change every stored embedding is cleared and
        every indexed photo goes back to pending, in one transaction.
        """
        if not model_id:
            raise CatalogError("model id must not be empty")
        with self._write() as conn:
            current = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if current == model_id:
                return False
            conn.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_id,))
            conn.execute("DELETE FROM meta WHERE key = 'dim'")
            self._clear_staged(conn)  # a wholesale change supersedes a staged one
            if current:
                conn.execute(
                    "UPDATE photos SET status = CASE status WHEN 'indexed' THEN 'pending' "
                    "ELSE status END, embedding = NULL, model_id = NULL, embedding_gen = 0 "
                    "WHERE embedding IS NOT NULL"
                )
                self._bump_generation(conn)
            return True

    # ----------------------------------------------------------------- a staged model change
    #
    # Changing the model of an indexed library takes as long as indexing it. Meanwhile the
    # active model's vectors keep serving searches, and the new model's vectors are collected
    # in ``staged_embeddings``. Every photo that is indexed or pending needs one (new photos
    # also get the active model's vector, so they are searchable at once). When none is
    # missing, :meth:`swap_staged` makes them the photos' embeddings in one transaction.
    # Removing a photo removes its staged row (foreign key cascade); a photo whose content
    # changed loses its staged vector (see ``apply_scan``) and is encoded again.

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

    def cancel_staged_model(self) -> bool:
        """Drop the staged change and its vectors; True when there was one."""
        with self._write() as conn:
            had = self._staged_id(conn) is not None
            self._clear_staged(conn)
            return had

    @staticmethod
    def _staged_id(conn) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'staged_model_id'").fetchone()
        return row[0] or None

    @staticmethod
    def _clear_staged(conn) -> None:
        conn.execute("DELETE FROM staged_embeddings")
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

    # Photos that must hold a staged vector before the swap: those searchable now or about to
    # be. Failed photos fail for every model; offline ones cannot be read (they keep a staged
    # vector if they got one, else they go back to pending when they return).
    _STAGED_MISSING = (
        "FROM photos p WHERE p.status IN ('indexed', 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM staged_embeddings s WHERE s.photo_id = p.id)"
    )

    def staged_pending(self, limit: int = 256, *, after_id: int = 0) -> list[Photo]:
        """Up to ``limit`` photos still lacking a staged vector, in id order after
        ``after_id`` (the same paging as :meth:`pending`)."""
        columns = ", ".join(f"p.{c.strip()}" for c in _PHOTO_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns} {self._STAGED_MISSING} AND p.id > ? ORDER BY p.id LIMIT ?",
            (after_id, limit),
        )
        return [_photo(r) for r in rows]

    def staged_progress(self) -> tuple[int, int]:
        """``(done, total)`` of the staged change: photos holding a staged row, and those
        plus the ones still missing one. ``(0, 0)`` when no change runs."""
        with self._lock:
            if self.staged_model_id is None:
                return 0, 0
            done = self._query("SELECT COUNT(*) FROM staged_embeddings")[0][0]
            missing = self._query(f"SELECT COUNT(*) {self._STAGED_MISSING}")[0][0]
        return done, done + missing

    def record_staged_embeddings(
        self, model_id: str, batch: Iterable[tuple[int, np.ndarray, str | None]]
    ) -> list[int]:
        """Store ``(photo_id, vector, capture_date)`` of the staged model ``model_id`` in one
        transaction (same checks as :meth:`record_embeddings`). Photos removed meanwhile
        are skipped; returns the ids written. Refused when ``model_id`` is not the change
        under way, so a cancelled change never leaves vectors behind."""
        batch = list(batch)
        written: list[int] = []
        with self._write() as conn:
            self._require_staged(conn, model_id)
            row = conn.execute("SELECT value FROM meta WHERE key = 'staged_dim'").fetchone()
            dim = _check_vectors(batch, int(row[0]) if row else None, model_id)
            if dim is not None and row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('staged_dim', ?)", (str(dim),))
            for photo_id, vector, capture_date in batch:
                cur = conn.execute(
                    "INSERT OR REPLACE INTO staged_embeddings(photo_id, embedding, capture_date) "
                    "SELECT id, ?, ? FROM photos WHERE id = ?",
                    (np.asarray(vector, dtype="<f4").tobytes(), capture_date, photo_id),
                )
                if cur.rowcount:
                    written.append(photo_id)
        return written

    def record_staged_failure(self, model_id: str, photo_id: int, reason: str) -> None:
        """The staged model could not read a photo: it is not retried during this change,
        and becomes ``failed`` at the swap."""
        with self._write() as conn:
            self._require_staged(conn, model_id)
            conn.execute(
                "INSERT OR REPLACE INTO staged_embeddings(photo_id, embedding, error) "
                "SELECT id, NULL, ? FROM photos WHERE id = ?",
                (reason, photo_id),
            )

    def staged_embeddings(self, *, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` chunks of the staged vectors (to rebuild a staged index)."""
        for rows in self._pages(
            "SELECT photo_id, embedding FROM staged_embeddings "
            "WHERE embedding IS NOT NULL AND photo_id > ? ORDER BY photo_id LIMIT ?",
            (),
            chunk,
        ):
            yield _id_vector_arrays(rows)

    def swap_staged(self, model_id: str) -> int | None:
        """Make the staged vectors the photos' embeddings and ``model_id`` the library's
        model, in one transaction. Returns the new generation, or ``None`` (nothing
        changed) while some photo still lacks a staged vector.

        Photos without a staged vector (offline ones) lose their old one and are pending
        again when they return; photos the staged model could not read become failed.
        """
        with self._write() as conn:
            self._require_staged(conn, model_id)
            if conn.execute(f"SELECT EXISTS (SELECT 1 {self._STAGED_MISSING})").fetchone()[0]:
                return None
            generation = self._bump_generation(conn)
            conn.execute(
                "UPDATE photos SET embedding = NULL, model_id = NULL, embedding_gen = 0, "
                "status = CASE status WHEN 'indexed' THEN 'pending' ELSE status END "
                "WHERE embedding IS NOT NULL AND id NOT IN "
                "(SELECT photo_id FROM staged_embeddings WHERE embedding IS NOT NULL)"
            )
            conn.execute(
                "UPDATE photos SET status = 'failed', error = s.error, embedding = NULL, "
                "model_id = NULL, embedding_gen = 0 FROM staged_embeddings s "
                "WHERE s.photo_id = photos.id AND s.embedding IS NULL "
                "AND photos.status IN ('indexed', 'pending')"
            )
            conn.execute(
                "UPDATE photos SET embedding = s.embedding, model_id = ?, embedding_gen = ?, "
                "capture_date = COALESCE(s.capture_date, photos.capture_date), error = NULL, "
                "status = CASE photos.status WHEN 'offline' THEN 'offline' ELSE 'indexed' END "
                "FROM staged_embeddings s WHERE s.photo_id = photos.id "
                "AND s.embedding IS NOT NULL AND photos.status IN ('indexed', 'pending', 'offline')",
                (model_id, generation),
            )
            staged_dim = conn.execute("SELECT value FROM meta WHERE key = 'staged_dim'").fetchone()
            conn.execute("DELETE FROM meta WHERE key = 'dim'")
            if staged_dim is not None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", staged_dim)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_id,))
            self._clear_staged(conn)
        return generation

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
        """Forget a folder and its photos. Returns the ids of photos that had embeddings
        (the vector index must drop them)."""
        with self._write() as conn:
            folder_id = self._folder_id(conn, folder)
            dropped = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM photos WHERE folder_id = ? AND embedding IS NOT NULL",
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
        that have a vector and a partial hash: what a reconcile keeps of the photos it is
        about to remove, to recognise them if they turn up again."""
        ids = list(photo_ids)
        out = []
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            rows = self._query(
                "SELECT id, size, phash, model_id, embedding, capture_date FROM photos "
                f"WHERE id IN ({','.join('?' * len(part))}) "
                "AND embedding IS NOT NULL AND phash IS NOT NULL",
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
                cur = conn.execute(
                    "INSERT INTO photos(folder_id, path, size, mtime_ns, phash, status) "
                    "VALUES (?, ?, ?, ?, ?, 'pending') "
                    "ON CONFLICT(path) DO UPDATE SET folder_id = excluded.folder_id, "
                    "size = excluded.size, mtime_ns = excluded.mtime_ns, phash = excluded.phash, "
                    "status = 'pending', error = NULL, embedding = NULL, model_id = NULL "
                    "RETURNING id",
                    (f.folder_id, _enc(f.path), f.size, f.mtime_ns, f.phash),
                )
                added_ids.append(cur.fetchone()[0])
                # A path seen again may be other content: its staged vector is stale.
                conn.execute("DELETE FROM staged_embeddings WHERE photo_id = ?", (added_ids[-1],))
            for f in scan.failed:
                had = conn.execute(
                    "SELECT id FROM photos WHERE path = ? AND embedding IS NOT NULL",
                    (_enc(f.path),),
                ).fetchone()
                if had:  # was fine, now broken (e.g. its link target vanished)
                    dropped.append(had[0])
                conn.execute(
                    "DELETE FROM staged_embeddings WHERE photo_id = "
                    "(SELECT id FROM photos WHERE path = ?)",
                    (_enc(f.path),),
                )
                conn.execute(
                    "INSERT INTO photos(folder_id, path, size, mtime_ns, status, error) "
                    "VALUES (?, ?, 0, 0, 'failed', ?) "
                    "ON CONFLICT(path) DO UPDATE SET status = 'failed', error = excluded.error, "
                    "embedding = NULL, model_id = NULL",
                    (f.folder_id, _enc(f.path), f.reason),
                )
            for photo_id, f in scan.updated:
                had = conn.execute(
                    "SELECT embedding IS NOT NULL FROM photos WHERE id = ?", (photo_id,)
                ).fetchone()
                if had and had[0]:
                    dropped.append(photo_id)
                conn.execute("DELETE FROM staged_embeddings WHERE photo_id = ?", (photo_id,))
                conn.execute(
                    "UPDATE photos SET size = ?, mtime_ns = ?, phash = ?, status = 'pending', "
                    "error = NULL, embedding = NULL, model_id = NULL WHERE id = ?",
                    (f.size, f.mtime_ns, f.phash, photo_id),
                )
            for photo_id, f in scan.moved:
                # The content is the same file: keep embedding and status, follow the path.
                conn.execute(
                    "UPDATE photos SET folder_id = ?, path = ?, size = ?, mtime_ns = ?, "
                    "status = CASE status WHEN 'offline' THEN "
                    "(CASE WHEN embedding IS NULL THEN 'pending' ELSE 'indexed' END) "
                    "ELSE status END WHERE id = ?",
                    (f.folder_id, _enc(f.path), f.size, f.mtime_ns, photo_id),
                )
            if scan.removed:
                dropped.extend(self._delete_photos(conn, scan.removed))
            for photo_id in scan.restored:
                conn.execute(
                    "UPDATE photos SET status = CASE WHEN embedding IS NOT NULL THEN 'indexed' "
                    "WHEN error IS NOT NULL THEN 'failed' ELSE 'pending' END "
                    "WHERE id = ? AND status = 'offline'",
                    (photo_id,),
                )
            for folder_id in scan.offline_folders:
                conn.execute(
                    "UPDATE photos SET status = 'offline' WHERE folder_id = ?", (folder_id,)
                )
            generation = (
                self._bump_generation(conn)
                if dropped
                else int(
                    conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
                )
            )
        return ScanApplied(added_ids, dropped, len(scan.moved), generation)

    @staticmethod
    def _delete_photos(conn, ids: Iterable[int]) -> list[int]:
        dropped = []
        for photo_id in ids:
            row = conn.execute(
                "DELETE FROM photos WHERE id = ? RETURNING embedding IS NOT NULL", (photo_id,)
            ).fetchone()
            if row and row[0]:
                dropped.append(photo_id)
        return dropped

    def remove_photos(self, ids: Iterable[int]) -> list[int]:
        """Delete photos; returns those that had embeddings."""
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
        return [_photo(r) for r in rows]

    def record_embeddings(
        self, batch: Iterable[tuple[int, np.ndarray, str | None]]
    ) -> tuple[list[int], int]:
        """Store a batch of ``(photo_id, vector, capture_date)`` in one transaction.

        Vectors must be 1-D, of the model's dimension, L2-normalised float32 (checked: one
        wrong vector aborts the whole batch). Photos removed meanwhile are skipped. Returns
        ``(ids written, new generation)``: the ids go into the vector index, the generation
        into its sidecar.
        """
        batch = list(batch)
        written: list[int] = []
        with self._write() as conn:
            model_id = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if not model_id:
                raise CatalogError(f"{self.path}: set_model() before recording embeddings")
            row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
            dim = _check_vectors(batch, int(row[0]) if row else None, model_id)
            if dim is not None and row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))
            generation = self._bump_generation(conn)
            for photo_id, vector, capture_date in batch:
                blob = np.asarray(vector, dtype="<f4").tobytes()
                cur = conn.execute(
                    "UPDATE photos SET embedding = ?, model_id = ?, embedding_gen = ?, "
                    "capture_date = ?, status = 'indexed', error = NULL WHERE id = ?",
                    (blob, model_id, generation, capture_date, photo_id),
                )
                if cur.rowcount:
                    written.append(photo_id)
        return written, generation

    def record_failure(self, photo_id: int, reason: str) -> None:
        """Mark a photo failed with a readable reason; it is not retried until it changes."""
        with self._write() as conn:
            conn.execute(
                "UPDATE photos SET status = 'failed', error = ? WHERE id = ?", (reason, photo_id)
            )

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
        return _photo(rows[0]) if rows else None

    def photos_by_id(self, photo_ids: Iterable[int], *, chunk: int = 500) -> dict[int, Photo]:
        """The photos of ``photo_ids`` that still exist, by id: one query (and one wait for
        the lock, which the indexer's writer holds while it commits) per ``chunk`` ids,
        where a page of search results asked one photo at a time."""
        ids = list(dict.fromkeys(int(i) for i in photo_ids))
        found: dict[int, Photo] = {}
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            marks = ",".join("?" * len(part))
            for row in self._query(
                f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE id IN ({marks})", part
            ):
                photo = _photo(row)
                found[photo.id] = photo
        return found

    def photo_by_path(self, path: str | os.PathLike) -> Photo | None:
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE path = ?", (_enc(path),))
        return _photo(rows[0]) if rows else None

    def photos(self, status: str | None = None, *, chunk: int = 1000) -> Iterator[Photo]:
        """Every photo (or those with ``status``), in id order, fetched ``chunk`` at a time."""
        where = "" if status is None else "status = ? AND"
        extra = () if status is None else (status,)
        for rows in self._pages(
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE {where} id > ? ORDER BY id LIMIT ?",
            extra,
            chunk,
        ):
            for r in rows:
                yield _photo(r)

    def embedding_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM photos WHERE embedding IS NOT NULL")[0][0]

    def embedding_ids(self) -> np.ndarray:
        """Ids of every photo holding an embedding (what the vector index must contain)."""
        rows = self._query("SELECT id FROM photos WHERE embedding IS NOT NULL ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def embeddings(
        self, *, chunk: int = 4096, since_generation: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids int64 [n], vectors float32 [n, D])`` chunks of stored embeddings.

        With ``since_generation`` only those written after that generation: what a vector
        index saved at that generation is missing.
        """
        for rows in self._pages(
            "SELECT id, embedding FROM photos WHERE embedding IS NOT NULL "
            "AND embedding_gen > ? AND id > ? ORDER BY id LIMIT ?",
            (since_generation,),
            chunk,
        ):
            yield _id_vector_arrays(rows)

    def embedding(self, photo_id: int) -> np.ndarray | None:
        rows = self._query("SELECT embedding FROM photos WHERE id = ?", (photo_id,))
        if not rows or rows[0][0] is None:
            return None
        return np.frombuffer(rows[0][0], dtype="<f4").astype(np.float32)
