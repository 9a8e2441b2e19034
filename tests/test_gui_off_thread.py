"""What may wait runs off the GUI thread: a model change whose old watcher is slow to stop,
Copy image of a file that is slow to read. A heartbeat timer on the GUI thread proves the
event loop kept turning meanwhile; the real threads, a real watcher, a real FIFO."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytest.importorskip("PySide6.QtWidgets")

from images import write_photo_jpeg  # noqa: E402
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage  # noqa: E402


@pytest.fixture(scope="module")
def model_b():
    from photofind.clip import load_model

    return load_model("tiny-synthetic", provider="cpu")


def photos(folder, n):
    """``n`` photos written a minute ago (settled: the watcher takes them at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    past = time.time() - 60
    for i in range(n):
        path = write_photo_jpeg(folder / f"photo_{i:02d}.jpg", width=200, height=150, seed=i)
        os.utime(path, (past, past))
    return folder


def heartbeat(beats: list, on_beat) -> QTimer:
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: (beats.append(time.monotonic()), on_beat(len(beats))))
    return timer


def test_a_model_change_stops_the_busy_watcher_and_writes_the_library_off_the_gui_thread(
    qtbot, window, tmp_path, model_b
):
    """The old watcher is inside an index pass and cannot stop until the GUI thread's
    heartbeat lets it go: had set_model joined it on the GUI thread, no beat could fire and
    the pass would give up waiting (10 s). It stops off the GUI thread, and the change is
    begun there too (catalog writes, index save)."""
    gui = threading.get_ident()
    library = window.library
    entered, release = threading.Event(), threading.Event()
    waited: list[bool] = []

    def hold(_progress):  # on the watcher's thread, in the pass: its stop waits for this
        if not entered.is_set():
            entered.set()
            waited.append(release.wait(10))

    library.listeners.append(hold)
    threads: list[tuple[str, int]] = []  # who stopped the old watcher, who began the change
    begin = library.begin_model_change

    def recorded_begin(model):
        threads.append(("begin_model_change", threading.get_ident()))
        return begin(model)

    library.begin_model_change = recorded_begin
    window.add_folder(str(photos(tmp_path / "photos", 12)))
    qtbot.waitUntil(entered.is_set, timeout=30_000)
    watcher = window.indexing.watcher
    stop = watcher.stop

    def recorded_stop(*args, **kwargs):
        threads.append(("stop", threading.get_ident()))
        return stop(*args, **kwargs)

    watcher.stop = recorded_stop
    beats: list[float] = []
    timer = heartbeat(beats, lambda n: n == 5 and release.set())
    timer.start()  # beats only once control is back in the event loop: after set_model
    try:
        with qtbot.waitSignal(window.modelSet, timeout=60_000):
            window.set_model(model_b)
            assert not release.is_set() and window.indexing is None  # stopping, not stopped
    finally:
        timer.stop()
        release.set()
    assert waited == [True]  # the heartbeat let the pass go: the event loop never waited
    assert len(beats) >= 5
    names = [name for name, _ in threads]
    assert names[:2] == ["stop", "begin_model_change"]
    assert all(ident != gui for _, ident in threads)
    assert model_b in (window.model, window.staged_model)
    assert window.indexing is not None and window.indexing.running  # a new watcher
    assert "tiny-synthetic" in window.model_label.text()


def test_rewrites_asked_while_one_runs_run_after_it_in_order(qtbot, window, tmp_path, model_b):
    """A model change, a folder removal and a change back, asked at once: they run one after
    the other, and no watcher writes until the last one is done."""
    model_a = window.model
    folder, kept = photos(tmp_path / "photos", 4), photos(tmp_path / "kept", 3)
    for each in (folder, kept):
        with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
            window.add_folder(str(each))
    seen: list[tuple] = []
    window.folderRemoved.connect(lambda path: seen.append(("removed", window.indexing)))
    window.modelSet.connect(lambda model: seen.append(("set", model, window.indexing.running)))
    with qtbot.waitSignal(window.modelSet, timeout=60_000):
        window.set_model(model_b)
        window.remove_folder(str(folder))
        window.set_model(model_a)
    assert seen == [("removed", None), ("set", model_a, True)]
    assert window.model is model_a and window.staged_model is None  # switching back: free
    status = window.library.status()
    assert (status["folders"], status["indexed"]) == (1, 3)
    assert "staged_model" not in status


def _png_bytes(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(0xFF3366)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def test_copy_image_reads_a_file_that_blocks_off_the_gui_thread(qtbot, window, tmp_path):
    """A FIFO named like a photo: reading it waits until someone writes. copy_image returns
    before anyone did; the picture reaches the clipboard once it is written."""
    fifo = tmp_path / "slow.png"
    os.mkfifo(fifo)
    picture = _png_bytes(24, 16)
    unblocked = threading.Event()

    def unblock():  # had the GUI thread opened the FIFO, this alone would let it go on
        if not unblocked.wait(10):
            with open(fifo, "wb"):
                pass

    safety = threading.Thread(target=unblock, daemon=True)
    safety.start()
    try:
        with qtbot.waitSignal(window.photo_actions.imageCopied, timeout=30_000) as copied:
            window.copy_image(str(fifo))
            assert safety.is_alive()  # returned with nobody writing the FIFO

            def reader_waits():  # a writer opens without blocking once a reader has it open
                try:
                    descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    return False
                os.set_blocking(descriptor, True)
                os.write(descriptor, picture)
                os.close(descriptor)
                return True

            qtbot.waitUntil(reader_waits, timeout=10_000)
    finally:
        unblocked.set()
        safety.join(15)
    assert copied.args == [str(fifo), True]
    assert QGuiApplication.clipboard().image().size().toTuple() == (24, 16)


def test_copy_image_of_a_file_that_is_no_picture_says_so(qtbot, window, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    with qtbot.waitSignal(window.photo_actions.imageCopied, timeout=10_000) as copied:
        window.copy_image(str(broken))
    assert copied.args == [str(broken), False]
    assert window.statusBar().currentMessage() == f"Cannot copy {broken}: not readable"


def test_settings_opens_at_once_and_reads_the_model_manifests_off_the_gui_thread(
    qtbot, window, monkeypatch
):
    """The dialog is up, its model box waiting, while the manifest reader is held on its
    thread; then the list fills in. Every manifest read is on a pool thread."""
    from PySide6.QtWidgets import QApplication

    import photofind.models.store as store_module

    real = store_module.read_manifest
    readers: list[threading.Thread] = []
    gate = threading.Event()

    def reading(path):
        readers.append(threading.current_thread())
        if threading.current_thread() is not threading.main_thread():
            gate.wait(30)  # until the test has seen the dialog open (the GUI's: no waiting)
        return real(path)

    monkeypatch.setattr(store_module, "read_manifest", reading)
    seen: dict = {}

    def in_the_dialog():
        dialog = QApplication.activeModalWidget()
        seen["waiting"] = (dialog.model.isEnabled(), dialog.model_facts.text())
        seen["before"] = [dialog.model.itemText(i) for i in range(dialog.model.count())]

        def shown():
            seen["after"] = [dialog.model.itemData(i) for i in range(dialog.model.count())]
            seen["enabled"] = dialog.model.isEnabled()
            dialog.reject()

        if dialog.model.isEnabled():  # the list was read before the dialog opened
            shown()
            return
        dialog.modelsShown.connect(shown)
        gate.set()

    QTimer.singleShot(0, in_the_dialog)
    window.open_settings()  # returns when the dialog is closed, after the list came
    assert seen["waiting"] == (False, "Reading the installed models…")
    current = window.model.info.name
    assert seen["before"] == [current]  # the current model alone meanwhile
    assert {current, "tiny-synthetic"} <= set(seen["after"]) and seen["enabled"]
    assert readers, "no manifest was read"
    assert threading.main_thread() not in readers
