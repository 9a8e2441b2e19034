"""The indexer's decode threads, with a time limit per photo.

A decode that never returns (a file on a hung network share, a decoder caught in a loop)
must not hold the whole index run, nor every later one: the photo would stay pending and
hang the next run the same way. So the indexer waits at most ``limit`` seconds for each
photo, counted from when a thread began on it, and records an overrun photo as failed.

Python cannot stop a thread, so an overrun thread is left to finish (or not) on its own.
The threads are daemon threads, unlike ``ThreadPoolExecutor``'s, which the interpreter
joins at exit: a thread stuck for good would otherwise keep the process from ending after
its run reported. While any thread still runs a good photo, the others carry on; once every
thread is stuck, waiting longer cannot help, and :class:`DecodeStuck` ends the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from photofind.errors import PhotofindError


class DecodeStuck(PhotofindError):
    """Every decode thread is stuck in a photo past the time limit."""


class PhotoOverran(Exception):
    """The photo of a job took longer than the time limit (raised by :meth:`DecodePool.wait`)."""


class Job:
    """One call on a decode thread: its :attr:`future`, and when a thread began it."""

    __slots__ = ("fn", "args", "future", "started", "started_at")

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args = fn, args
        self.future: Future = Future()
        self.started = threading.Event()
        self.started_at = 0.0

    def cancel(self) -> bool:
        return self.future.cancel()

    def _run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        self.started_at = time.monotonic()
        self.started.set()
        try:
            result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class DecodePool:
    """``workers`` daemon threads running :class:`Job` s in submission order."""

    def __init__(self, workers: int, *, name: str = "decode"):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._overran: list[Job] = []
        # Set: threads may start jobs. Cleared by :meth:`hold` (see there).
        self._open = threading.Event()
        self._open.set()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (job := self._tasks.get()) is not None:
            self._open.wait()
            job._run()

    def hold(self) -> None:
        """Start no new job until :meth:`release` (jobs already running finish).

        The indexer holds the pool while an encoder that runs on every core itself (ONNX
        Runtime's intra-op threads on the CPU) works through a batch: decode threads beside
        it take cores from some of its threads, while the others, given equal shares of
        each operator, wait for them, and both stages spend more CPU per photo (2 cores,
        ViT-B/32, a quiet minute: 13.9 photos/s without the hold, 16.6 with, and 8.8 CPU-s
        against 7.1 for the same 64 photos). Taking turns, each stage has every core. A
        job's time limit counts from when it starts, so time held is not counted."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def submit(self, fn: Callable, *args) -> Job:
        job = Job(fn, args)
        self._tasks.put(job)
        return job

    def stuck(self) -> int:
        """Threads still inside a job that overran its limit."""
        return sum(not job.future.done() for job in self._overran)

    def wait(self, job: Job, limit: float | None):
        """The job's result; :class:`PhotoOverran` when it ran longer than ``limit`` s."""
        if limit is None:
            return job.future.result()
        # A job waits its turn behind others; its limit counts from when a thread took it.
        while not job.started.wait(limit):
            if self.stuck() >= len(self._threads):
                raise DecodeStuck(
                    f"every decode thread ({len(self._threads)}) is stuck reading a photo for "
                    f"over {limit:g} s (a hung disk or network share?); stopping"
                )
        remaining = job.started_at + limit - time.monotonic()
        try:
            return job.future.result(timeout=max(0.0, remaining))
        except FutureTimeout:
            self._overran.append(job)
            raise PhotoOverran() from None

    def shutdown(self) -> None:
        """Let every thread end after its current job; joins those not stuck."""
        self._open.set()
        for _ in self._threads:
            self._tasks.put(None)
        if not self.stuck():
            for thread in self._threads:
                thread.join()
