"""Where each core's time went: CPU-seconds per thread kind, sampled from /proc (Linux).

The indexer's stages are threads: decode workers (``decode-N``), the writer
(``photofind-writer``), the pipeline thread that calls the encoder (``MainThread`` in the
benches) and ONNX Runtime's own intra-op threads, which Python does not know. A sampler
thread reads every thread's utime+stime from ``/proc/self/task/*/stat`` every ``period_s``
and files each thread under the name Python gives it (threads Python does not know are
ONNX Runtime's, or dlib's: ``native``). A thread that ends between two samples loses at most
one period of CPU; ``unaccounted_s`` (process CPU minus the sum) says how much that was.

``idle_s`` is what the cores could have done and did not: cores x wall - process CPU. On a
shared machine part of it went to other processes: ``other_processes_cpu_s`` (from
``/proc/stat``, all processes of the machine minus this one) and ``loadavg`` say how much.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_KINDS = (
    (re.compile(r"^decode-\d+$"), "decode"),
    (re.compile(r"^photofind-writer$"), "write"),
    (re.compile(r"^MainThread$"), "pipeline"),
    (re.compile(r"^cpu-account$"), "accounting"),
)


def kind_of(name: str | None) -> str:
    if name is None:
        return "native"  # ONNX Runtime's intra-op threads (and dlib's, if any)
    for pattern, kind in _KINDS:
        if pattern.match(name):
            return kind
    return "other"


def _thread_cpu(tid: int) -> float | None:
    try:
        text = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float | None:
    """CPU-seconds every process on the machine has run so far (all cores), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    values = [int(v) for v in first[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


class CpuAccount:
    """``with CpuAccount() as acct: ...`` then ``acct.report()``."""

    def __init__(self, period_s: float = 0.05):
        self.period_s = period_s
        self.available = Path("/proc/self/task").is_dir()
        self._last: dict[int, tuple[str, float]] = {}
        self._start: dict[int, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        for entry in os.listdir("/proc/self/task"):
            tid = int(entry)
            cpu = _thread_cpu(tid)
            if cpu is None:
                continue
            with self._lock:
                if tid not in self._start:
                    # Born during the run: all its CPU is the run's (a thread of an earlier
                    # run has the same name but another id).
                    self._start[tid] = 0.0 if self._started else cpu
                kind = (
                    kind_of(names.get(tid))
                    if tid in names
                    else self._last.get(tid, ("native", 0.0))[0]
                )
                self._last[tid] = (kind, cpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> CpuAccount:
        self.cores = len(os.sched_getaffinity(0))
        self.load_before = loadavg()
        self._started = False
        if self.available:
            self._sample()
        self._started = True
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.machine0 = machine_busy_s()
        if self.available:
            self._thread = threading.Thread(target=self._loop, name="cpu-account", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        machine = machine_busy_s()
        self.others = (
            max(0.0, machine - self.machine0 - self.cpu)
            if machine is not None and self.machine0 is not None
            else 0.0
        )
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()
        self.load_after = loadavg()

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for tid, (kind, cpu) in self._last.items():
                out[kind] = out.get(kind, 0.0) + cpu - self._start.get(tid, cpu)
        return out

    def core_time(self) -> dict[str, float]:
        """Fractions of cores x wall per use (see the module docstring); they sum to 1."""
        kinds = self.by_kind()
        threads = {
            "decode_threads": kinds.get("decode", 0.0),
            "encoder_threads": kinds.get("native", 0.0),
            "pipeline_thread": kinds.get("pipeline", 0.0),
            "writer": kinds.get("write", 0.0),
        }
        # The ticks of /proc and process_time() round differently: the larger is the total.
        process = max(self.cpu, sum(kinds.values()))
        threads["this_process_other"] = process - sum(threads.values())
        capacity = self.cores * self.wall
        threads["other_processes"] = min(self.others, max(0.0, capacity - process))
        threads["idle"] = max(0.0, capacity - process - threads["other_processes"])
        whole = max(capacity, process)
        return {k: round(v / whole, 4) if whole else 0.0 for k, v in threads.items()}

    def report(self) -> dict:
        kinds = self.by_kind()
        # ONNX Runtime's pool threads and the pipeline thread that runs the session both
        # encode; dlib runs on the decode threads when faces are found there.
        counted = sum(kinds.values())
        out = {
            "wall_s": round(self.wall, 3),
            "cores": self.cores,
            "process_cpu_s": round(self.cpu, 3),
            "cpu_s_by_thread": {k: round(v, 3) for k, v in sorted(kinds.items())},
            "unaccounted_s": round(self.cpu - counted, 3),
            # Cores the run did not use: some went to other processes, the rest stood idle.
            "other_processes_cpu_s": round(self.others, 3),
            "idle_s": round(max(0.0, self.cores * self.wall - self.cpu - self.others), 3),
            # The cores other processes left this run, on average.
            "cores_left_to_us": round(max(0.0, self.cores - self.others / self.wall), 3)
            if self.wall
            else 0.0,
            "cores_busy": round(self.cpu / self.wall, 3) if self.wall else 0.0,
            "core_time": self.core_time(),
            "loadavg_before": self.load_before,
            "loadavg_after": self.load_after,
        }
        return out
