"""One object over a library folder: catalog, vector index, scanning and indexing.

The CLI, the watcher and the GUI all go through :class:`Library`; dependencies come in
as arguments (the model is passed to :meth:`Library.index_pending` and
:meth:`Library.reindex_staged`), never from globals.

Changing the model of an indexed library is staged (:meth:`Library.begin_model_change`):
searches keep using the active model's vectors while :meth:`Library.reindex_staged` collects
the new model's in the catalog and in a staged vector index held in memory. When every photo
has one, the catalog swaps them in one transaction; then the staged index is saved under its
own name (``staged-index/``) and moved over the library's index files. A crash before that
move leaves index files of the old model, which :meth:`VectorIndex.open` notices (model
mismatch) and rebuilds from the catalog; :meth:`Library.open` first finishes a move that
was cut short, so the rebuild is rarely needed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from photofind.atomic import fsync_dir
from photofind.errors import PhotofindError
from photofind.library.analysers import model_id
from photofind.library.catalog import CATALOG_NAME, Catalog, Folder, ScanApplied
from photofind.library.indexer import IndexControl, Indexer, IndexStats, Progress
from photofind.library.model_id import ModelId
from photofind.library.scanner import ScanResult, is_library_folder, scan
from photofind.library.vector_index import (
    INDEX_NAME,
    SIDECAR_NAME,
    CatalogLostError,
    VectorIndex,
    lost_catalog_message,
    saved_count,
)

log = logging.getLogger(__name__)

#: where the staged index is saved before it is moved over the library's index files
STAGED_INDEX_DIR = "staged-index"


@dataclass(frozen=True)
class ScanReport:
    result: ScanResult
    applied: ScanApplied


@dataclass(frozen=True)
class ReindexProgress(Progress):
    """Progress of a staged re-index for ``model`` (its name). ``done`` and ``total`` count
    the whole change, photos re-indexed by earlier (interrupted) runs included."""

    model: str = ""


@dataclass(frozen=True)
class ReindexStats(IndexStats):
    """A staged re-index run; ``swapped``: it completed the change, the model is active."""

    swapped: bool = False
    model_id: str = ""


def _move_staged_files(folder: Path, root: Path) -> None:
    """Move a saved staged index over the library's. The index file goes first, as in
    ``VectorIndex.save``: cut short between the two, the files disagree with the sidecar's
    checksum (a rebuild), or :meth:`Library.open` finds the sidecar still here and moves it."""
    for name in (INDEX_NAME, SIDECAR_NAME):
        source = folder / name
        if source.exists():
            os.replace(source, root / name)
    fsync_dir(root)
    shutil.rmtree(folder, ignore_errors=True)


def _settle_staged_files(root: Path, catalog: Catalog) -> None:
    """After a crash: finish moving a staged index whose swap the catalog committed, or
    drop the leftovers of one whose swap never happened."""
    folder = root / STAGED_INDEX_DIR
    if not folder.is_dir():
        return
    if catalog.staged_model_id is None and catalog.model_id is not None:
        try:
            meta = json.loads((folder / SIDECAR_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if isinstance(meta, dict) and meta.get("model_id") == catalog.model_id:
            log.info("%s: finishing the model swap an interruption cut short", root)
            _move_staged_files(folder, root)
            return
    shutil.rmtree(folder, ignore_errors=True)


def load_model_by_id(root: str | os.PathLike, mid: str, *, provider: str = "auto"):
    """The model, installed for the library in ``root`` or bundled, whose vectors carry the
    id ``mid`` (name and image-encoder hash), or None when this machine has no such package.
    Needs no open library: the command line looks before it opens one for writing."""
    from photofind.clip import available_models, load_model
    from photofind.clip.package import read_manifest
    from photofind.errors import ModelError

    wanted = ModelId.parse(mid)
    found = available_models(Path(root))
    for folder in [found[wanted.name]] if wanted.name in found else list(found.values()):
        try:
            spec = read_manifest(folder)
        except ModelError:
            continue
        if spec.name != wanted.name:
            continue
        # The vectors' digest names the image graph that made them: fp32 or int8.
        for role, precision in (("visual", "exact"), ("visual_int8", "fast")):
            entry = spec.files.get(role)
            if entry is not None and entry.sha256.startswith(wanted.digest):
                model = load_model(
                    folder, provider=provider, library=Path(root), precision=precision
                )
                if ModelId.of(model).digest.startswith(wanted.digest):
                    return model
    return None


class Library:
    def __init__(self, root: Path, catalog: Catalog, index: VectorIndex):
        self.root = root
        self.catalog = catalog
        self.index = index
        #: the staged model's vectors while a model change runs (built on first use)
        self.staged_index: VectorIndex | None = None

    @classmethod
    def open(cls, root: str | os.PathLike, *, readonly: bool = False) -> Library:
        """Open (creating when writable) the library in ``root``.

        A writable open takes the library's lock: a second writer gets
        :class:`photofind.library.LibraryLockedError`. Readers never block.
        """
        root = Path(root)
        count, _, held = saved_count(root)
        if count > 0 and not (root / CATALOG_NAME).exists():
            # Not even an empty catalog is made in its place (see refuse_if_catalog_lost).
            raise CatalogLostError(lost_catalog_message(root, count, held))
        catalog = Catalog.open(root, readonly=readonly)
        try:
            if not readonly:
                _settle_staged_files(root, catalog)
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
            raise PhotofindError(f"{path} is not a folder")
        if is_library_folder(path, self.root):
            raise PhotofindError(
                f"{path} is photofind's own library folder, where it keeps its catalog and "
                "thumbnails: choose a folder of photos (one holding the library is fine)"
            )
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

    # -- the model ------------------------------------------------------------------------

    @property
    def staged_model_id(self) -> str | None:
        """The model a change in progress re-indexes for (None: no change runs)."""
        return self.catalog.staged_model_id

    def use_model(self, model) -> bool:
        """Make ``model`` the library's model. Returns True when it became the active model
        just now (nothing was indexed yet). A library holding another model's vectors
        begins a staged change instead (see :meth:`begin_model_change`)."""
        before = self.catalog.model_id
        staged = self.begin_model_change(model)
        return not staged and self.catalog.model_id != before

    def begin_model_change(self, model) -> bool:
        """Start re-indexing for ``model`` while searches keep the active model's vectors.

        Returns True when a staged change to ``model`` runs (begun now or before; finish it
        with :meth:`reindex_staged`). Returns False when ``model`` is the active model now:
        it already was (any staged change is cancelled: switching back costs nothing), or
        the library held no vectors, so there was nothing to keep searchable and it was
        made active at once.
        """
        mid = model_id(model)
        if self.catalog.model_id != mid and self.catalog.embedding_count() == 0:
            if self.catalog.set_model(mid):  # also drops any staged change
                self.index = VectorIndex.build(self.catalog, dim=model.info.dim)
                self.index.save(self.root)
            self.staged_index = None
            return False
        if self.catalog.begin_staged_model(mid):
            log.info("%s: re-indexing for model %s begins", self.root, mid)
        if self.catalog.staged_model_id != mid:
            self.staged_index = None
            return False
        return True

    def reindex_staged(
        self, model, *, progress=None, control: IndexControl | None = None, **options
    ) -> ReindexStats:
        """Encode, with ``model``, every photo still lacking its vector for the staged
        change to ``model`` (begun here when needed); once none lacks one, swap: ``model``
        becomes the active model and :attr:`index` its index.

        ``progress`` gets :class:`ReindexProgress`; ``control`` pauses or cancels (a
        cancelled run keeps what it committed: the next run resumes). Other ``options`` are
        the :class:`Indexer`'s. Photos added meanwhile need the *active* model's vectors
        too (run :meth:`index_pending` with it first, so they are searchable at once).
        """
        mid = model_id(model)
        if not self.begin_model_change(model):
            return ReindexStats(0, 0, 0.0, False, swapped=False, model_id=mid)
        index = self._staged_index_for(model, mid)
        done_before, _ = self.catalog.staged_progress()

        def report(p: Progress) -> None:
            progress(
                ReindexProgress(
                    done_before + p.done,
                    done_before + p.total,
                    p.failed,
                    p.images_per_s,
                    p.eta_s,
                    p.paused,
                    model=model.info.name,
                )
            )

        indexer = Indexer(
            self.catalog,
            index,
            model,
            library_dir=None,  # the staged index is saved at the swap, under its own name
            progress=report if progress is not None else None,
            control=control,
            staged_model_id=mid,
            **options,
        )
        stats = indexer.run()
        swapped = not stats.cancelled and self._swap(mid)
        return ReindexStats(
            stats.indexed,
            stats.failed,
            stats.seconds,
            stats.cancelled,
            stats.changed,
            stats.changed_folders,
            swapped=swapped,
            model_id=mid,
        )

    def _staged_index_for(self, model, mid: str) -> VectorIndex:
        """The staged index in memory; after a restart, rebuilt from the staged vectors."""
        if self.staged_index is None or self.staged_index.model_id != mid:
            index = VectorIndex(model.info.dim, model_id=mid, params=self.index.params)
            for ids, vectors in self.catalog.staged_embeddings(chunk=8192):
                index.add(ids, vectors)
            self.staged_index = index
        return self.staged_index

    def _swap(self, mid: str) -> bool:
        generation = self.catalog.swap_staged(mid)
        if generation is None:
            return False  # photos arrived while the last batch was written: next run
        index, self.staged_index = self.staged_index, None
        index.generation = generation
        index.sync(self.catalog)  # drops photos removed while the change ran
        if len(index) != self.catalog.embedding_count():
            log.warning("%s: the staged index is out of step at the swap; rebuilding", self.root)
            index = VectorIndex.build(self.catalog, params=index.params)
        self.index = index
        folder = self.root / STAGED_INDEX_DIR
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        index.save(folder)
        _move_staged_files(folder, self.root)
        log.info("%s: model %s is now active", self.root, mid)
        return True

    def choose_model(self, model, *, provider: str = "auto") -> tuple[object, object | None]:
        """The user chose ``model`` (:meth:`use_model`, unless read-only): return
        ``(active, staged)``, the model to search and to index new photos with now, and the
        one a staged change re-indexes for.

        While the library holds another model's vectors, that model stays active (new photos
        are searchable at once) and ``model`` is staged. When that model's package is not
        on this machine, ``model`` does both (:meth:`index_pending` finishes the change
        first); a read-only library stages nothing.
        """
        if not self.readonly:
            self.use_model(model)
        held = self.catalog.model_id
        if held is None or held == model_id(model):
            return model, None
        active = self.load_model_by_id(held, provider=provider)
        if active is None:
            return model, None
        return active, (None if self.readonly else model)

    def load_model_by_id(self, mid: str, *, provider: str = "auto"):
        """The installed or bundled model whose vectors carry the id ``mid`` (name and
        image-encoder hash), or None when this machine has no such package."""
        return load_model_by_id(self.root, mid, provider=provider)

    # -- indexing ---------------------------------------------------------------------------

    def index_pending(
        self, model, *, progress=None, control: IndexControl | None = None, **options
    ) -> IndexStats:
        """Encode every pending photo with ``model``, the active model.

        Given another model while the library holds vectors, this finishes a staged change
        to it first (:meth:`reindex_staged`; searches keep the active model until the swap)
        and then encodes what is pending with it.
        """
        staged: ReindexStats | None = None
        # The active model asks nothing of a staged change (the watcher indexes new photos
        # with it while one runs); only another model starts or finishes one.
        if model_id(model) != self.catalog.model_id and self.begin_model_change(model):
            staged = self.reindex_staged(model, progress=progress, control=control, **options)
            if not staged.swapped:
                return staged
        indexer = Indexer(
            self.catalog,
            self.index,
            model,
            library_dir=self.root,
            progress=progress,
            control=control,
            **options,
        )
        stats = indexer.run()
        if staged is None:
            return stats
        return ReindexStats(
            staged.indexed + stats.indexed,
            staged.failed + stats.failed,
            staged.seconds + stats.seconds,
            stats.cancelled,
            staged.changed + stats.changed,
            staged.changed_folders | stats.changed_folders,
            swapped=True,
            model_id=staged.model_id,
        )

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
            **self._staged_status(),
        }

    def _staged_status(self) -> dict:
        staged = self.catalog.staged_model_id
        if staged is None:
            return {}
        done, total = self.catalog.staged_progress()
        return {"staged_model": staged, "staged_done": done, "staged_total": total}
