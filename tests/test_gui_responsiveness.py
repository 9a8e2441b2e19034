"""The GUI thread stays off the catalog and out of Python while indexing runs.

What ``tests/bench/bench_gui.py --trace-stalls`` found behind the app's stalls, kept from
coming back: the GUI thread waiting on the catalog's lock (which the watcher's writer holds
for long reconciles), a Python loop over every photo to count the folders, seven calls into
Python per painted cell, and a reset of the grid for a refreshed search that found the same
photos. Timings belong to the benchmark; these tests check the behaviour.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

from images import write_photo_jpeg  # noqa: E402
from PySide6.QtCore import QModelIndex, Qt  # noqa: E402
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem  # noqa: E402

from photofind.gui.folders_panel import count_photos  # noqa: E402
from photofind.library.catalog import Catalog  # noqa: E402
from photofind.library.scanner import FailedFile, FileInfo, ScanResult  # noqa: E402


def _indexed_folder(qtbot, window, folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_photo_jpeg(folder / f"photo_{i:02d}.jpg", width=160, height=120, seed=i)
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.add_folder(str(folder))


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def test_folder_counts_by_sql_equal_a_count_of_every_photo(tmp_path):
    with Catalog.open(tmp_path / "lib") as cat:
        a, b, empty = (cat.add_folder(tmp_path / name) for name in ("a", "b", "empty"))
        added = cat.apply_scan(
            ScanResult(
                added=[
                    FileInfo(f.id, os.path.join(f.path, f"{i}.jpg"), 10 + i, i, None)
                    for f, n in ((a, 6), (b, 3))
                    for i in range(n)
                ],
                failed=[FailedFile(b.id, os.path.join(b.path, "bad.jpg"), "truncated")],
            )
        ).added_ids
        cat.set_model("m")
        cat.record_embeddings([(i, _unit(i), None) for i in added[:4] + added[6:7]])
        cat.apply_scan(ScanResult(offline_folders=[b.id]))

        slow: dict[int, Counter] = {}
        for photo in cat.photos():
            slow.setdefault(photo.folder_id, Counter())[photo.status] += 1
        assert count_photos(cat) == slow
        assert slow[a.id] == Counter(indexed=4, pending=2) and slow[b.id] == Counter(offline=4)
        assert empty.id not in count_photos(cat)
        by_folder = cat.folder_counts()
        assert by_folder[a.id] == {"indexed": 4, "pending": 2, "failed": 0, "offline": 0}


def test_a_cell_is_painted_from_one_call_with_the_same_values_as_data(qtbot, window, tmp_path):
    _indexed_folder(qtbot, window, tmp_path / "photos", 3)
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    index = window.results.index(1)

    class Delegate(QStyledItemDelegate):
        def option_for(self, index):
            option = QStyleOptionViewItem()
            self.initStyleOption(option, index)  # Qt asks through multiData
            return option

    option = Delegate().option_for(index)
    assert option.text == index.data(Qt.ItemDataRole.DisplayRole)
    assert option.text == os.path.basename(index.data(Qt.ItemDataRole.ToolTipRole))
    assert not option.icon.isNull()
    window.results.multiData(QModelIndex(), None)  # an invalid index is left alone
    # The names live in a C++ string list (no call into Python for the row count); they
    # are shown, not edited: double-click opens the photo.
    assert window.results.rowCount() == 3 and window.results.stringList()[1] == option.text
    assert not window.results.flags(index) & Qt.ItemFlag.ItemIsEditable
    assert window.view.editTriggers() == window.view.EditTrigger.NoEditTriggers


def test_a_refreshed_search_that_finds_the_same_photos_keeps_the_grid(qtbot, window, tmp_path):
    _indexed_folder(qtbot, window, tmp_path / "photos", 4)
    window.search_box.setText("anything")
    with qtbot.waitSignal(window.searchFinished, timeout=10_000):
        window.run_search()
    window.view.setCurrentIndex(window.results.index(2))
    resets = []
    window.results.modelReset.connect(lambda: resets.append(1))
    with qtbot.waitSignal(window.searchFinished, timeout=10_000) as blocker:
        window.run_search()  # what the live refresh does while indexing
    assert blocker.args == [4] and resets == []
    assert window.view.currentIndex().row() == 2  # the user's place is kept


def test_the_gui_thread_never_waits_for_the_catalog(qtbot, window, tmp_path):
    """While another thread holds the catalog (the watcher's writer in a long reconcile),
    what the window does on its own thread still returns: the folders panel, the empty
    state, the watcher's health, adding a folder (its write waits on a pool thread)."""
    _indexed_folder(qtbot, window, tmp_path / "photos", 2)
    qtbot.waitUntil(lambda: [r[1] for r in window.folders_panel.rows()] == ["2"])
    other = tmp_path / "other"
    other.mkdir()
    held, release, timed_out = threading.Event(), threading.Event(), []

    def writer():
        with window.library.catalog._lock:  # as Catalog._write holds it for a transaction
            held.set()
            timed_out.append(not release.wait(20))

    holder = threading.Thread(target=writer)
    holder.start()
    held.wait()
    try:
        window.clear_search()  # the empty state: "Search 2 photos"
        assert "2 photos" in window.empty_label.text()
        window._show_folders()
        window._on_watch_health(window.indexing.status())
        window.add_folder(str(other))
        window.refresh_folders()
    finally:
        release.set()
        holder.join()
    assert timed_out == [False]  # nothing above waited for the lock
    qtbot.waitUntil(lambda: len(window.folders_panel.rows()) == 2, timeout=10_000)


def test_adding_something_that_is_no_folder_is_reported(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QApplication, QMessageBox

    def error_texts():
        return [
            w.text()
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "errorDialog" and w.isVisible()
        ]

    window.add_folder(str(tmp_path / "nowhere"))
    qtbot.waitUntil(lambda: any("nowhere" in t for t in error_texts()), timeout=10_000)
    assert window.folders_panel.rows() == []
    for w in QApplication.topLevelWidgets():
        if isinstance(w, QMessageBox) and w.objectName() == "errorDialog":
            w.close()


def test_the_first_query_costs_are_paid_when_the_window_opens(qtbot, window):
    # The text encoder's first run happens on an I/O thread once the event loop turns.
    qtbot.waitUntil(lambda: window.engine.cache_info().size == 1, timeout=10_000)
