"""The vector index: an HNSW graph (hnswlib) over the catalog's embeddings.

It is *derived*: the catalog is the truth, and this file only saves time. So it is checked
before it is trusted ("detect, don't trust"): a JSON sidecar records the size and sha256 of
the index file, the model, the dimension and the catalog generation the index reflects. On
open:

- file missing, sidecar missing/garbled, size or sha256 wrong, model or dimension changed,
  or the index claims a generation the catalog never reached: rebuild from the catalog with a
  logged warning. The checksum is verified *before* hnswlib sees the file, because hnswlib's
  C++ loader trusts its input and can crash the process on garbage.
- behind the catalog (the normal state after a crash or while another process indexes):
  catch up with exactly the vectors written since (their ``gen``) and drop the ids the
  catalog no longer holds.
- afterwards the live count must equal the catalog's embedding count, or it is rebuilt.

Labels are the catalog's vector ids (a still's is its photo id, so an index saved before
vectors had a table of their own, schema v2, holds the right labels and stays valid; a
video's frames have ids of their own, which the search maps back to the video and the
frame's time). The space is inner product on L2-normalised vectors (= cosine).
Removal marks the slot deleted; new photos reuse deleted slots (``allow_replace_deleted``),
and the capacity grows geometrically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Collection
from dataclasses import asdict
from pathlib import Path

import hnswlib
import numpy as np

from photofind.atomic import atomic_path, fsync_dir
from photofind.library.filtered_scan import (
    FILTERED_EF_MAX,
    GET_ITEMS_US,
    READ_US,
    dot,
    exact_filter_limit,
)
from photofind.library.hnsw_file import structure_problem
from photofind.library.index_files import (
    _MAX_DIM,
    INDEX_NAME,
    SIDECAR_FORMAT,
    SIDECAR_NAME,
    CatalogLostError,
    HnswParams,
    VectorIndexError,
    _int_list,
    _params,
    _read_sidecar,
    _sha256,
    _write_private,
    lost_catalog_message,
    refuse_if_catalog_lost,
    saved_count,
)

log = logging.getLogger(__name__)

__all__ = [
    "FILTERED_EF_MAX",
    "GET_ITEMS_US",
    "READ_US",
    "INDEX_NAME",
    "SIDECAR_FORMAT",
    "SIDECAR_NAME",
    "CatalogLostError",
    "HnswParams",
    "VectorIndex",
    "VectorIndexError",
    "dot",
    "exact_filter_limit",
    "lost_catalog_message",
    "refuse_if_catalog_lost",
    "saved_count",
]


# hnswlib keeps a few hundred bytes per slot even when empty; start small, grow by half.
_MIN_CAPACITY = 1024
_GROWTH = 1.5

# Label states in the dense per-id table (photo ids are SQLite rowids: dense and small).
_ABSENT, _LIVE, _DELETED = 0, 1, 2

# How far above the catalog's largest photo id an index label may lie (photos removed from
# the top since the index was saved) before the index is taken for damaged.
_ID_SLACK = 1 << 20

# Vectors replaced in place per hold of the index lock (see VectorIndex.add).
_UPDATES_PER_LOCK = 4
# New vectors added per hold of the index lock.
_NEW_PER_LOCK = 16


class VectorIndex:
    """HNSW index of photo embeddings. Thread-safe: every call takes one lock."""

    def __init__(self, dim: int | None, *, model_id: str | None, params: HnswParams | None = None):
        self.dim = dim
        self.model_id = model_id
        self.params = params or HnswParams()
        #: the catalog generation this index reflects
        self.generation = 0
        self._index: hnswlib.Index | None = None
        self._state = np.zeros(0, dtype=np.uint8)
        self._live = 0
        self._deleted = 0
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        if dim is not None:
            self._create(_MIN_CAPACITY)

    # ----------------------------------------------------------------- construction

    def _create(self, capacity: int) -> None:
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(
            max_elements=capacity,
            M=self.params.M,
            ef_construction=self.params.ef_construction,
            random_seed=100,
            allow_replace_deleted=True,
        )
        index.set_ef(self.params.ef)
        self._index = index

    @classmethod
    def build(cls, catalog, *, params: HnswParams | None = None, dim: int | None = None):
        """A fresh index of every embedding in ``catalog``."""
        generation = catalog.generation
        count = catalog.embedding_count()
        idx = cls(None, model_id=catalog.model_id, params=params)
        for ids, vectors in catalog.embeddings(chunk=8192):
            if idx._index is None:
                idx.dim = vectors.shape[1]
                idx._create(max(_MIN_CAPACITY, count))
            idx.add(ids, vectors)
        if idx._index is None and dim is not None:
            idx.dim = dim
            idx._create(_MIN_CAPACITY)
        idx.generation = generation
        return idx

    @classmethod
    def open(
        cls,
        library_dir: str | os.PathLike,
        catalog,
        *,
        params: HnswParams | None = None,
        save: bool | None = None,
    ) -> VectorIndex:
        """Load the library's index, catching it up with or rebuilding it from ``catalog``.

        ``save`` (default: when the catalog is writable) writes a rebuilt or caught-up index
        back; read-only processes keep their repaired copy in memory.
        """
        library_dir = Path(library_dir)
        if save is None:
            save = not catalog.readonly
        refuse_if_catalog_lost(library_dir, catalog)
        idx, problem = cls._load_checked(library_dir, catalog, params)
        changed = False
        if idx is None:
            never_saved = not any((library_dir / n).exists() for n in (INDEX_NAME, SIDECAR_NAME))
            if never_saved:
                log.info("vector index %s: building from the catalog", library_dir)
            else:
                log.warning(
                    "vector index %s: %s; rebuilding from the catalog", library_dir, problem
                )
            idx = cls.build(catalog, params=params)
            changed = True
        elif idx.generation != catalog.generation:
            log.info(
                "vector index %s is at generation %d, catalog at %d: catching up",
                library_dir,
                idx.generation,
                catalog.generation,
            )
            idx.sync(catalog)
            changed = True
        expected = catalog.embedding_count()
        if len(idx) != expected:
            log.warning(
                "vector index %s holds %d vectors, the catalog %d: out of step; rebuilding",
                library_dir,
                len(idx),
                expected,
            )
            idx = cls.build(catalog, params=params)
            changed = True
        if changed and save:
            try:
                idx.save(library_dir)
            except VectorIndexError as exc:
                # Derived data: the repaired copy serves this process from memory all the
                # same, and the next open repairs it again.
                log.warning("%s", exc)
        return idx

    @classmethod
    def _load_checked(cls, library_dir: Path, catalog, params) -> tuple[VectorIndex | None, str]:
        """Load the saved index if every check passes; else ``(None, why not)``."""
        index_path = library_dir / INDEX_NAME
        sidecar_path = library_dir / SIDECAR_NAME
        if not index_path.exists():
            return None, f"{index_path.name} is missing"
        try:
            meta = _read_sidecar(sidecar_path)
            size, digest = int(meta["file_size"]), str(meta["sha256"])
            dim, generation, count = int(meta["dim"]), int(meta["generation"]), int(meta["count"])
            deleted = np.asarray(_int_list(meta["deleted"]), dtype=np.int64)
            model_id = meta["model_id"]
            saved_params = _params(meta["params"])
            if not 0 < dim <= _MAX_DIM or count < 0:
                raise ValueError(f"dimension {dim}, count {count}")
        except FileNotFoundError:
            return None, f"{sidecar_path.name} is missing"
        except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
            return None, f"{sidecar_path.name} is unreadable ({exc})"
        if model_id != catalog.model_id:
            return None, f"it holds vectors of model {model_id!r}, the catalog {catalog.model_id!r}"
        if generation > catalog.generation:
            return None, (
                f"it claims catalog generation {generation}, the catalog is at {catalog.generation}"
            )
        if catalog.dim is not None and dim != catalog.dim:
            return None, f"it holds {dim}-dimensional vectors, the catalog {catalog.dim}"
        actual = index_path.stat().st_size
        if actual != size:
            return None, f"{index_path.name} is {actual} bytes, {size} expected (truncated?)"
        if _sha256(index_path) != digest:
            return None, f"{index_path.name} does not match its checksum (corrupt)"
        # The checksum vouches for the bytes, not for the sidecar's dimension that hnswlib
        # would read them with.
        problem = structure_problem(index_path, dim)
        if problem is not None:
            return None, problem
        if params is not None and (params.M, params.ef_construction) != (
            saved_params.M,
            saved_params.ef_construction,
        ):
            return None, f"it was built with {saved_params}, {params} asked for"
        idx = cls(None, model_id=model_id, params=params or saved_params)
        idx.dim = dim
        index = hnswlib.Index(space="ip", dim=dim)
        try:
            index.load_index(os.fspath(index_path), allow_replace_deleted=True)
        except (RuntimeError, MemoryError, ValueError) as exc:
            return None, f"hnswlib cannot load {index_path.name} ({exc})"
        index.set_ef(idx.params.ef)
        idx._index = index
        labels = np.asarray(index.get_ids_list(), dtype=np.int64)
        # Ids index a dense table: one far beyond the photos the catalog has would make a
        # huge one. Deleted ids come from the sidecar alone: each must be a label here.
        top = int(labels.max()) if labels.size else -1
        if labels.size and (labels.min() < 0 or top > catalog.max_vector_id() + _ID_SLACK):
            return None, f"it holds vector id {top}, far beyond the catalog's vectors"
        if deleted.size and (
            np.unique(deleted).size != deleted.size or not np.isin(deleted, labels).all()
        ):
            return None, f"{sidecar_path.name} lists deleted ids that the index does not hold"
        idx._grow_state(top + 1)
        idx._state[labels] = _LIVE
        idx._state[deleted] = _DELETED
        idx._live = int(labels.size) - int(deleted.size)
        idx._deleted = int(deleted.size)
        idx.generation = generation
        if idx._live != count:
            return None, f"it holds {idx._live} vectors, its sidecar says {count}"
        return idx, ""

    # ----------------------------------------------------------------- keeping in step

    def sync(self, catalog) -> None:
        """Catch up with the catalog: add what was written since ``generation``, drop what
        the catalog no longer holds."""
        with self._lock:
            target = catalog.generation
            for ids, vectors in catalog.embeddings(since_generation=self.generation):
                self.add(ids, vectors)
            wanted = catalog.embedding_ids()
            live = self.ids()
            gone = np.setdiff1d(live, wanted, assume_unique=True)
            if gone.size:
                self.remove(gone)
            self.generation = target

    # ----------------------------------------------------------------- mutation

    def _grow_state(self, size: int) -> None:
        if size > self._state.size:
            grown = np.zeros(max(size, int(self._state.size * _GROWTH)), dtype=np.uint8)
            grown[: self._state.size] = self._state
            self._state = grown

    def add(self, ids, vectors) -> None:
        """Add vectors under photo ids; an id already present gets its vector replaced."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if ids.size == 0:
            return
        if ids.min() < 0:
            raise VectorIndexError("photo ids must be non-negative")
        with self._lock:
            if self._index is None:
                self.dim = vectors.shape[1]
                self._create(max(_MIN_CAPACITY, ids.size))
            if vectors.shape != (ids.size, self.dim):
                raise VectorIndexError(
                    f"vectors of shape {vectors.shape} for {ids.size} ids, dimension {self.dim}"
                )
            # A batch naming an id twice keeps the last vector.
            _, last = np.unique(ids[::-1], return_index=True)
            keep = np.sort(ids.size - 1 - last)
            ids, vectors = ids[keep], np.ascontiguousarray(vectors[keep])
            self._grow_state(int(ids.max()) + 1)
            present = self._state[ids] != _ABSENT
        # Replacing a vector in the graph re-links its neighbours: ~8 ms a photo at 100,000
        # photos on a busy core, so 32 re-encoded photos held the lock, and every search,
        # for ~260 ms. They go a few at a time; new photos, cheaper each, 16 at a time
        # (32 took 8-17 ms on a quiet core at 100,000 even with a 5x cheaper build setting).
        for rows, per_hold in (
            (np.flatnonzero(present), _UPDATES_PER_LOCK),
            (np.flatnonzero(~present), _NEW_PER_LOCK),
        ):
            for start in range(0, rows.size, per_hold):
                part = rows[start : start + per_hold]
                with self._lock:
                    self._add_locked(ids[part], vectors[part])

    def _add_locked(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """``add`` of distinct ids, under the lock."""
        self._grow_state(int(ids.max()) + 1)
        state = self._state[ids]

        # Ids still in the graph are updated in place. A deleted one is first unmarked:
        # adding it through replace_deleted could put it in a second slot while its old
        # slot keeps its label, which hnswlib later mistakes for the live one.
        revived = ids[state == _DELETED]
        for label in revived:
            self._index.unmark_deleted(int(label))
        present = state != _ABSENT
        if present.any():
            self._index.add_items(vectors[present], ids[present], replace_deleted=False)
        self._state[revived] = _LIVE
        self._live += revived.size
        self._deleted -= revived.size

        new = ~present
        n_new = int(new.sum())
        if not n_new:
            return
        needed = self._index.get_current_count() + max(0, n_new - self._deleted)
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, int(capacity * _GROWTH)))
        reuse = self._deleted > 0
        self._index.add_items(vectors[new], ids[new], replace_deleted=reuse)
        self._state[ids[new]] = _LIVE
        self._live += n_new
        if reuse:
            if n_new >= self._deleted:
                # Every vacant slot was taken; hnswlib dropped their old labels.
                self._state[self._state == _DELETED] = _ABSENT
                self._deleted = 0
            else:
                # Some slots were taken, which ones is hnswlib's choice: ask it.
                still = np.zeros(self._state.size, dtype=bool)
                labels = np.asarray(self._index.get_ids_list(), dtype=np.int64)
                still[labels] = True
                freed = (self._state == _DELETED) & ~still
                self._state[freed] = _ABSENT
                self._deleted -= int(freed.sum())

    def remove(self, ids) -> int:
        """Mark photo ids deleted (their slots are reused by later adds). Returns how many."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        with self._lock:
            ids = ids[(ids >= 0) & (ids < self._state.size)]
            ids = ids[self._state[ids] == _LIVE]
            for label in ids:
                self._index.mark_deleted(int(label))
            self._state[ids] = _DELETED
            self._live -= ids.size
            self._deleted += ids.size
            return int(ids.size)

    # ----------------------------------------------------------------- reading

    def __len__(self) -> int:
        return self._live

    def __contains__(self, photo_id: int) -> bool:
        return 0 <= photo_id < self._state.size and self._state[photo_id] == _LIVE

    def ids(self) -> np.ndarray:
        """Every live photo id, sorted."""
        with self._lock:
            return np.flatnonzero(self._state == _LIVE).astype(np.int64)

    @property
    def capacity(self) -> int:
        return 0 if self._index is None else self._index.get_max_elements()

    def query(
        self,
        vector,
        k: int = 10,
        filter: Callable[[int], bool] | Collection[int] | None = None,
        *,
        ef: int | None = None,
        read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest photos: ``(ids int64, cosine similarities float32)``, best first.

        ``filter`` restricts the result to some photos, either a predicate on the id or a
        collection of allowed ids; the search still returns the ``k`` best allowed photos
        (fewer only when fewer are allowed). A small allowed set is searched exactly.
        ``read``: where an exact search reads the vectors of ids (``(ids, vectors)`` of
        those it has; the catalog's copy is faster than this index's ``get_items``).
        """
        v = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            if self._index is None or self._live == 0 or k <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if v.shape[1] != self.dim:
                raise VectorIndexError(f"query of dimension {v.shape[1]}, index has {self.dim}")
            ef = max(ef or self.params.ef, k)
            if filter is None:
                return self._knn(v, min(k, self._live), ef, None)
            scan = None
            if callable(filter):
                allowed = None
                predicate = filter
            else:
                allowed = np.unique(np.fromiter(filter, dtype=np.int64))
                allowed = allowed[(allowed >= 0) & (allowed < self._state.size)]
                allowed = allowed[self._state[allowed] == _LIVE]
                # Below a few thousand ids an exact scan is both exact and faster than
                # walking a graph in which almost every node is filtered out.
                scan_us = GET_ITEMS_US if read is None else READ_US
                if allowed.size <= exact_filter_limit(self._live, scan_us):
                    if read is None:
                        return self._exact(v, allowed, k)
                    scan = allowed
                else:
                    share = allowed.size / self._live
                    ef = max(ef, min(FILTERED_EF_MAX, int(np.ceil(ef / np.sqrt(share)))))
                    mask = np.zeros(self._state.size, dtype=bool)
                    mask[allowed] = True

                    def predicate(label: int, mask=mask) -> bool:
                        return bool(mask[label])

            if scan is None:
                try:
                    return self._knn(v, min(k, self._live), ef, predicate)
                except RuntimeError:
                    # hnswlib found fewer than k allowed photos: there may be fewer than k.
                    if allowed is None:
                        live = self.ids()
                        allowed = live[np.fromiter((bool(filter(int(i))) for i in live), bool)]
                    if read is None:
                        return self._exact(v, allowed, k)
                    scan = allowed
        # The catalog's read runs outside this index's lock: a long catalog write (a folder
        # removed) must not hold up every other user of the index (the indexer's adds).
        return self._exact(v, scan, k, read)

    def _knn(self, v, k, ef, predicate):
        self._index.set_ef(ef)
        try:
            labels, dist = self._index.knn_query(v, k=k, num_threads=1, filter=predicate)
        finally:
            self._index.set_ef(self.params.ef)
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)

    def _exact(self, v, allowed: np.ndarray, k: int, read=None):
        if allowed.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if read is not None:
            allowed, vectors = read(allowed)
            if allowed.size == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
        else:
            vectors = np.asarray(self._index.get_items(allowed), dtype=np.float32)
        scores = dot(vectors, v[0])
        order = np.argsort(-scores, kind="stable")[:k]
        return allowed[order].astype(np.int64), scores[order].astype(np.float32)

    def get_vectors(self, ids) -> np.ndarray:
        with self._lock:
            return np.asarray(self._index.get_items(np.asarray(ids, np.int64)), np.float32)

    # ----------------------------------------------------------------- saving

    def save(self, library_dir: str | os.PathLike, generation: int | None = None) -> None:
        """Write index and sidecar atomically (temp file + ``os.replace``).

        ``generation`` records which catalog generation the saved index reflects; by
        default the one it was built or synced at. Both are written to temporary files
        and checked (the index file's structure: hnswlib does not report a failed write)
        before either replaces its old copy, so a full disk leaves the previous index and
        sidecar in place, together (:class:`VectorIndexError`). Then the index file goes
        first: a crash before the sidecar follows leaves a checksum mismatch, i.e. a
        rebuild, never a wrong index.

        The index lock is held only while hnswlib writes the temporary file (queries wait
        that long): the temporary file is private, so fsync, checksum and rename run
        without it. Saves are serialised among themselves, so two of them can never pair
        one's index file with the other's sidecar.
        """
        library_dir = Path(library_dir)
        with self._save_lock:
            with self._lock:
                if generation is not None:
                    self.generation = generation
                if self._index is None:
                    # Nothing to save: remove stale files so the next open does not load them.
                    for name in (SIDECAR_NAME, INDEX_NAME):
                        with contextlib.suppress(FileNotFoundError):
                            (library_dir / name).unlink()
                    return
            sidecar_tmp: Path | None = None
            try:
                with atomic_path(library_dir / INDEX_NAME) as tmp:
                    with self._lock:
                        # hnswlib holds the GIL for the whole write (~1 ms per 1,000 vectors).
                        self._index.save_index(os.fspath(tmp))
                        meta = {
                            "format": SIDECAR_FORMAT,
                            "model_id": self.model_id,
                            "dim": self.dim,
                            "space": "ip",
                            "params": asdict(self.params),
                            "generation": self.generation,
                            "count": self._live,
                            "deleted": np.flatnonzero(self._state == _DELETED).tolist(),
                        }
                    # hnswlib ignores write errors: on a full disk it "saves" an empty or a
                    # cut-off file, which a checksum taken now would then vouch for.
                    problem = structure_problem(tmp, self.dim)
                    if problem is not None:
                        raise VectorIndexError(self._not_saved(library_dir, problem))
                    meta["file_size"] = tmp.stat().st_size
                    meta["sha256"] = _sha256(tmp)
                    # Written before the index file is replaced: on a full disk this fails
                    # too, and the previous index and sidecar stay as they were, together.
                    sidecar_tmp = _write_private(
                        library_dir / SIDECAR_NAME, json.dumps(meta, indent=1)
                    )
                os.replace(sidecar_tmp, library_dir / SIDECAR_NAME)
                sidecar_tmp = None
                fsync_dir(library_dir)
            except (OSError, RuntimeError) as exc:  # RuntimeError: hnswlib's own complaint
                why = getattr(exc, "strerror", None) or str(exc)
                raise VectorIndexError(self._not_saved(library_dir, why)) from exc
            finally:
                if sidecar_tmp is not None:
                    with contextlib.suppress(OSError):
                        sidecar_tmp.unlink()

    @staticmethod
    def _not_saved(library_dir: Path, why) -> str:
        try:
            free = f"{shutil.disk_usage(library_dir).free:,} bytes free"
        except OSError:
            free = "free space unknown"
        return (
            f"cannot save the vector index in {library_dir}: {why} ({free}; is the disk "
            "full?); the previous index file is kept, and every vector is safe in the catalog"
        )
