"""A photo that cannot be read is found from the status bar: which, where, why, and again."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("PySide6.QtWidgets")

from images import write_photo_jpeg, write_text_as_jpeg, write_truncated_jpeg  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402

import photofind.gui.unreadable_dialog as unreadable_module  # noqa: E402
from photofind.gui.unreadable_dialog import reason_text  # noqa: E402


def test_the_reason_drops_the_path_it_repeats():
    path = "/photos/a b.jpg"
    assert reason_text(path, f"Cannot read image {path}: the file is empty (0 bytes)") == (
        "Cannot read image: the file is empty (0 bytes)"
    )
    assert reason_text(path, "broken symbolic link") == "broken symbolic link"
    assert "no reason" in reason_text(path, None)


def _index(qtbot, window, folder):
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(folder))


def test_the_could_not_be_read_list_by_folder_with_reasons_copy_show_and_try_again(
    qtbot, window, tmp_path, monkeypatch
):
    trips = tmp_path / "trips"
    trips.mkdir()
    for i in range(2):
        write_photo_jpeg(trips / f"good_{i}.jpg", width=160, height=120, seed=i)
    cut = write_truncated_jpeg(trips / "cut.jpg")
    notes = tmp_path / "notes"
    notes.mkdir()
    text = write_text_as_jpeg(notes / "list.jpg")
    _index(qtbot, window, trips)
    _index(qtbot, window, notes)
    button = window.unreadable.button
    qtbot.waitUntil(lambda: not button.isHidden() and button.text() == "2 could not be read")

    # The list is read off the GUI thread (the watcher's writer may hold the catalog).
    threads = []
    real = unreadable_module.unreadable_photos
    monkeypatch.setattr(
        unreadable_module,
        "unreadable_photos",
        # (get_ident: current_thread() would register the pool's thread with threading.)
        lambda library: threads.append(threading.get_ident()) or real(library),
    )
    with qtbot.waitSignal(window.unreadable.listShown, timeout=10_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert threads and threads[0] != threading.main_thread().ident
    dialog = window.unreadable.dialog
    assert dialog.isVisible() and dialog.objectName() == "unreadableDialog"
    rows = dialog.rows()
    assert [(folder, [p for p, _ in photos]) for folder, photos in rows] == [
        (str(notes), [str(text)]),
        (str(trips), [str(cut)]),
    ]
    reasons = {p: why for _, photos in rows for p, why in photos}
    assert "truncated or damaged" in reasons[str(cut)] and str(cut) not in reasons[str(cut)]
    assert "not an image" in reasons[str(text)]
    assert "2 photos could not be read" in dialog.heading.text()

    # Copy path and Show in folder act on the chosen photo.
    assert not dialog.copy_button.isEnabled()  # nothing chosen yet
    dialog.select(str(cut))
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == str(cut)
    shown = []
    window.show_in_folder = shown.append  # no file manager on a test machine
    dialog.show_button.click()
    assert shown == [str(cut)]

    # Try again: a photo an earlier decoder failed on (unchanged on disk) is read now; the
    # damaged one fails again, with its reason.
    good = str(trips / "good_0.jpg")
    photo = next(p for p in window.library.catalog.photos() if p.path == good)
    window.library.catalog.record_failure(photo.id, f"Cannot read image {good}: a decoder bug")
    window.refresh_folders()
    qtbot.waitUntil(lambda: button.text() == "3 could not be read", timeout=10_000)
    qtbot.waitUntil(lambda: good in {p for _, ps in dialog.rows() for p, _ in ps}, timeout=10_000)
    with qtbot.waitSignal(window.unreadable.retried, timeout=10_000) as retried:
        dialog.retry_button.click()
    assert retried.args == [3]
    qtbot.waitUntil(lambda: button.text() == "2 could not be read", timeout=60_000)
    qtbot.waitUntil(
        lambda: [[p for p, _ in ps] for _, ps in dialog.rows()] == [[str(text)], [str(cut)]],
        timeout=30_000,
    )
    status = window.library.status()
    assert (status["indexed"], status["failed"]) == (2, 2)


def test_no_button_when_every_photo_was_read(qtbot, window, tmp_path):
    folder = tmp_path / "fine"
    folder.mkdir()
    write_photo_jpeg(folder / "a.jpg", width=120, height=90, seed=1)
    _index(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.folders_panel.rows() == [(str(folder), "1", "watching")])
    assert window.unreadable.button.isHidden()
    assert "photos indexed" in window.index_label.text()
