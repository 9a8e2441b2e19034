"""Analysers: the kinds of work done on an item, behind one small interface.

An analyser has a ``name``, the ``model_id`` of what it runs (a new model id means its
results are made again), a ``priority`` (lower runs first: the CLIP embedding is 0, so
search is usable soonest) and ``picture_side``, the shortest side of the decoded picture it
needs (0: none). The indexing pipeline (:mod:`photofind.library.indexer`) decodes each file
once per pass, at the largest side its pending analysers ask, and hands the same
:class:`photofind.clip.preprocess.Picture` to each:

- :meth:`Analyser.prepare` (on the decode threads): the item's input, e.g. a tensor;
- :meth:`Analyser.analyse` (on the pipeline's thread, a batch at a time): one result per
  item, or a :class:`Failure` saying why not;
- :meth:`Analyser.record` (on the one writer thread): the batch's outcomes into the catalog.

Each analyser's per-item state lives in the catalog's ``analyses`` table (done, failed with
the reason; no row is pending), so a killed run resumes with exactly what is missing, and a
run with a new model collects its results beside the old ones until
:meth:`photofind.library.catalog.Catalog.settle_analyser` swaps them in. The defaults here
keep small results in the state row (``encode``); an analyser with bulky results (faces)
overrides :meth:`Analyser.record` to write its own tables, through the same writer thread.

:class:`ClipAnalyser` is the CLIP image embedding: its vectors go to the catalog's vector
table and into the vector index, and its state is also the item's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from photofind.clip.preprocess import Picture, draft_side
from photofind.clip.providers import cpu_threads
from photofind.library.model_id import ModelId


def model_id(model) -> str:
    """Identifies the vectors a model makes: its name and the hash of its image encoder."""
    return str(ModelId.of(model))


@dataclass(frozen=True)
class Failure:
    """An item an analyser could not analyse, and why (one line naming the file)."""

    reason: str


class Analyser:
    """One kind of work on an item. Subclasses set the class attributes and implement
    :meth:`analyse` (and :meth:`prepare` when the input is not the picture itself)."""

    name: str = ""
    model_id: str = ""
    priority: int = 100
    picture_side: int = 0
    #: :meth:`analyse` keeps every core busy itself (an encoder on ONNX Runtime's CPU
    #: threads): the decode threads pause while it runs (see DecodePool.hold)
    uses_every_core: bool = False

    # -- the work (decode threads, then the pipeline's thread) ---------------------------

    def prepare(self, item, picture: Picture):
        """The input :meth:`analyse` takes for ``item``; runs on a decode thread. Raise
        :class:`photofind.errors.ImageError` (or return a :class:`Failure`) when the item
        cannot be analysed."""
        return picture

    def analyse(self, items: Sequence, inputs: Sequence) -> Sequence:
        """One result (or :class:`Failure`) per item, for a batch."""
        raise NotImplementedError

    # -- its state in the catalog (the writer thread) -----------------------------------

    def begin(self, catalog) -> None:
        """Before a run: note the model (the first one becomes the one in use)."""
        catalog.begin_analyser(self.name, self.model_id)

    def pending(self, catalog, *, limit: int, after_id: int) -> list:
        return catalog.analysis_pending(self.name, self.model_id, limit, after_id=after_id)

    def pending_among(self, catalog, ids: Sequence[int]) -> set:
        return catalog.analysis_pending_among(self.name, self.model_id, ids)

    def pending_count(self, catalog) -> int:
        return catalog.analysis_counts(self.name, self.model_id)["pending"]

    def encode(self, result) -> bytes | None:
        """A result as the bytes kept in its state row."""
        return None if result is None else bytes(result)

    def record(self, catalog, done: Sequence[tuple], failed: Sequence[tuple]) -> None:
        """Store ``done`` ``(item, result)`` and ``failed`` ``(item, reason)`` at once."""
        rows = [(item.id, "done", None, self.encode(result)) for item, result in done]
        rows += [(item.id, "failed", reason, None) for item, reason in failed]
        if rows:
            catalog.record_analyses(self.name, self.model_id, rows)

    def finish(self, catalog) -> None:
        """After a run that was not cancelled: a new model's results, once complete,
        become the ones in use."""
        catalog.settle_analyser(self.name, self.model_id)


class ClipAnalyser(Analyser):
    """The CLIP image embedding of ``model``: a vector per item, searched by the index.

    With ``staged_model_id`` it collects a staged model change's vectors instead (into the
    staged index; :class:`photofind.library.library.Library` swaps them in).
    """

    name = "clip"
    priority = 0

    def __init__(self, model, index, *, staged_model_id: str | None = None):
        self.model = model
        self.index = index
        self.staged_model_id = staged_model_id
        self.model_id = staged_model_id or model_id(model)
        self.picture_side = draft_side(model.spec.image_size)

    @property
    def uses_every_core(self) -> bool:
        busy = getattr(self.model, "cpu_threads_busy", None)
        return busy is not None and busy >= cpu_threads()

    def prepare(self, item, picture: Picture) -> np.ndarray:
        return self.model.preprocess(picture)

    def analyse(self, items: Sequence, inputs: Sequence) -> np.ndarray:
        return self.model.encode_pixels(np.stack(inputs))

    # The library's model and its staged change are set up by Library, not here.
    def begin(self, catalog) -> None:
        pass

    def finish(self, catalog) -> None:
        pass

    def pending(self, catalog, *, limit: int, after_id: int) -> list:
        fetch = catalog.staged_pending if self.staged_model_id else catalog.pending
        return fetch(limit=limit, after_id=after_id)

    def pending_among(self, catalog, ids: Sequence[int]) -> set:
        return catalog.pending_among(ids, staged=self.staged_model_id is not None)

    def pending_count(self, catalog) -> int:
        if self.staged_model_id:
            done, total = catalog.staged_progress()
            return total - done
        return catalog.counts().get("pending", 0)

    def record(self, catalog, done: Sequence[tuple], failed: Sequence[tuple]) -> None:
        for item, reason in failed:
            if self.staged_model_id:
                catalog.record_staged_failure(self.staged_model_id, item.id, reason)
            else:
                catalog.record_failure(item.id, reason)
        if not done:
            return
        ids = np.asarray([item.id for item, _ in done], dtype=np.int64)
        vectors = np.stack([vector for _, vector in done])
        batch = [(item.id, vector, item.capture_date) for item, vector in done]
        if self.staged_model_id:
            written = catalog.record_staged_embeddings(self.staged_model_id, batch)
        else:
            written, generation = catalog.record_embeddings(batch)
        # A still's vector id is its item's id.
        keep = np.isin(ids, np.asarray(written, dtype=np.int64))
        self.index.add(ids[keep], vectors[keep])
        if not self.staged_model_id:
            self.index.generation = generation
