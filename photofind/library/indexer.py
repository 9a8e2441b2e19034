"""The indexing pipeline: pending photos in, vectors in the catalog and the index out.

Three bounded stages, so memory stays flat whatever the library's size and the encoder
never waits for the decoder:

    catalog.pending ─► decode pool (threads; Pillow releases the GIL)
                     ─► batches ─► ONNX image encoder (its own threads)
                     ─► one writer thread: catalog commit, then index.add

Decoding runs a bounded window ahead of the encoder (the look-ahead of rclip): while a
batch is being encoded, the next ones are decoded. A photo that fails is recorded as
``failed`` with its reason and never retried until its file changes. Because a photo
stays ``pending`` until its vector is committed, a crash or a kill loses at most the batch
in flight, and the next run starts where this one stopped.

Only the file the catalog describes is encoded. A file rewritten between the scan that
recorded its size and mtime and its decoding is left pending, unencoded (``changed``):
its vector would be filed under the old size and mtime, so the next scan would see the
change and encode the same picture a second time. The next scan takes the new version
once it is complete (the watcher's settling) and it is encoded once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from photofind.clip.providers import cpu_threads
from photofind.errors import ImageError
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
    #: photos left pending because their file changed since the scan; the library folders
    #: holding them need a reconcile before they can be encoded
    changed: int = 0
    changed_folders: frozenset[int] = frozenset()

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
        self._error: BaseException | None = None

    # -- stages ---------------------------------------------------------------------------

    def _decode(self, photo) -> tuple[object, np.ndarray | None, str | None, str | None]:
        """(photo, tensor, capture date, error reason); never raises. Both tensor and
        reason are None when the file changed since the scan (see the module docstring)."""
        try:
            # Checked before and after the read: what was decoded in between is the file
            # the catalog describes.
            if _changed_since_scan(photo):
                return photo, None, None, None
            tensor = self.model.preprocess(photo.path)
            date = capture_date(photo.path)
            if _changed_since_scan(photo):
                return photo, None, None, None
            return photo, tensor, date, None
        except ImageError as exc:
            return photo, None, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a photo must never stop the run
            log.exception("decoding %s failed unexpectedly", photo.path)
            return photo, None, None, f"{photo.path}: unexpected {type(exc).__name__}: {exc}"

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
                ids, vectors, dates, failures, changed = item
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
                done += len(ids) + len(failures) + len(changed)
                failed += len(failures)
                self.changed.extend(changed)
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
        self.changed: list = []  # photos whose file changed since the scan
        results: queue.Queue = queue.Queue(maxsize=2)
        writer = threading.Thread(
            target=self._writer, args=(results, total, started), name="photofind-writer"
        )
        writer.start()
        self._report(0, total, 0, started)
        pending: deque[Future] = deque()
        try:
            with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
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
                            pending.append(pool.submit(self._decode, photo))
                    if not pending:
                        break
                    batch = [
                        pending.popleft().result()
                        for _ in range(min(len(pending), self.batch_size))
                    ]
                    self._encode_and_hand_over(batch, results)
                for future in pending:
                    future.cancel()
        finally:
            results.put(_DONE)
            writer.join()
        if self.library_dir and self.save_at_end:
            self.index.save(self.library_dir)
        if self._error is not None:
            raise self._error
        if self.changed:
            log.info(
                "%d photo(s) changed since the scan, left for the next one: %s",
                len(self.changed),
                ", ".join(p.path for p in self.changed[:5]),
            )
        return IndexStats(
            indexed=self.done - self.failed - len(self.changed),
            failed=self.failed,
            seconds=time.monotonic() - started,
            cancelled=self.control.cancelled,
            changed=len(self.changed),
            changed_folders=frozenset(p.folder_id for p in self.changed),
        )

    def _encode_and_hand_over(self, batch, results: queue.Queue) -> None:
        good = [(p.id, t, d) for p, t, d, err in batch if t is not None]
        failures = [(p.id, err) for p, _, _, err in batch if err is not None]
        changed = [p for p, t, _, err in batch if t is None and err is None]
        if good:
            vectors = self.model.encode_pixels(np.stack([t for _, t, _ in good]))
            item = ([pid for pid, _, _ in good], vectors, [d for _, _, d in good])
        else:
            item = ([], np.zeros((0, 0), np.float32), [])
        results.put((*item, failures, changed))


def _changed_since_scan(photo) -> bool:
    """Whether ``photo``'s file no longer has the size and mtime the scan recorded. A file
    that cannot be looked at counts as unchanged: decoding it gives the reason."""
    try:
        st = os.stat(photo.path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) != (photo.size, photo.mtime_ns)
