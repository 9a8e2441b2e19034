"""The catalog's rows as Python values, and the rules every part of the catalog shares.

The statuses, the analysers' outcomes, the records read back (:class:`Photo`,
:class:`Folder`, :class:`KnownFile` ...), the error class, how paths are stored (``os.fsencode``
BLOBs) and how vectors are checked before they are written. :mod:`photofind.library.catalog`
re-exports the public names; the parts of :class:`photofind.library.catalog.Catalog` (its
mixins) import them from here, below the class they make up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from photofind.errors import PhotofindError

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
    #: the library's model when the photo is indexed (its vectors are that model's), else None
    model_id: str | None
    #: what the item is: "photo", "raw" or "video" (photofind.formats.kinds)
    kind: str = "photo"
    #: a video's length in ms once it was read; None for a still
    duration_ms: int | None = None


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


_PHOTO_COLUMNS = (
    "id, folder_id, path, size, mtime_ns, phash, status, error, capture_date, kind, duration_ms"
)


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
    return Photo(
        row[0],
        row[1],
        _dec(row[2]),
        *row[3:9],
        active if row[6] == INDEXED else None,
        row[9],
        row[10],
    )


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
