"""Live folder watching: the library follows the disk.

Design, chosen for being hard to get wrong:

- watchdog threads never touch the catalog. Each event that matters only marks its library
  folder dirty (:class:`~photofind.library.debounce.DirtyFolders`).
- One worker thread owns every write. When a batch is due (the folders have been quiet for
  ``quiet_s``, or ``max_delay_s`` after the first event while they keep changing) it runs
  :func:`~photofind.library.reconcile.reconcile` on the dirty folders: the scanner compares
  them with the catalog, so a rename keeps its vector (partial-hash match), a folder moved
  out removes its photos and one moved in adds them; files still being written wait.
  Then it encodes what is pending, and runs the other analysers it was given (the face
  pass) until they too have nothing pending. A long index run is cut short (the batch in flight is
  committed) when new changes have waited ``max_delay_s``, so the catalog never lags far.
- A full reconcile runs at start, every ``reconcile_s``, and whenever watching may have
  missed something: a kernel queue overflow, a watch that died, a folder that was re-made.
- A library folder that disappears is marked offline (its photos and vectors are kept);
  when it returns it is watched again and its photos come back without re-encoding.
- The vector index file is written at most every ``index_save_interval_s`` and when the
  watcher stops, not after every index pass: hnswlib holds the GIL for the whole write
  (65-150 ms at 100,000 photos), a GUI stall each time. Nothing depends on it for safety:
  the catalog commits every vector, and an index file that lags it (a crash) catches up
  with the rows written since its generation when the library is next opened.

- Which model encodes, and whether a staged model change re-indexes after the new photos,
  is the :class:`~photofind.library.model_session.ModelSession`'s: the watcher runs its
  passes in its order.

The GUI and ``photofind watch`` use it the same way: ``Watcher(library, session=session)``
(or ``Watcher(library, model)``), ``start()``, read :meth:`Watcher.status`, ``stop()``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from photofind.atomic import atomic_write_text
from photofind.library.debounce import DirtyFolders
from photofind.library.folder_watches import FolderWatches
from photofind.library.indexer import IndexControl
from photofind.library.model_session import NEW, ModelSession
from photofind.library.reconcile import RecentlyRemoved, ReconcileReport, Settler, reconcile

log = logging.getLogger(__name__)

STATUS_FILE = "watch-status.json"


@dataclass
class WatchOptions:
    quiet_s: float = 0.5  # a batch starts once the folders were quiet this long ...
    max_delay_s: float = 3.0  # ... or this long after its first event at the latest
    settle_s: float = 1.0  # a file must stay unchanged this long before it is read
    reconcile_s: float = 600.0  # full reconcile of every folder this often
    poll_s: float = 30.0  # polling interval where live watching is impossible
    health_s: float = 1.0  # how often folders are checked for vanishing / returning
    batch_size: int | None = None  # None: by the encoder's provider (pipeline_plan)
    force_polling: bool = False
    write_status_file: bool = True
    #: the vector index file is written at most this often while watching, and at stop.
    #: hnswlib holds the GIL for the whole write (65-150 ms at 100,000 photos), which the
    #: GUI feels; the catalog stays the truth, and an index file older than the last
    #: commits only catches up with them when the library is next opened.
    index_save_interval_s: float = 300.0


#: the counters of a ReconcileReport that WatchCounters sums over the rounds
RECONCILED = ("added", "updated", "moved", "removed", "restored")


@dataclass
class WatchCounters:
    """Totals since the watcher started (``failed``: photos the indexer could not read);
    :meth:`Watcher.status` adds ``events``, the file events seen."""

    reconciles: int = 0
    full_reconciles: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    restored: int = 0
    encoded: int = 0
    failed: int = 0


@dataclass
class BatchReport:
    """What one round of the worker did; handed to ``on_batch`` callbacks."""

    reconcile: ReconcileReport | None
    full: bool
    encoded: int = 0
    failed: int = 0
    pending_after: int = 0
    unsettled: list[str] = field(default_factory=list)


class Watcher:
    """Watch every folder of ``library``, keep its catalog equal to the disk, index with
    ``session`` (or ``model``, with ``staged_model`` re-indexed for). ``say`` gets one-line
    human messages (the CLI prints them on stderr)."""

    MAX_FAILURES = 5  # consecutive failed rounds before the worker gives up

    def __init__(
        self,
        library,
        model=None,
        options: WatchOptions | None = None,
        *,
        say: Callable[[str], None] | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
        observer_factory: Callable[[], object] | None = None,
        staged_model=None,
        session: ModelSession | None = None,
        analysers: Sequence | Callable[[], Sequence] = (),
    ):
        self.library = library
        #: which model indexes, which is staged, and which pass runs next; given, or made of
        #: ``model`` and ``staged_model`` (a change begun with Library.begin_model_change)
        self.session = session or ModelSession(library, model, staged_model)
        # The analysers a pass runs after CLIP (the face pass; a large backlog has CLIP
        # alone first: ModelSession.pass_analysers), to the end as CLIP is:
        # pending work of any of them keeps the worker indexing. A callable is called on
        # the worker's thread when first needed (loading a face model is no work for the
        # thread that starts the watcher, a GUI's).
        self._analysers_source = analysers
        self._analysers: list | None = None
        self.options = options or WatchOptions()
        self.say = say or (lambda message: log.info("%s", message))
        self.on_batch = on_batch
        self.dirty = DirtyFolders(
            quiet_s=self.options.quiet_s, max_delay_s=self.options.max_delay_s
        )
        self.settler = Settler(self.options.settle_s)
        self.recently_removed = RecentlyRemoved()
        self.watches = FolderWatches(
            self.dirty.mark,
            self.dirty.mark_full,
            poll_s=self.options.poll_s,
            ignore=[os.path.abspath(library.root)],
            say=self.say,
            force_polling=self.options.force_polling,
            observer_factory=observer_factory,
        )
        self.counters = WatchCounters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._control: IndexControl | None = None
        self._control_lock = threading.Lock()
        self._unsettled: dict[str, int] = {}
        self._settle_due: float | None = None
        self._next_full = 0.0
        self._next_health = 0.0
        self._state = "starting"
        self._error: BaseException | None = None
        self._last_batch_at: float | None = None
        #: the catalog generation of the index file on disk, and when it was written
        self._saved_generation = library.index.generation
        self._last_save = time.monotonic()
        self._failures = 0
        self.idle = threading.Event()  # set whenever the worker has nothing left to do

    @property
    def model(self):
        """The model new photos are encoded with (the active one)."""
        return self.session.active

    @property
    def staged_model(self):
        """The model a staged change re-indexes for once nothing is pending; None when no
        change runs."""
        return self.session.staged

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Watcher:
        if self._thread is not None:
            raise RuntimeError("watcher already started")
        self.watches.start()
        self._thread = threading.Thread(target=self._run, name="photofind-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop watching; the index batch in flight is committed, the rest stays pending."""
        self._stop.set()
        self.dirty.stop()
        with self._control_lock:
            if self._control is not None:
                self._control.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
        if not (self._thread and self._thread.is_alive()):
            # The worker is gone, so this thread is now the only writer.
            self._save_index(due_s=0.0)
        self.watches.stop()
        self._state = "stopped"
        self._write_status()

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (it only ends on stop or on an unexpected error)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the worker, if one did."""
        return self._error

    def request_full_reconcile(self, reason: str = "asked for") -> None:
        self.dirty.mark_full(reason)

    # -- the worker -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._state = "running"
            self._health(first=True)
            self._round_or_retry(set(), ["start"])
            while not self._stop.is_set():
                self.dirty.wait(self._next_timer())
                if self._stop.is_set():
                    break
                now = time.monotonic()
                if now >= self._next_health:
                    self._health()
                folders, reasons = self.dirty.take() if self.dirty.due() else (set(), [])
                if now >= self._next_full:
                    reasons.append("periodic")
                if self._settle_due is not None and now >= self._settle_due:
                    folders |= set(self._unsettled.values())
                if folders or reasons:
                    self._round_or_retry(folders, reasons)
        except BaseException as exc:  # noqa: BLE001 - reported through .error and the status
            log.exception("the watcher stopped on an unexpected error")
            self._error = exc
            self._state = "failed"
            self.watches.last_error = f"{type(exc).__name__}: {exc}"
            self._write_status()
        finally:
            self.idle.set()

    def _round_or_retry(self, folders: set[int], reasons: list[str]) -> None:
        """A round that fails (a disk error, the catalog busy) is retried as a full
        reconcile after a growing pause; only repeated failures stop the watcher."""
        try:
            self._round(folders, reasons)
            self._failures = 0
        except Exception as exc:
            self._failures += 1
            if self._failures >= self.MAX_FAILURES:
                raise
            pause = min(30.0, 0.5 * 2**self._failures)
            message = f"a reconcile failed ({type(exc).__name__}: {exc}); retrying in {pause:g} s"
            log.warning("%s", message, exc_info=True)
            self.watches.last_error = message
            self.say(message)
            self._next_full = time.monotonic() + pause

    def _next_timer(self) -> float:
        timers = [self._next_health, self._next_full]
        if self._settle_due is not None:
            timers.append(self._settle_due)
        return min(timers)

    def _health(self, first: bool = False) -> None:
        """Folders gone, back, new or re-made: fix their watches and reconcile them."""
        self._next_health = time.monotonic() + self.options.health_s
        folders = self.library.catalog.folders()
        for folder, what in self.watches.sync(folders):
            if first and what != "offline":
                state = self.watches.states[folder.id]
                how = f"live ({state.mode})" if state.reason is None else f"by {state.mode}"
                why = f": {state.reason}" if state.reason else ""
                self.say(f"folder {folder.path} is watched {how}{why}")
            else:
                self._say_folder(folder, what)
            if not first:
                self.dirty.mark(folder.id)
                if what in ("back", "re-watched", "offline"):
                    self.dirty.mark_full(f"{folder.path} {what}")

    def _say_folder(self, folder, what: str) -> None:
        messages = {
            "offline": "is not reachable: its photos are kept, marked offline",
            "back": "is back: reconciling it",
            "watched": "is now watched",
            "re-watched": "changed under the watch (re-made, or its watch failed): re-watching",
        }
        self.say(f"folder {folder.path} {messages.get(what, what)}")

    def _round(self, folders: set[int], reasons: list[str]) -> None:
        """One reconcile (of ``folders``, or of everything when ``reasons``) and index run."""
        self.idle.clear()
        full = bool(reasons)
        if full:
            self._next_full = time.monotonic() + self.options.reconcile_s
            if any(r != "periodic" and r != "start" for r in reasons):
                self.say(f"full reconcile: {'; '.join(sorted(set(reasons)))}")
            moved_to_polling = self.watches.verify()
            for folder in moved_to_polling:
                self.say(f"folder {folder.path} could not be watched completely: polling it")
        all_folders = self.library.catalog.folders()
        chosen = all_folders if full else [f for f in all_folders if f.id in folders]
        report = (
            reconcile(self.library, chosen, self.settler, self.recently_removed) if chosen else None
        )
        self._account(report, {f.id for f in chosen}, full)
        batch = BatchReport(report, full)
        if report is not None and report.changed:
            self.say(f"reconciled {len(chosen)} folder(s): {report.summary()}")
        if not self._stop.is_set():
            self._index(batch)
        catalog = self.library.catalog
        batch.pending_after = max(
            [
                catalog.counts().get("pending", 0),
                *(a.pending_count(catalog) for a in self.analysers),
            ]
        )
        batch.unsettled = sorted(self._unsettled)
        self._last_batch_at = time.time()
        self._write_status()
        if self.on_batch is not None:
            self.on_batch(batch)
        if not self._unsettled and not self.dirty.waiting_s() and batch.pending_after == 0:
            self.idle.set()

    def _save_index(self, due_s: float | None = None) -> None:
        """Write the index file if it lags the index and was last written ``due_s`` ago
        (default: ``index_save_interval_s``). Only on the thread that writes the index."""
        index = self.library.index
        if index.generation == self._saved_generation or self.library.readonly:
            return
        due_s = self.options.index_save_interval_s if due_s is None else due_s
        if time.monotonic() - self._last_save < due_s:
            return
        index.save(self.library.root)
        self._saved_generation = index.generation
        self._last_save = time.monotonic()

    def _account(self, report: ReconcileReport | None, scanned: set[int], full: bool) -> None:
        c = self.counters
        c.reconciles += 1
        c.full_reconciles += int(full)
        if report is not None:
            for kind in RECONCILED:
                setattr(c, kind, getattr(c, kind) + getattr(report, kind))
            # Files still being written in folders not scanned this round keep waiting.
            self._unsettled = {
                p: f for p, f in self._unsettled.items() if f not in scanned
            } | report.unsettled
        self._settle_due = (
            time.monotonic() + self.settler.due_in() + 0.05 if self._unsettled else None
        )

    def _index(self, batch: BatchReport) -> None:
        """Run the session's passes in its order (new photos first, so they are searchable
        at once; then a staged model change) until none is left or a pass gives way."""
        while not self._stop.is_set():
            kind = self.session.next_pass(self.analysers)
            if kind is None:
                return
            # A pass for new photos does not save the index itself: this watcher does, at
            # most every index_save_interval_s and when it stops. (A staged index is saved
            # at its swap.)
            options = {"batch_size": self.options.batch_size}
            if kind == NEW:
                options.update(
                    save_every_s=None,
                    save_at_end=False,
                    analysers=self.session.pass_analysers(self.analysers),
                )
            stats = self._pass(
                lambda control, progress, kind=kind, options=options: self.session.run_pass(
                    kind, control=control, progress=progress, **options
                )
            )
            if stats is None:
                return
            batch.encoded += stats.indexed
            batch.failed += stats.failed
            if kind == NEW:
                self.counters.encoded += stats.indexed
                self.counters.failed += stats.failed
                if stats.indexed or stats.failed:
                    self.say(f"indexed {stats.indexed} photo(s), {stats.failed} unreadable")
                self._save_index()
            if getattr(stats, "swapped", False):
                self.say(f"re-indexed for model {self.session.active.info.name}: it is now in use")
                continue  # photos that had no new vector at the swap
            if stats.cancelled or self._left_for_next_reconcile(stats):
                return  # changes are waiting (or we are stopping): reconcile first

    def _pass(self, run: Callable[[IndexControl, Callable], object]):
        """``run(control, progress)`` as an index pass that :meth:`stop` and waiting
        changes can cut short (the batch in flight is committed); None when stopping."""
        control = IndexControl()
        with self._control_lock:
            if self._stop.is_set():
                return None
            self._control = control

        def give_way(progress) -> None:
            # On the indexer's writer thread, between two batches: the index is in
            # step with the catalog's last commit here, so it may be saved.
            self._save_index()
            if self.dirty.waiting_s() >= self.options.max_delay_s or self._stop.is_set():
                control.cancel()

        try:
            return run(control, give_way)
        finally:
            with self._control_lock:
                self._control = None

    @property
    def analysers(self) -> list:
        if self._analysers is None:
            source = self._analysers_source
            self._analysers = list(source() if callable(source) else source)
        return self._analysers

    def _left_for_next_reconcile(self, stats) -> bool:
        """Photos the pass left pending because their files changed after the reconcile
        wait for the next one (passing again now would only find them changed again).
        Their folders are marked so that it comes even where no event announces the
        change (a polled folder), unless files still settling there bring it anyway."""
        settling = set(self._unsettled.values())
        for folder_id in stats.changed_folders - settling:
            self.dirty.mark(folder_id)
        return bool(stats.changed)

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict:
        """Health for the GUI and ``photofind watch --status``: a read, safe from any
        thread."""
        out = {
            "state": self._state,
            "pid": os.getpid(),
            **self.watches.status(),
            "changes_waiting": self.dirty.waiting_s() > 0,
            "files_settling": len(self._unsettled),
            "last_batch_at": self._last_batch_at,
            "counters": {"events": self.dirty.events, **asdict(self.counters)},
            "options": asdict(self.options),
            "library": str(self.library.root),
        }
        if self._error is not None:
            out["error"] = f"{type(self._error).__name__}: {self._error}"
        return out

    def _write_status(self) -> None:
        """Mirror the status to ``<library>/watch-status.json``, which ``photofind watch
        --status`` prints from another process."""
        if not self.options.write_status_file:
            return
        import json

        try:
            atomic_write_text(
                os.path.join(self.library.root, STATUS_FILE),
                json.dumps(self.status(), indent=2, default=str),
            )
        except OSError as exc:
            log.warning("cannot write the watch status file: %s", exc)


def read_status_file(library_dir) -> dict | None:
    """The last status a watcher of ``library_dir`` wrote, or None when there is none."""
    import json

    try:
        with open(os.path.join(library_dir, STATUS_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
