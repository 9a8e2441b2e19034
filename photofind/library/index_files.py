"""The vector index's files: their names, what the sidecar may claim, the catalog-lost guard.

The index is two files in the library folder: the hnswlib graph (:data:`INDEX_NAME`) and a
JSON sidecar (:data:`SIDECAR_NAME`) naming its size, sha256, model, dimension, graph
parameters and the catalog generation it reflects. This module reads and checks the
sidecar (any value out of range is a damaged sidecar, never trusted) and refuses to rebuild
from a catalog that looks emptied behind our back; :mod:`photofind.library.vector_index`
re-exports its public names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from photofind.errors import PhotofindError
from photofind.library.catalog import CATALOG_NAME
from photofind.library.model_id import ModelId

INDEX_NAME = "vectors.hnsw"
SIDECAR_NAME = "vectors.json"
SIDECAR_FORMAT = 1

# What a sidecar may claim: a larger dimension or graph parameter is a damaged sidecar.
_MAX_DIM = 1 << 16
_MAX_PARAM = 1 << 16


class VectorIndexError(PhotofindError):
    """The vector index cannot be used as asked (wrong dimension, no model, ...)."""


@dataclass(frozen=True)
class HnswParams:
    """Graph parameters, chosen with ``tests/bench/bench_vectors.py`` (see its output).

    On 100k clustered CLIP-like 512-d vectors (2 cores, hnswlib 0.8): M=12/efc=100 needs
    ef=128 for recall@10 >= 0.99, M=16/efc=200 ef=64 (0.995), M=24/efc=200 ef=32 (0.992),
    for the same build time as M=16 and 3% more bytes per vector. At 1M, M=24/efc=200 gives
    0.971 at ef=64, 0.991 at ef=96 and 0.9986 at ef=128 (0.42 ms per query on one core,
    exact search 85 ms): ef=128 keeps the margin.
    """

    M: int = 24
    ef_construction: int = 200
    ef: int = 128


def _write_private(target: Path, text: str) -> Path:
    """``text`` in a new temporary file beside ``target``, flushed to disk."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def _read_sidecar(path: Path) -> dict:
    meta = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"unknown format {meta.get('format')!r}")
    return meta


def _int_list(value) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise ValueError("the deleted ids are not a list of whole numbers")
    if value and (min(value) < 0 or max(value) >= 1 << 62):
        raise ValueError("a deleted id out of range")
    return value


def _params(value) -> HnswParams:
    if not isinstance(value, dict):
        raise ValueError("params is not an object")
    params = HnswParams(**value)
    for name, v in asdict(params).items():
        if type(v) is not int or not 0 < v <= _MAX_PARAM:
            raise ValueError(f"params.{name} = {v!r}")
    return params


def saved_count(library_dir: str | os.PathLike) -> tuple[int, int, str | None]:
    """``(vectors, generation, model id)`` that the saved index's sidecar claims, or
    ``(0, 0, None)`` when there is no readable sidecar. Unverified: for telling whether a
    catalog lost photos, not for trusting the index."""
    try:
        meta = _read_sidecar(Path(library_dir) / SIDECAR_NAME)
        return int(meta["count"]), int(meta["generation"]), meta.get("model_id")
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return 0, 0, None


class CatalogLostError(VectorIndexError):
    """The catalog holds no photos where the saved index says it had some."""


def refuse_if_catalog_lost(library_dir: str | os.PathLike, catalog) -> None:
    """Raise :class:`CatalogLostError` when the catalog looks emptied behind our back.

    Rebuilding an index from an empty catalog deletes every vector; when the catalog is
    empty because it lost its data (its ``-wal`` file deleted, the file replaced or
    restored from long ago), that would finish the loss and hide it. An empty catalog is
    trusted only when it moved on since the index was saved (every removal of photos
    bumps its generation) or the index had nothing to lose.
    """
    count, generation, model = saved_count(library_dir)
    if count <= 0 or catalog.has_photos() or catalog.generation > generation:
        return
    raise CatalogLostError(lost_catalog_message(library_dir, count, model))


def lost_catalog_message(library_dir, count: int, model: str | None) -> str:
    held = f" of model {ModelId.parse(model).name}" if model else ""
    return (
        f"the catalog of the library {library_dir} holds no photos, but its vector index "
        f"holds {count:,} vectors{held}: the catalog has lost its contents (its "
        f"{CATALOG_NAME}-wal file deleted, or the file replaced?). Nothing was changed. "
        f"Restore {CATALOG_NAME} and its -wal file from a backup; or, to start this library "
        f"over, delete {INDEX_NAME} and {SIDECAR_NAME} and index your folders again"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
