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

A video reaches the analysers as a :class:`photofind.formats.video.Video` instead of a
``Picture``: its sampled frames, each decoded at the size the analyser asks for
(:meth:`~photofind.formats.video.Video.frames`). CLIP embeds every frame; the item's
vectors are its frames, each with its time (:class:`FrameVectors`). An animated picture
comes the same way, as a :class:`photofind.formats.frames.Animation` (a ``Video``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from photofind.clip.preprocess import Picture, draft_side
from photofind.clip.providers import cpu_threads
from photofind.formats.video import Video
from photofind.library.model_id import ModelId


def model_id(model) -> str:
    """Identifies the vectors a model makes: its name and the hash of its image encoder."""
    return str(ModelId.of(model))


@dataclass(frozen=True)
class Failure:
    """An item an analyser could not analyse, and why (one line naming the file)."""

    reason: str


@dataclass(frozen=True)
class FrameVectors:
    """A video's CLIP result: ``(frame time in ms, vector)`` per sampled frame, and how
    long the video runs."""

    frames: tuple[tuple[int, np.ndarray], ...]
    duration_ms: int


@dataclass(frozen=True)
class _Frames:
    """A video's frames prepared for the encoder: their times and tensors [n, 3, S, S]."""

    times: tuple[int, ...]
    pixels: np.ndarray
    duration_ms: int


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

    def prepare(self, item, picture: Picture | Video):
        if isinstance(picture, Video):
            times, tensors = [], []
            for frame in picture.frames(self.picture_side):
                times.append(frame.ms)
                tensors.append(self.model.preprocess(frame.image))
            if not tensors:
                return Failure(f"Cannot decode {item.path}: no frame could be decoded")
            return _Frames(tuple(times), np.stack(tensors), picture.duration_ms)
        return self.model.preprocess(picture)

    def analyse(self, items: Sequence, inputs: Sequence) -> list:
        """A vector per photo and a :class:`FrameVectors` per video, the frames of the
        whole batch encoded together (the encoder runs them in its own batches)."""
        pixels = np.concatenate(
            [x.pixels if isinstance(x, _Frames) else x[None] for x in inputs], axis=0
        )
        vectors = self.model.encode_pixels(pixels)
        out, at = [], 0
        for x in inputs:
            if isinstance(x, _Frames):
                n = len(x.times)
                frames = tuple(zip(x.times, vectors[at : at + n], strict=True))
                out.append(FrameVectors(frames, x.duration_ms))
                at += n
            else:
                out.append(vectors[at])
                at += 1
        return out

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
        batch, durations = [], {}
        for item, result in done:
            if isinstance(result, FrameVectors):
                batch.append((item.id, list(result.frames), item.capture_date))
                durations[item.id] = result.duration_ms
            else:
                batch.append((item.id, [(None, result)], item.capture_date))
        if durations:
            # Before the vectors: a kill in between leaves the item pending, and the next
            # pass writes the same duration again.
            catalog.record_durations(durations)
        if self.staged_model_id:
            recorded = catalog.record_staged_vectors(self.staged_model_id, batch)
        else:
            recorded = catalog.record_vectors(batch)
        if recorded.removed_ids:
            self.index.remove(recorded.removed_ids)
        if recorded.vector_ids:
            self.index.add(np.asarray(recorded.vector_ids, dtype=np.int64), recorded.vectors)
        if not self.staged_model_id:
            self.index.generation = recorded.generation
