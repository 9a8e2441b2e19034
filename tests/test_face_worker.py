"""Faces found in worker processes (photofind.faces.worker): the same faces as in this
process, no dlib work here, the processes ended by close, a killed worker a clear error."""

from __future__ import annotations

import os
import signal

import faces_data as data
import numpy as np
import pytest

pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
if not data.FACES.is_dir():
    pytest.skip(f"{data.FACES}: the shared face photos are not there", allow_module_level=True)

from photofind.errors import ModelError  # noqa: E402
from photofind.faces import FaceModel  # noqa: E402
from photofind.faces.worker import FaceProcesses  # noqa: E402


def test_the_workers_find_the_same_faces_and_end_with_close():
    rgb = data.load("two_people.jpg", 1200)
    here = FaceModel().find(rgb)
    workers = FaceProcesses(1)
    try:
        there = workers.find(rgb)
        assert [f.box for f in there] == [f.box for f in here]
        for a, b in zip(there, here):
            assert np.array_equal(a.embedding, b.embedding)
            assert a.thumbnail.shape == b.thumbnail.shape
        processes = list(workers._pool._processes.values())
        assert len(processes) == 1 and processes[0].is_alive()
    finally:
        workers.close()
    assert not processes[0].is_alive() and workers._pool is None


def test_a_killed_worker_is_a_clear_error_and_the_next_call_starts_another():
    rgb = data.load("obama.jpg", 600)
    workers = FaceProcesses(1)
    try:
        assert len(workers.find(rgb)) == 1
        (process,) = workers._pool._processes.values()
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        with pytest.raises(ModelError, match="face worker process stopped"):
            workers.find(rgb)
        assert len(workers.find(rgb)) == 1  # a new worker
    finally:
        workers.close()
