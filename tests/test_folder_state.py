"""The folders panel says what really happens to each folder: scanning, indexing with the
photos left, paused, then watching — never "0 · watching" while it indexes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

pytest.importorskip("PySide6.QtWidgets")

from images import write_photo_jpeg  # noqa: E402

from photofind.gui.folders_panel import FolderRow, folder_rows, state_text  # noqa: E402
from photofind.library.indexer import Progress  # noqa: E402
from photofind.library.library import ReindexProgress  # noqa: E402


@dataclass(frozen=True)
class Folder:
    id: int
    path: str


def _watched(*paths, mode="inotify"):
    return {"folders": [{"path": p, "mode": mode} for p in paths]}


def test_a_running_pass_decides_which_folders_index_and_how_many_are_left(tmp_path):
    a, b = Folder(1, str(tmp_path)), Folder(2, str(tmp_path))
    status = _watched(a.path)
    # Just added, not counted yet: the pass is indexing its photos, the pass says how many.
    [row] = folder_rows([a], {}, status, Progress(30, 100, 0, 10.0, 7.0))
    assert row == FolderRow(a.path, 0, 70, "indexing")
    assert state_text(row) == "indexing (70 left)"
    # Two folders with photos to do: each its own (counted) number.
    counts = {1: Counter(indexed=5, pending=3), 2: Counter(pending=4)}
    rows = folder_rows([a, b], counts, status, Progress(1, 7, 0, 1.0, 6.0))
    assert [(r.photos, r.pending, r.state) for r in rows] == [
        (8, 3, "indexing"),
        (4, 4, "indexing"),
    ]
    paused = folder_rows([a], {1: Counter(pending=9)}, status, Progress(0, 9, 0, 0, None, True))
    assert state_text(paused[0]) == "paused (9 left)"
    # The pass is done: what the (older) counts still call pending was done by it.
    done = folder_rows([a], {1: Counter(pending=9)}, status, Progress(9, 9, 0, 9.0, 0.0))
    assert done[0].state == "watching" and done[0].pending == 0
    # A model change re-indexes every folder, indexed ones too.
    counts = {1: Counter(indexed=40), 2: Counter(indexed=2)}
    change = ReindexProgress(10, 42, 0, 5.0, 6.4, model="ViT-B-32")
    assert [r.state for r in folder_rows([a, b], counts, status, change)] == ["re-indexing"] * 2
    [one] = folder_rows([a], {1: Counter(indexed=42)}, status, change)
    assert state_text(one) == "re-indexing (32 left)"


def test_states_without_a_pass(tmp_path):
    here, gone = Folder(1, str(tmp_path)), Folder(2, str(tmp_path / "gone"))
    assert folder_rows([here], {}, {"folders": []})[0].state == "scanning"  # not seen yet
    assert folder_rows([here], {}, None)[0].state == "not watched"  # no watcher at all
    assert folder_rows([here], {}, _watched(here.path, mode="polling"))[0].state == "polling"
    assert folder_rows([gone], {}, {"folders": []})[0].state == "offline"
    assert folder_rows([here], {1: Counter(indexed=2)}, _watched(here.path))[0].state == "watching"


def test_the_panel_shows_indexing_with_counts_while_it_indexes_then_watching(
    qtbot, window, tmp_path
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        write_photo_jpeg(folder / f"p{i}.jpg", width=160, height=120, seed=i)
    shown: list[tuple[str, str]] = []
    window.foldersShown.connect(
        lambda: shown.extend((r[1], r[2]) for r in window.folders_panel.rows())
    )
    # Paused first, so the pass waits where the panel can be read: not a race with it.
    window.toggle_pause()
    window.add_folder(str(folder))
    qtbot.waitUntil(
        lambda: window.folders_panel.rows() == [(str(folder), "6", "paused (6 left)")],
        timeout=30_000,
    )
    with qtbot.waitSignal(window.indexing.finished, timeout=60_000):
        window.toggle_pause()
    qtbot.waitUntil(
        lambda: window.folders_panel.rows() == [(str(folder), "6", "watching")], timeout=10_000
    )
    before = shown[: shown.index(("6", "watching"))]
    assert ("6", "paused (6 left)") in before
    # Until it was indexed, the folder never claimed to be only watched (or not watched).
    assert {state.split(" (")[0] for _, state in before} <= {"scanning", "paused", "indexing"}
