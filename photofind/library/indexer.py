"""The indexing pipeline: items waiting for an analyser in, results in the catalog out.

It runs a list of analysers (:mod:`photofind.library.analysers`): the CLIP image embedding
always, first, and whatever others the caller passes. Items come in priority order: those
waiting for CLIP first (so search is usable soonest), each with every analyser it waits for,
then those only the later analysers still need. Three bounded stages, so memory stays flat
whatever the library's size and the encoder never waits for the decoder:

    pending items ─► decode pool (threads; Pillow releases the GIL): the file decoded once,
                     at the largest size its analysers need, each analyser's ``prepare``
                  ─► batches ─► each analyser's ``analyse`` (CLIP: the ONNX image encoder)
                  ─► one writer thread: each analyser's ``record`` (CLIP: catalog commit,
                     then index.add)

Decoding runs a bounded window ahead of the encoder (the look-ahead of rclip): while a
batch is being encoded on a GPU, the next ones are decoded. An encoder on the CPU keeps every
core busy itself, so there the two take turns (:meth:`DecodePool.hold`): decode threads
beside ONNX Runtime's would make all of its threads wait for the one they slow down. A photo that fails is recorded as
``failed`` with its reason and never retried until its file changes; so is one whose read
and decode take longer than ``photo_time_limit_s`` (see :mod:`photofind.library.decode_pool`). Because an item
stays pending for an analyser until its outcome is committed, a crash or a kill loses at
most the batch in flight, and the next run starts where this one stopped.

Only the file the catalog describes is analysed. A file rewritten between the scan that
recorded its size and mtime and its decoding is left pending, unanalysed (``changed``):
its results would be filed under the old size and mtime, so the next scan would see the
change and analyse the same picture a second time. The next scan takes the new version
once it is complete (the watcher's settling) and it is analysed once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from photofind.clip.pipeline_plan import plan_for
from photofind.clip.preprocess import DEFAULT_MAX_PIXELS, Picture
from photofind.clip.providers import cpu_threads
from photofind.errors import ImageError
from photofind.formats.frames import Animation, is_animated, is_animation_name
from photofind.formats.kinds import PHOTO, VIDEO
from photofind.formats.video import Video
from photofind.library.analysers import Analyser, ClipAnalyser, Failure
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
    #: the analysers of the batch just written, by name: ("faces",) once only the face
    #: pass is left, so a front end can say "finding faces" rather than "indexing"
    stage: tuple[str, ...] = ()


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


@dataclass
class _Work:
    """One item on its way through a pass: what each of its analysers prepared, or why
    it could not."""

    item: object
    analysers: list
    inputs: dict  # analyser name -> prepared input
    failures: dict  # analyser name -> reason
    #: the file changed since the scan: nothing was analysed, the item stays pending
    changed: bool = False


class Indexer:
    """Run the analysers over the items of ``catalog`` that wait for them: the CLIP
    embedding with ``model`` (keeping ``index`` in step) first, then ``analysers``.

    ``progress`` is a plain callable taking a :class:`Progress`; it is called from the
    writer thread after each committed batch.

    With ``staged_model_id`` it runs a staged model change instead: the photos still lacking
    a vector of that model are encoded into the catalog's staged table (and into ``index``,
    the staged index, which the caller saves at the swap), while the active vectors stay.

    ``batch_size`` and ``decode_workers`` (None: chosen by where the encoder runs, see
    :mod:`photofind.clip.pipeline_plan`).

    ``analysers`` run beside the CLIP embedding (:class:`Analyser`); each gets the items
    it has not analysed yet with its model.

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
        batch_size: int | None = None,
        decode_workers: int | None = None,
        lookahead_batches: int = 2,
        save_every_s: float | None = 60.0,
        save_at_end: bool = True,
        progress: Callable[[Progress], None] | None = None,
        control: IndexControl | None = None,
        staged_model_id: str | None = None,
        photo_time_limit_s: float | None = 120.0,
        analysers: Sequence[Analyser] = (),
    ):
        self.catalog = catalog
        self.index = index
        self.model = model
        self.library_dir = library_dir
        # None: chosen by where the image encoder runs (photofind.clip.pipeline_plan).
        self.plan = plan_for(
            model,
            cpu_threads(),
            lookahead_batches=lookahead_batches,
            batch_size=batch_size,
            decode_workers=decode_workers,
        )
        self.batch_size = self.plan.batch_size
        self.decode_workers = self.plan.decode_workers
        self.window = self.batch_size * (1 + lookahead_batches)
        self.save_every_s = save_every_s
        self.save_at_end = save_at_end
        self.progress = progress
        self.control = control or IndexControl()
        self.staged_model_id = staged_model_id
        #: a photo whose read and decode take longer is recorded failed (None: no limit)
        self.photo_time_limit_s = photo_time_limit_s
        clip = ClipAnalyser(model, index, staged_model_id=staged_model_id)
        # sorted() is stable: analysers of equal priority keep the caller's order.
        self.analysers: list[Analyser] = sorted([clip, *analysers], key=lambda a: a.priority)
        names = [a.name for a in self.analysers]
        if len(set(names)) != len(names):
            raise ValueError(f"two analysers share a name: {names}")
        self.max_pixels = getattr(model, "max_pixels", DEFAULT_MAX_PIXELS)
        #: videos decoded ahead at most: each holds up to PER_FILE prepared frames
        #: (60 x 0.6 MB for a 224 px encoder) where a photo holds one
        self.videos_in_flight = self.decode_workers + 1
        self._error: BaseException | None = None

    # -- stages ---------------------------------------------------------------------------

    def _decode(self, item, analysers: list) -> _Work:
        """Decode ``item`` once and let each of its analysers prepare; never raises."""
        work = _Work(item, analysers, {}, {})
        # Checked before and after the read: what was decoded in between is the file the
        # catalog describes (see the module docstring).
        if _changed_since_scan(item):
            work.changed = True
            return work
        side = max(a.picture_side for a in analysers)
        video = getattr(item, "kind", None) == VIDEO
        if video:
            # Each analyser has the sampled frames at its own size; the scan keeps them at
            # the smallest (CLIP's), so those are decoded once.
            picture = Video(item.path, keep_side=min(a.picture_side for a in analysers))
        elif _is_animation(item):
            # An animated GIF/WebP/APNG goes the videos' way: a vector per sampled frame.
            keep = min(a.picture_side for a in analysers)
            picture = self._animation(item, keep, side)
        else:
            picture = Picture(item.path, side=side, max_pixels=self.max_pixels)
        for analyser in analysers:
            try:
                prepared = analyser.prepare(item, picture)
            except ImageError as exc:
                work.failures[analyser.name] = str(exc)
            except Exception as exc:  # noqa: BLE001 - an item must never stop the run
                log.exception("%s on %s failed unexpectedly", analyser.name, item.path)
                work.failures[analyser.name] = (
                    f"{item.path}: unexpected {type(exc).__name__}: {exc}"
                )
            else:
                if isinstance(prepared, Failure):
                    work.failures[analyser.name] = prepared.reason
                else:
                    work.inputs[analyser.name] = prepared
        picture.release()
        if _changed_since_scan(item):
            return _Work(item, analysers, {}, {}, changed=True)
        if work.inputs:
            date = _video_date(picture) if video else capture_date(item.path)
            work.item = replace(item, capture_date=date)
        return work

    def _animation(self, item, keep_side: int, side: int) -> Animation | Picture:
        """The animation of ``item``, its frames read at ``keep_side``; a damaged one (cut
        short) is the photo of its first frame, as it was before animations had frames."""
        animation = Animation(item.path, keep_side=keep_side, max_pixels=self.max_pixels)
        try:
            animation.read()
        except ImageError as exc:
            log.info(
                "%s: not read as an animation (%s); its first frame is the photo", item.path, exc
            )
            return Picture(item.path, side=side, max_pixels=self.max_pixels)
        return animation

    @staticmethod
    def _videos(pending) -> int:
        return sum(1 for item, *_ in pending if _is_video(item))

    def _decoded(self, pool: DecodePool, item, analysers: list, job: Job) -> _Work:
        """The job's ``_decode`` result, or failures when it overran the time limit."""
        try:
            return pool.wait(job, self.photo_time_limit_s)
        except PhotoOverran:
            log.warning("%s: no decode within %g s; skipped", item.path, self.photo_time_limit_s)
            reason = (
                f"Cannot read image {item.path}: reading and decoding it took over "
                f"{self.photo_time_limit_s:g} s (a hung disk or share, or a pathological "
                "file); skipped until it changes"
            )
            return _Work(item, analysers, {}, {a.name: reason for a in analysers})

    def _items(self):
        """``(item, its pending analysers)`` in priority order, paged so that the catalog
        is never read whole; each item once per run."""
        seen: set[int] = set()
        for k, analyser in enumerate(self.analysers):
            later = self.analysers[k + 1 :]
            after = 0
            while True:
                page = analyser.pending(self.catalog, limit=self.window, after_id=after)
                if not page:
                    break
                after = page[-1].id
                fresh = [item for item in page if item.id not in seen]
                ids = [item.id for item in fresh]
                also = {a.name: a.pending_among(self.catalog, ids) for a in later} if ids else {}
                for item in fresh:
                    seen.add(item.id)
                    yield item, [analyser, *(a for a in later if item.id in also[a.name])]

    def _writer(self, results: queue.Queue, total: int, started: float) -> None:
        done = failed = 0
        last_save = time.monotonic()
        try:
            while (outcome := results.get()) is not _DONE:
                works, by_analyser = outcome
                stage = []
                for analyser in self.analysers:
                    ok, bad = by_analyser.get(analyser.name, ((), ()))
                    if ok or bad:
                        analyser.record(self.catalog, ok, bad)
                        stage.append(analyser.name)
                done += len(works)
                failed += sum(1 for w in works if w.failures)
                self.changed.extend(w.item for w in works if w.changed)
                if (
                    self.library_dir
                    and self.save_every_s is not None
                    and time.monotonic() - last_save > self.save_every_s
                ):
                    self.index.save(self.library_dir)
                    last_save = time.monotonic()
                self._report(done, max(total, done), failed, started, tuple(stage))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
            self.control.cancel()
            while results.get() is not _DONE:  # unblock the producer
                pass
        finally:
            self.done, self.failed = done, failed

    def _report(
        self, done: int, total: int, failed: int, started: float, stage: tuple = ()
    ) -> None:
        if not self.progress:
            return
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        self.progress(Progress(done, total, failed, rate, eta, self.control.paused, stage))

    # -- the run --------------------------------------------------------------------------

    def run(self) -> IndexStats:
        for analyser in self.analysers:
            analyser.begin(self.catalog)
        # Items waiting for several analysers count once; the largest count is the
        # nearest to the truth that needs no extra query over the whole catalog.
        total = max(a.pending_count(self.catalog) for a in self.analysers)
        started = time.monotonic()
        self.done = self.failed = 0
        self.changed: list = []  # photos whose file changed since the scan
        results: queue.Queue = queue.Queue(maxsize=2)
        writer = threading.Thread(
            target=self._writer, args=(results, total, started), name="photofind-writer"
        )
        writer.start()
        self._report(0, total, 0, started)
        pending: deque[tuple[object, list, Job]] = deque()
        pool = DecodePool(self.decode_workers)
        held = None  # a video waiting for room in the window
        try:
            photos = self._items()
            exhausted = False
            while True:
                self.control.wait_while_paused()
                if self.control.cancelled:
                    break
                while not exhausted and len(pending) < self.window:
                    entry, held = held or next(photos, None), None
                    if entry is None:
                        exhausted = True
                        break
                    item, analysers = entry
                    if _is_video(item) and self._videos(pending) >= self.videos_in_flight:
                        held = entry  # its frames would hold too much memory: later
                        break
                    job = pool.submit(self._decode, item, analysers)
                    pending.append((item, analysers, job))
                if not pending:
                    break
                batch = []
                try:
                    for _ in range(min(len(pending), self.batch_size)):
                        batch.append(self._decoded(pool, *pending.popleft()))
                except DecodeStuck:
                    # What was decoded (and the photos that overran, as failures) is kept:
                    # the next run must not wait for those photos again.
                    self._encode_and_hand_over(batch, results, pool)
                    raise
                self._encode_and_hand_over(batch, results, pool)
        finally:
            for *_, job in pending:
                job.cancel()
            pool.shutdown()
            results.put(_DONE)
            writer.join()
        if self.library_dir and self.save_at_end:
            self.index.save(self.library_dir)
        if self._error is not None:
            raise self._error
        if not self.control.cancelled:
            for analyser in self.analysers:
                analyser.finish(self.catalog)
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

    def _encode_and_hand_over(self, batch: list, results: queue.Queue, pool: DecodePool) -> None:
        """Run each analyser on its part of a decoded batch; hand the outcomes to the
        writer. An analyser's own error (a model that cannot run) ends the run. While one
        that keeps every core busy itself runs, the decode threads wait (DecodePool.hold)."""
        by_analyser = {}
        for analyser in self.analysers:
            mine = [w for w in batch if any(a is analyser for a in w.analysers)]
            ready = [w for w in mine if analyser.name in w.inputs]
            failed = [
                (w.item, w.failures[analyser.name]) for w in mine if analyser.name in w.failures
            ]
            done = []
            if ready:
                held = analyser.uses_every_core
                if held:
                    pool.hold()
                try:
                    outputs = analyser.analyse(
                        [w.item for w in ready], [w.inputs.pop(analyser.name) for w in ready]
                    )
                finally:
                    if held:
                        pool.release()
                for w, result in zip(ready, outputs, strict=True):
                    if isinstance(result, Failure):
                        w.failures[analyser.name] = result.reason
                        failed.append((w.item, result.reason))
                    else:
                        done.append((w.item, result))
            by_analyser[analyser.name] = (done, failed)
        results.put((batch, by_analyser))


def _is_video(item) -> bool:
    return getattr(item, "kind", None) == VIDEO


def _is_animation(item) -> bool:
    """Whether a photo item is an animation (only GIF/WebP/PNG names are opened to ask)."""
    kind = getattr(item, "kind", PHOTO)
    return kind == PHOTO and is_animation_name(item.path) and is_animated(item.path)


def _video_date(video: Video) -> str | None:
    """The video's creation time, or None when it has none (or cannot be read)."""
    try:
        return video.created
    except ImageError:
        return None


def _changed_since_scan(photo) -> bool:
    """Whether ``photo``'s file no longer has the size and mtime the scan recorded. A file
    that cannot be looked at counts as unchanged: decoding it gives the reason."""
    try:
        st = os.stat(photo.path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) != (photo.size, photo.mtime_ns)
