"""One object over a library folder: catalog, vector index, scanning and indexing.

The CLI, the watcher and the GUI all go through :class:`Library`; dependencies come in
as arguments (the model is passed to :meth:`Library.index`), never from globals.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from photofind.library.catalog import Catalog, Folder, ScanApplied
from photofind.library.indexer import IndexControl, Indexer, IndexStats
from photofind.library.scanner import ScanResult, scan
from photofind.library.vector_index import VectorIndex

log = logging.getLogger(__name__)


def model_id(model) -> str:
    """Identifies the vectors a model makes: its name and the hash of its image encoder."""
    return f"{model.info.name}@{model.spec.files['visual'].sha256[:16]}"


@dataclass(frozen=True)
class ScanReport:
    result: ScanResult
    applied: ScanApplied


class Library:
    def __init__(self, root: Path, catalog: Catalog, index: VectorIndex):
        self.root = root
        self.catalog = catalog
        self.index = index

    @classmethod
    def open(cls, root: str | os.PathLike, *, readonly: bool = False) -> Library:
        """Open (creating when writable) the library in ``root``.

        A writable open takes the library's lock: a second writer gets
        :class:`photofind.library.LibraryLockedError`. Readers never block.
        """
        root = Path(root)
        catalog = Catalog.open(root, readonly=readonly)
        try:
            index = VectorIndex.open(root, catalog)
        except BaseException:
            catalog.close()
            raise
        return cls(root, catalog, index)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def readonly(self) -> bool:
        return self.catalog.readonly

    # -- folders --------------------------------------------------------------------------

    def add_folder(self, path: str | os.PathLike) -> Folder:
        path = Path(path).expanduser()
        if not path.is_dir():
            from photofind.errors import PhotofindError

            raise PhotofindError(f"{path} is not a folder")
        return self.catalog.add_folder(path)

    def remove_folder(self, path: str | os.PathLike) -> int:
        """Forget a folder: its photos leave the catalog and the index. Returns how many."""
        dropped = self.catalog.remove_folder(path)
        if dropped:
            self.index.remove(dropped)
            self.index.generation = self.catalog.generation
            self.index.save(self.root)
        return len(dropped)

    def folders(self) -> list[Folder]:
        return self.catalog.folders()

    # -- keeping in step with the disk ----------------------------------------------------

    def scan(self, folders=None) -> ScanReport:
        """Compare the disk with the catalog and apply the difference."""
        result = scan(self.catalog, folders)
        applied = self.catalog.apply_scan(result)
        if applied.dropped_ids:
            self.index.remove(applied.dropped_ids)
        self.index.generation = applied.generation
        for problem in result.problems:
            log.warning("%s: %s", problem.path, problem.reason)
        return ScanReport(result, applied)

    def use_model(self, model) -> bool:
        """Make ``model`` the library's model; a different one means a full re-index."""
        changed = self.catalog.set_model(model_id(model))
        if changed:
            self.index = VectorIndex.build(self.catalog, dim=model.info.dim)
            self.index.save(self.root)
        return changed

    def index_pending(
        self, model, *, progress=None, control: IndexControl | None = None, **options
    ) -> IndexStats:
        """Encode every pending photo with ``model``."""
        self.use_model(model)
        indexer = Indexer(
            self.catalog,
            self.index,
            model,
            library_dir=self.root,
            progress=progress,
            control=control,
            **options,
        )
        return indexer.run()

    # -- reading --------------------------------------------------------------------------

    def status(self) -> dict:
        counts = self.catalog.counts()
        return {
            "indexed": counts.get("indexed", 0),
            "pending": counts.get("pending", 0),
            "failed": counts.get("failed", 0),
            "offline": counts.get("offline", 0),
            "folders": len(self.catalog.folders()),
            "model": self.catalog.model_id,
            "vectors_in_index": len(self.index),
            "library": str(self.root),
        }
