"""Worker mains and a parent program for tests/test_face_worker.py: they run in processes
of their own (spawned face workers import this module by name; the parent program runs as
a script), so they live in a module rather than in the test file.

- :func:`serve_dying`: a face worker that kills itself with SIGKILL on the first picture it
  gets, the way a crash in dlib or the kernel's out-of-memory killer ends one; with a
  ``once`` flag file, only the first worker to see a picture does (the file records it), and
  the next one finds the faces as the real worker does.
- run as a script: the app's face pass (two worker processes, both started by two decode
  threads at once), twice, printing the workers' pids as a JSON line after each (the same
  workers serve the second pass: the first pass's threads ended), then ``ready``, then
  blocking until killed. ``--no-pdeathsig``: the workers rely on the portable fallback alone;
  ``--busy``: the workers are kept finding faces when the program is killed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

from photofind.faces import worker


def serve_dying(conn, settings: dict, parent_pid: int, use_pdeathsig: bool) -> None:
    settings = dict(settings)
    once = settings.pop("once", None)
    if once is None or not Path(once).exists():
        conn.send(("ready", os.getpid()))
        conn.recv()  # the picture is on its way
        if once is not None:
            Path(once).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    worker.serve(conn, settings, parent_pid, use_pdeathsig)


def _parent(argv: list[str]) -> None:
    import faces_data as data

    from photofind.library.face_analyser import FaceAnalyser

    worker.PDEATHSIG = worker.PDEATHSIG and "--no-pdeathsig" not in argv
    faces = FaceAnalyser(processes=2)
    rgb = data.load("obama.jpg", 600)
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()  # both at once: the second call starts the second worker
        faces._processes.find(rgb)

    for _ in range(2):  # two passes, each with decode threads of its own
        threads = [threading.Thread(target=one, name=f"decode-{i}") for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()  # the decode threads end, as after each pass: the workers must not
        print(json.dumps(faces._processes.pids()), flush=True)
    if "--busy" in argv:
        for i in range(2):
            threading.Thread(
                target=lambda: [faces._processes.find(rgb) for _ in iter(int, 1)],
                name=f"busy-{i}",
                daemon=True,
            ).start()
    print("ready", flush=True)
    sys.stdin.read()  # until killed


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    _parent(sys.argv[1:])
