"""Faces found in worker processes (photofind.faces.worker): the same faces as in this
process, no dlib work here, the processes ended by close; a worker killed on a picture is
replaced and the picture tried again, a second death a clear error; and no worker outlives
its parent, killed with SIGKILL (with PR_SET_PDEATHSIG, and with the portable fallback
alone)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import faces_data as data
import numpy as np
import pytest
from face_worker_helpers import serve_dying

pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
if not data.FACES.is_dir():
    pytest.skip(f"{data.FACES}: the shared face photos are not there", allow_module_level=True)

from photofind.clip import load_model  # noqa: E402
from photofind.clip.providers import cpu_threads  # noqa: E402
from photofind.errors import ModelError  # noqa: E402
from photofind.faces import FaceModel  # noqa: E402
from photofind.faces.worker import FaceProcesses, WorkerStopped  # noqa: E402
from photofind.library.face_analyser import FaceAnalyser  # noqa: E402
from photofind.library.face_records import FACES  # noqa: E402
from photofind.library.library import Library  # noqa: E402
from photofind.paths import bundled_models_dir  # noqa: E402
from photofind.people import face_analysers  # noqa: E402

HELPERS = Path(__file__).with_name("face_worker_helpers.py")
ROOT = Path(__file__).resolve().parents[1]
# Generous: a worker ends within milliseconds of its parent; a loaded CI machine may take
# seconds to schedule it. The wait is an event (the pidfd), never a poll.
EXIT_TIMEOUT_S = 60


class DyingProcesses(FaceProcesses):
    serve = staticmethod(serve_dying)


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
        (worker,) = workers._workers
        assert worker.process.is_alive() and workers.pids() == [worker.process.pid]
    finally:
        workers.close()
    assert not worker.process.is_alive() and workers.pids() == []
    assert len(workers.find(rgb)) == 2  # started again when needed
    workers.close()


def test_every_front_end_finds_faces_in_a_worker_process_per_core(tmp_path):
    # The CLI's index, watch and the app take their face pass from face_analysers: as many
    # workers as decode threads (one per core), none started before a photo needs one.
    (faces,) = face_analysers(tmp_path)
    try:
        assert faces._processes is not None and faces.in_decode_threads
        assert faces._processes.processes == cpu_threads()
        assert faces._processes.pids() == []
    finally:
        faces.close()


def test_a_worker_that_cannot_load_its_models_is_a_clear_error():
    workers = FaceProcesses(1, detector="nope")
    try:
        with pytest.raises(ModelError, match="could not load its models: unknown face detector"):
            workers.find(data.load("obama.jpg", 600))
        assert workers.pids() == []
    finally:
        workers.close()


def test_a_worker_killed_during_a_find_is_replaced_and_the_picture_tried_again():
    rgb = data.load("obama.jpg", 600)
    workers = FaceProcesses(1)
    try:
        assert len(workers.find(rgb)) == 1
        (pid,) = workers.pids()
        # Stopped, it cannot answer the picture sent next; killed, it never will.
        os.kill(pid, signal.SIGSTOP)
        found = []
        finder = threading.Thread(target=lambda: found.append(workers.find(rgb)))
        finder.start()
        os.kill(pid, signal.SIGKILL)
        finder.join()
        assert len(found) == 1 and len(found[0]) == 1
        (new,) = workers.pids()
        assert new != pid
    finally:
        workers.close()


def test_a_worker_that_dies_on_the_first_try_only_costs_a_retry(tmp_path):
    rgb = data.load("obama.jpg", 600)
    workers = DyingProcesses(1, once=str(tmp_path / "died"))
    try:
        assert len(workers.find(rgb)) == 1
        assert (tmp_path / "died").exists()
    finally:
        workers.close()


def test_a_picture_that_kills_its_worker_twice_is_a_clear_error():
    rgb = data.load("obama.jpg", 600)
    workers = DyingProcesses(1)
    try:
        with pytest.raises(WorkerStopped, match=r"again .*killed by SIGKILL; then killed by"):
            workers.find(rgb)
    finally:
        workers.close()


def test_a_photo_whose_worker_dies_twice_is_recorded_failed_and_clip_still_done(tmp_path):
    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy(data.FACES / "biden.jpg", photos / "biden.jpg")
    faces = FaceAnalyser(processes=1)
    faces._processes.close()
    faces._processes = DyingProcesses(1)
    tiny = load_model(bundled_models_dir() / "tiny-synthetic", provider="cpu")
    try:
        with Library.open(tmp_path / "lib") as library:
            library.add_folder(photos)
            library.scan()
            stats = library.index_pending(tiny, analysers=[faces])
            catalog = library.catalog
            biden = catalog.photo_by_path(photos / "biden.jpg")
            status, error, _ = catalog.analysis(biden.id, FACES)
            assert status == "failed"
            assert "biden.jpg: no faces read: the face worker process stopped" in error
            assert "killed by SIGKILL" in error
            assert stats.failed == 1 and catalog.counts()["indexed"] == 1  # its vector
    finally:
        faces.close()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux)")
@pytest.mark.parametrize(
    "flags",
    [[], ["--busy"], ["--no-pdeathsig"], ["--no-pdeathsig", "--busy"]],
    ids=["idle", "busy", "fallback-idle", "fallback-busy"],
)
def test_no_worker_outlives_its_parent_killed_with_sigkill(flags):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HELPERS.parent)]))
    parent = subprocess.Popen(
        [sys.executable, str(HELPERS), *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    fds: list[int] = []
    try:
        pids = json.loads(parent.stdout.readline())
        # The threads that started the workers ended: the same two serve the next pass.
        assert json.loads(parent.stdout.readline()) == pids
        assert parent.stdout.readline().strip() == "ready"
        assert len(pids) == 2
        fds = [os.pidfd_open(pid) for pid in pids]  # alive now: opened before the kill
    finally:
        parent.kill()
        parent.wait()
        parent.stdin.close()
        parent.stdout.close()
    try:
        left = set(fds)
        while left:
            readable, _, _ = select.select(list(left), [], [], EXIT_TIMEOUT_S)
            assert readable, f"face workers {pids} still running {EXIT_TIMEOUT_S} s after"
            left.difference_update(readable)
    finally:
        for fd in fds:
            os.close(fd)


def test_no_more_face_workers_than_a_quarter_of_the_free_memory_holds(monkeypatch):
    from photofind.library import face_analyser

    free = face_analyser._free_memory()
    assert 0 < free < 1 << 50  # this machine's MemAvailable, read
    n = face_analyser.worker_count()
    assert 1 <= n <= cpu_threads() and n <= max(1, free // (4 * face_analyser.WORKER_BYTES))
    # A machine with ~0.5 GiB free: one worker, whatever the cores.
    monkeypatch.setattr(face_analyser, "_free_memory", lambda: 2**29)
    assert face_analyser.worker_count() == 1
