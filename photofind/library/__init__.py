"""The library: the catalog (SQLite, the truth), the vector index (derived) and the scanner.

Plain Python, no Qt: the CLI, the GUI and the tests drive the same objects. The indexing
pipeline plugs in as: ``scan(catalog)`` -> ``catalog.apply_scan(result)`` -> a decode pool
reading each analyser's pending items (:mod:`photofind.library.analysers`; the CLIP
embedding's are ``catalog.pending(limit, after_id=...)``) -> batches -> one writer thread
calling each analyser's ``record`` (CLIP: ``catalog.record_embeddings(batch)`` /
``record_failure`` and then ``index.add(ids, vectors)``), ``index.remove(ids)`` for what a
scan dropped, saving ``index.save(dir, generation)`` now and then. A crash between those steps only leaves the index behind the catalog, which
``VectorIndex.open`` catches up on.
"""

from photofind.library.catalog import (
    FAILED,
    INDEXED,
    OFFLINE,
    PENDING,
    Catalog,
    CatalogError,
    Folder,
    KnownFile,
    Photo,
    ScanApplied,
)
from photofind.library.hashing import partial_hash
from photofind.library.lockfile import LibraryLockedError
from photofind.library.scanner import FailedFile, FileInfo, ScanProblem, ScanResult, scan
from photofind.library.vector_index import HnswParams, VectorIndex, VectorIndexError

__all__ = [
    "FAILED",
    "INDEXED",
    "OFFLINE",
    "PENDING",
    "Catalog",
    "CatalogError",
    "FailedFile",
    "FileInfo",
    "Folder",
    "HnswParams",
    "KnownFile",
    "LibraryLockedError",
    "Photo",
    "ScanApplied",
    "ScanProblem",
    "ScanResult",
    "VectorIndex",
    "VectorIndexError",
    "partial_hash",
    "scan",
]
