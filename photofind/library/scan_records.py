"""The catalog's side of a scan: its folders, the files it knows, and a scan's changes.

:class:`ScanRecords` is a part of :class:`photofind.library.catalog.Catalog` (it uses the
catalog's one connection, lock and write transactions). The scanner compares the disk with
:meth:`ScanRecords.known_files` (and :meth:`ScanRecords.files_with_content` for a moved
file's old place); :meth:`ScanRecords.apply_scan` writes its result in one transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from photofind.formats.kinds import PHOTO, kind_of
from photofind.library.catalog_rows import (
    _HAS_VECTOR,
    CatalogError,
    Folder,
    KnownFile,
    KnownFiles,
    ScanApplied,
    _dec,
    _enc,
)


def _kind(path: str) -> str:
    """What the item is, by its name (photofind.formats.kinds)."""
    return kind_of(path) or PHOTO


class ScanRecords:
    """The folders and scanning methods of the catalog (see the module's docstring)."""

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
                    "INSERT INTO photos(id, folder_id, path, size, mtime_ns, phash, status, kind) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) "
                    "ON CONFLICT(path) DO UPDATE SET folder_id = excluded.folder_id, "
                    "size = excluded.size, mtime_ns = excluded.mtime_ns, phash = excluded.phash, "
                    "status = 'pending', error = NULL, kind = excluded.kind, duration_ms = NULL "
                    "RETURNING id",
                    (
                        self._next_id(conn),
                        f.folder_id,
                        _enc(f.path),
                        f.size,
                        f.mtime_ns,
                        f.phash,
                        _kind(f.path),
                    ),
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
                    "INSERT INTO photos(id, folder_id, path, size, mtime_ns, status, error, kind) "
                    "VALUES (?, ?, ?, 0, 0, 'failed', ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET status = 'failed', error = excluded.error",
                    (self._next_id(conn), f.folder_id, _enc(f.path), f.reason, _kind(f.path)),
                )
            for photo_id, f in scan.updated:
                dropped.extend(self._forget_results(conn, photo_id))
                conn.execute(
                    "UPDATE photos SET size = ?, mtime_ns = ?, phash = ?, status = 'pending', "
                    "error = NULL, duration_ms = NULL WHERE id = ?",
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
        """Give a photo a new path (and folder): its vectors stay. The scanner and the
        watcher record moves through :meth:`apply_scan`; this is the one-photo form."""
        with self._write() as conn:
            sets, params = "path = ?", [_enc(new_path)]
            if folder_id is not None:
                sets += ", folder_id = ?"
                params.append(folder_id)
            cur = conn.execute(f"UPDATE photos SET {sets} WHERE id = ?", (*params, photo_id))
            if cur.rowcount != 1:
                raise CatalogError(f"no photo with id {photo_id} in {self.path}")
            self._bump_generation(conn)  # folder filters read the path
