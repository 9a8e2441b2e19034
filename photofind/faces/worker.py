"""Faces found in worker processes, so that dlib holds no lock of the caller's.

dlib's embedder (and the loading of its models) holds Python's GIL throughout: in the app's
own process each face freezes the GUI thread for ~0.1 s on a quiet core, each model load
for 0.3 s or more (see detector.py and tests/bench/bench_gui_faces.py). A
:class:`FaceProcesses` runs :class:`photofind.faces.FaceModel` in ``processes`` processes
of their own instead (spawned, never forked: the caller may run threads and Qt), each
loading the models once. :meth:`FaceProcesses.find` sends the picture (a few MB), waits on
the result without the GIL, and gets the faces back as :meth:`FaceModel.find` gives them.
Several threads may call it at once: one picture per process at a time.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from photofind.errors import ModelError

_model = None  # the worker process's FaceModel


def _start(settings: dict) -> None:
    global _model
    from photofind.faces.detector import FaceModel

    _model = FaceModel(**settings)


def _find(rgb: np.ndarray) -> list:
    return _model.find(rgb)


class FaceProcesses:
    """``processes`` worker processes, each with a FaceModel of ``settings`` (FaceModel's
    keyword arguments). Started on first use; :meth:`close` ends them."""

    def __init__(self, processes: int = 1, **settings):
        self.processes = processes
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=(self.settings,),
                )
            return self._pool

    def find(self, rgb: np.ndarray) -> list:
        try:
            return self._executor().submit(_find, np.ascontiguousarray(rgb)).result()
        except BrokenProcessPool as exc:
            # A worker that died (killed, out of memory, a model that would not load): the
            # next call starts new ones; this picture's faces are not found.
            with self._lock:
                self._pool = None
            raise ModelError(f"the face worker process stopped: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
