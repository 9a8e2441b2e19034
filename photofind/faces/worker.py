"""Faces found in worker processes, so that dlib holds no lock of the caller's.

dlib's embedder (and the loading of its models) holds Python's GIL throughout: in the app's
own process each face freezes the GUI thread for ~0.1 s on a quiet core, each model load
for 0.3 s or more (see detector.py and tests/bench/bench_gui_faces.py). A
:class:`FaceProcesses` runs :class:`photofind.faces.FaceModel` in ``processes`` processes
of their own instead (spawned, never forked: the caller may run threads and Qt), each
loading the models once. :meth:`FaceProcesses.find` sends the picture (a few MB) down the
worker's pipe, waits on the result without the GIL, and gets the faces back as
:meth:`FaceModel.find` gives them. Several threads may call it at once: one picture per
process at a time.

A worker never outlives the app, however the app ends (a SIGKILL included):

- on Linux it asks the kernel for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``). The
  kernel means the parent *thread*, so every worker is started from one thread that lives
  as long as the workers (``face-spawner``), never from the short-lived caller threads (the
  indexer's decode threads end with each pass);
- everywhere, a thread of the worker waits on multiprocessing's parent sentinel (a pipe whose
  other end only the parent holds: it reads end-of-file when the parent is gone) and ends
  the process; and the worker's loop ends at end-of-file on its request pipe.

A worker that dies on a picture (killed, out of memory, a crash in dlib) is replaced and the
picture tried once more on the new one; a second death raises :class:`WorkerStopped`, which
says how the worker ended (the face analyser records the photo failed with that reason).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait

import numpy as np

from photofind.errors import ModelError

log = logging.getLogger(__name__)

#: Linux only: the kernel kills a worker when the thread that started it ends (see above).
#: The fallback thread alone does it where this is False (and on other systems).
PDEATHSIG = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1


class WorkerStopped(ModelError):
    """A face worker process died on a picture twice: once, then on the retry."""


def _die_with_parent(parent_pid: int, use_pdeathsig: bool) -> None:
    """In the worker: end when the parent process does (see the module docstring)."""
    if use_pdeathsig:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the fallback below still ends the worker
    parent = multiprocessing.parent_process()
    # The parent may have died before the prctl call took effect: then no signal comes.
    if os.getppid() != parent_pid:
        os._exit(1)
    if parent is not None:

        def watch() -> None:
            wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(conn, settings: dict, parent_pid: int, use_pdeathsig: bool) -> None:
    """A worker process: load the models, then answer ``(shape, dtype)`` + pixels with
    ``("ok", faces)`` or ``("raise", exception)`` until the pipe ends."""
    _die_with_parent(parent_pid, use_pdeathsig)
    try:
        from photofind.faces.detector import FaceModel

        model = FaceModel(**settings)
    except Exception as exc:  # noqa: BLE001 - handed to the parent
        conn.send(("raise", _picklable(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            shape, dtype = conn.recv()
            pixels = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe, or is gone
        try:
            answer = ("ok", model.find(np.frombuffer(pixels, dtype=dtype).reshape(shape)))
        except Exception as exc:  # noqa: BLE001 - handed to the parent
            answer = ("raise", _picklable(exc))
        try:
            conn.send(answer)
        except OSError:
            return  # the parent is gone (or closed the pipe) while this picture ran


def _picklable(exc: Exception) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any exception that does not survive the trip
        return ModelError(f"{type(exc).__name__}: {exc}")
    return exc


def _how_it_ended(process) -> str:
    process.join(timeout=5)
    code = process.exitcode
    if code is None:  # its pipe broke, yet it runs: it cannot be used again
        process.kill()
        process.join()
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    __slots__ = ("process", "conn", "generation")

    def __init__(self, process, conn, generation: int):
        self.process, self.conn, self.generation = process, conn, generation

    def stop(self) -> None:
        """Close its pipe (the worker's loop ends) and wait for it; kill it if it lingers."""
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class _Died(Exception):
    """The worker of a call died (its pipe broke)."""


class FaceProcesses:
    """``processes`` worker processes, each with a FaceModel of ``settings`` (FaceModel's
    keyword arguments). Started on first use (one more each time all are busy, up to
    ``processes``); :meth:`close` ends them (they start again when next needed)."""

    #: the worker's main function (a module-level function: spawned processes import it)
    serve = staticmethod(serve)

    def __init__(self, processes: int = 1, **settings):
        self.processes = max(1, processes)
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._generation = 0
        self._spawner: ThreadPoolExecutor | None = None

    # -- the workers ------------------------------------------------------------------------

    def _start_process(self, generation: int) -> _Worker:
        """On the spawner thread (the workers' parent thread for PR_SET_PDEATHSIG)."""
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=self.serve,
            args=(child, self.settings, os.getpid(), PDEATHSIG),
            name="photofind-faces",
            daemon=True,
        )
        process.start()
        child.close()  # the worker holds the only other end: its death reads as EOF here
        return _Worker(process, parent, generation)

    def _start(self) -> _Worker:
        with self._cond:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="face-spawner")
            spawner, generation = self._spawner, self._generation
        worker = spawner.submit(self._start_process, generation).result()
        try:
            kind, value = worker.conn.recv()  # waits for its models to load
        except (EOFError, OSError):
            reason = _how_it_ended(worker.process)
            raise ModelError(f"the face worker process stopped while starting ({reason})") from None
        if kind != "ready":
            worker.stop()
            raise ModelError(f"the face worker process could not load its models: {value}")
        return worker

    def _take(self) -> _Worker:
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if len(self._workers) + self._starting < self.processes:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            worker = self._start()
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
        with self._cond:
            self._workers.add(worker)
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._cond:
            current = worker.generation == self._generation
            if current:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._cond.notify()
        if not current:
            worker.stop()  # closed while it worked

    def _lost(self, worker: _Worker) -> str:
        """Forget a worker that died; how it ended."""
        worker.conn.close()
        reason = _how_it_ended(worker.process)
        with self._cond:
            self._workers.discard(worker)
            self._cond.notify()
        return reason

    @staticmethod
    def _call(worker: _Worker, rgb: np.ndarray):
        try:
            worker.conn.send((rgb.shape, rgb.dtype.str))
            worker.conn.send_bytes(memoryview(rgb).cast("B"))  # flat: send_bytes counts items
            return worker.conn.recv()
        except (EOFError, OSError) as exc:
            raise _Died() from exc

    # -- the interface ----------------------------------------------------------------------

    def find(self, rgb: np.ndarray) -> list:
        """:meth:`FaceModel.find` in a worker process."""
        rgb = np.ascontiguousarray(rgb)
        reasons = []
        for _ in range(2):
            worker = self._take()
            try:
                kind, value = self._call(worker, rgb)
            except _Died:
                reasons.append(self._lost(worker))
                log.warning("a face worker process died on a picture (%s)", reasons[-1])
                continue
            self._give_back(worker)
            if kind == "ok":
                return value
            raise value
        raise WorkerStopped(
            "the face worker process stopped on this picture, and again when it was tried on "
            f"a new one ({'; then '.join(reasons)})"
        )

    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        with self._cond:
            return sorted(w.process.pid for w in self._workers if w.process.is_alive())

    def close(self) -> None:
        """End the workers: the idle ones now, busy ones when their picture is done."""
        with self._cond:
            self._generation += 1
            idle, self._idle = self._idle, []
            self._workers.difference_update(idle)
            spawner = None
            # The spawner thread is the busy workers' parent for PR_SET_PDEATHSIG: ending it
            # would kill them mid-picture, so it stays (for the next ones) while they work.
            if not self._workers:
                spawner, self._spawner = self._spawner, None
        for worker in idle:
            worker.stop()
        if spawner is not None:
            spawner.shutdown(wait=True)
