"""The indexing pipeline: pending photos in, vectors in the catalog and the index out.

Three bounded stages, so memory stays flat whatever the library's size and the encoder
never waits for the decoder:

    catalog.pending ─► decode pool (threads; Pillow releases the GIL)
                     ─► batches ─► ONNX image encoder (its own threads)
                     ─► one writer thread: catalog commit, then index.add

Decoding runs a bounded window ahead of the encoder (the look-ahead of rclip): while a
batch is being encoded, the next ones are decoded. A photo that fails is recorded as
``failed`` with its reason and never retried until its file changes; so is one whose read
and decode take longer than ``photo_time_limit_s`` (see :mod:`photofind.library.decode_pool`). Because a photo
stays ``pending`` until its vector is committed, a crash or a kill loses at most the batch
in flight, and the next run starts where this one stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from photofind.clip.providers import cpu_threads
from photofind.errors import ImageError
from photofind.library.decode_pool import DecodePool, DecodeStuck, Job, PhotoOverran
from photofind.library.exif import capture_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int  # photos finished in this run (indexed or failed)
    total: int  # photos this run set out to do
    failed: int
    images_per_s: float
    eta_s: float | None
    paused: bool = False


@dataclass(frozen=True)
class IndexStats:
    indexed: int
    failed: int
    seconds: float
    cancelled: bool

    @property
    def images_per_s(self) -> float:
        return (self.indexed + self.failed) / self.seconds if self.seconds > 0 else 0.0


class IndexControl:
    """Pause, resume and cancel a running :class:`Indexer` from any thread."""

    def __init__(self):
        self._running = threading.Event()
        self._running.set()
        self._cancel = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()  # a paused run must wake up to stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait_while_paused(self) -> None:
        self._running.wait()


_DONE = object()


class Indexer:
    """Encode every pending photo of ``catalog`` with ``model``; keep ``index`` in step.

    ``progress`` is a plain callable taking a :class:`Progress`; it is called from the
    writer thread after each committed batch.

    With ``staged_model_id`` it runs a staged model change instead: the photos still lacking
    a vector of that model are encoded into the catalog's staged table (and into ``index``,
    the staged index, which the caller saves at the swap), while the active vectors stay.

    With ``library_dir`` the index is saved there every ``save_every_s`` (None: never during
    the run) and when the run ends (unless ``save_at_end`` is False). Saving is only a
    shortcut for the next start: the catalog is the truth, and an index saved before the
    last commits catches up with them when it is opened.
    """

    def __init__(
        self,
        catalog,
        index,
        model,
        *,
        library_dir=None,
        batch_size: int = 32,
        decode_workers: int | None = None,
        lookahead_batches: int = 2,
        save_every_s: float | None = 60.0,
        save_at_end: bool = True,
        progress: Callable[[Progress], None] | None = None,
        control: IndexControl | None = None,
        staged_model_id: str | None = None,
        photo_time_limit_s: float | None = 120.0,
    ):
        self.catalog = catalog
        self.index = index
        self.model = model
        self.library_dir = library_dir
        self.batch_size = batch_size
        self.decode_workers = decode_workers or cpu_threads()
        self.window = batch_size * (1 + lookahead_batches)
        self.save_every_s = save_every_s
        self.save_at_end = save_at_end
        self.progress = progress
        self.control = control or IndexControl()
        self.staged_model_id = staged_model_id
        #: a photo whose read and decode take longer is recorded failed (None: no limit)
        self.photo_time_limit_s = photo_time_limit_s
        self._error: BaseException | None = None

    # -- stages ---------------------------------------------------------------------------

    def _decode(self, photo) -> tuple[int, np.ndarray | None, str | None, str | None]:
        """(photo id, tensor, capture date, error reason); never raises."""
        try:
            tensor = self.model.preprocess(photo.path)
            return photo.id, tensor, capture_date(photo.path), None
        except ImageError as exc:
            return photo.id, None, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a photo must never stop the run
            log.exception("decoding %s failed unexpectedly", photo.path)
            return photo.id, None, None, f"{photo.path}: unexpected {type(exc).__name__}: {exc}"

    def _decoded(self, pool: DecodePool, photo, job: Job):
        """The job's ``_decode`` result, or a failure when it overran the time limit."""
        try:
            return pool.wait(job, self.photo_time_limit_s)
        except PhotoOverran:
            log.warning("%s: no decode within %g s; skipped", photo.path, self.photo_time_limit_s)
            return (
                photo.id,
                None,
                None,
                f"Cannot read image {photo.path}: reading and decoding it took over "
                f"{self.photo_time_limit_s:g} s (a hung disk or share, or a pathological "
                "file); skipped until it changes",
            )

    def _photos(self):
        """Pending photos, paged so that the catalog is never read whole."""
        after = 0
        fetch = self.catalog.staged_pending if self.staged_model_id else self.catalog.pending
        while True:
            page = fetch(limit=self.window, after_id=after)
            if not page:
                return
            yield from page
            after = page[-1].id

    def _writer(self, results: queue.Queue, total: int, started: float) -> None:
        done = failed = 0
        last_save = time.monotonic()
        try:
            while (item := results.get()) is not _DONE:
                ids, vectors, dates, failures = item
                for photo_id, reason in failures:
                    if self.staged_model_id:
                        self.catalog.record_staged_failure(self.staged_model_id, photo_id, reason)
                    else:
                        self.catalog.record_failure(photo_id, reason)
                if ids and self.staged_model_id:
                    written = self.catalog.record_staged_embeddings(
                        self.staged_model_id, zip(ids, vectors, dates)
                    )
                    keep = np.isin(np.asarray(ids), np.asarray(written))
                    self.index.add(np.asarray(ids)[keep], vectors[keep])
                elif ids:
                    written, generation = self.catalog.record_embeddings(zip(ids, vectors, dates))
                    keep = np.isin(np.asarray(ids), np.asarray(written))
                    self.index.add(np.asarray(ids)[keep], vectors[keep])
                    self.index.generation = generation
                done += len(ids) + len(failures)
                failed += len(failures)
                if (
                    self.library_dir
                    and self.save_every_s is not None
                    and time.monotonic() - last_save > self.save_every_s
                ):
                    self.index.save(self.library_dir)
                    last_save = time.monotonic()
                self._report(done, total, failed, started)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
            self.control.cancel()
            while results.get() is not _DONE:  # unblock the producer
                pass
        finally:
            self.done, self.failed = done, failed

    def _report(self, done: int, total: int, failed: int, started: float) -> None:
        if not self.progress:
            return
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        self.progress(Progress(done, total, failed, rate, eta, self.control.paused))

    # -- the run --------------------------------------------------------------------------

    def run(self) -> IndexStats:
        if self.staged_model_id:
            done, total = self.catalog.staged_progress()
            total -= done
        else:
            total = self.catalog.counts().get("pending", 0)
        started = time.monotonic()
        self.done = self.failed = 0
        results: queue.Queue = queue.Queue(maxsize=2)
        writer = threading.Thread(
            target=self._writer, args=(results, total, started), name="photofind-writer"
        )
        writer.start()
        self._report(0, total, 0, started)
        pending: deque[tuple[object, Job]] = deque()
        pool = DecodePool(self.decode_workers)
        try:
            photos = self._photos()
            exhausted = False
            while True:
                self.control.wait_while_paused()
                if self.control.cancelled:
                    break
                while not exhausted and len(pending) < self.window:
                    photo = next(photos, None)
                    if photo is None:
                        exhausted = True
                    else:
                        pending.append((photo, pool.submit(self._decode, photo)))
                if not pending:
                    break
                batch = []
                try:
                    for _ in range(min(len(pending), self.batch_size)):
                        batch.append(self._decoded(pool, *pending.popleft()))
                except DecodeStuck:
                    # What was decoded (and the photos that overran, as failures) is kept:
                    # the next run must not wait for those photos again.
                    self._encode_and_hand_over(batch, results)
                    raise
                self._encode_and_hand_over(batch, results)
        finally:
            for _, job in pending:
                job.cancel()
            pool.shutdown()
            results.put(_DONE)
            writer.join()
        if self.library_dir and self.save_at_end:
            self.index.save(self.library_dir)
        if self._error is not None:
            raise self._error
        return IndexStats(
            indexed=self.done - self.failed,
            failed=self.failed,
            seconds=time.monotonic() - started,
            cancelled=self.control.cancelled,
        )

    def _encode_and_hand_over(self, batch, results: queue.Queue) -> None:
        good = [(pid, t, d) for pid, t, d, err in batch if err is None]
        failures = [(pid, err) for pid, _, _, err in batch if err is not None]
        if good:
            vectors = self.model.encode_pixels(np.stack([t for _, t, _ in good]))
            item = ([pid for pid, _, _ in good], vectors, [d for _, _, d in good], failures)
        else:
            item = ([], np.zeros((0, 0), np.float32), [], failures)
        results.put(item)
