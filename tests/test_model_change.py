"""A staged model change on real folders, SQLite, hnswlib files and two real ONNX models.

Model A is the tiny-test package with random weights, model B the shipped ``tiny-synthetic``
(they have different dimensions, so a mix of their vectors could not even be queried). While
the library re-indexes for B, searches keep using A's vectors; the swap makes B active.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from images import write_photo_jpeg

from photofind.cli import main
from photofind.clip import load_model
from photofind.library import Catalog
from photofind.library.indexer import IndexControl, Indexer
from photofind.library.library import STAGED_INDEX_DIR, Library, ReindexProgress, model_id
from photofind.library.vector_index import INDEX_NAME, SIDECAR_NAME
from photofind.library.watcher import Watcher, WatchOptions
from photofind.search import SearchEngine, SearchError


@pytest.fixture(scope="module")
def model_a(random_package):
    return load_model(random_package, provider="cpu")


@pytest.fixture(scope="module")
def model_b():
    return load_model("tiny-synthetic", provider="cpu")


def make_photos(folder, n, start=0, size=(120, 90)):
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_photo_jpeg(folder / f"photo {i:03d}.jpg", width=size[0], height=size[1], seed=i)
        for i in range(start, start + n)
    ]


def indexed_with_a(tmp_path, model_a, n=16):
    photos = make_photos(tmp_path / "photos", n)
    library = Library.open(tmp_path / "lib")
    library.add_folder(tmp_path / "photos")
    library.scan()
    library.index_pending(model_a, batch_size=8)
    return library, photos


def everything(engine) -> list[str]:
    """Every photo a text search returns (no cut-off, more than the library holds)."""
    return sorted(r.path for r in engine.search("a photo", k=1000, cutoff=False))


def cancel_after(n: int):
    """An IndexControl and a progress callback that cancels once ``n`` photos are done
    in this run (the batches already encoded are still committed)."""
    control = IndexControl()

    def progress(p):
        if p.done - getattr(progress, "base", p.done) >= n:
            control.cancel()
        progress.base = getattr(progress, "base", p.done)

    return control, progress


def stage_part(library, model):
    """Begin a change to ``model`` and stop its re-index after 4 photos (batches of 4)."""
    library.begin_model_change(model)
    control, progress = cancel_after(4)
    return library.reindex_staged(model, control=control, progress=progress, batch_size=4)


def consistent(library: Library, model) -> None:
    """The library is complete and agrees with itself: catalog vectors == index vectors,
    every photo once, each the vector ``model`` gives its file, no staged leftovers."""
    catalog = library.catalog
    assert catalog.model_id == model_id(model)
    assert catalog.staged_model_id is None
    assert catalog.staged_progress() == (0, 0)
    assert not (library.root / STAGED_INDEX_DIR).exists()
    photos = list(catalog.photos())
    assert len({p.path for p in photos}) == len(photos)
    assert {p.status for p in photos} <= {"indexed"}
    ids = catalog.embedding_ids()
    assert sorted(library.index.ids().tolist()) == ids.tolist() == sorted(p.id for p in photos)
    assert library.index.model_id == model_id(model) and library.index.dim == model.info.dim
    for p in photos:
        stored = catalog.embedding(p.id)
        np.testing.assert_allclose(library.index.get_vectors([p.id])[0], stored, atol=1e-6)
        np.testing.assert_allclose(stored, model.encode_images([p.path])[0], atol=1e-4)


def test_search_keeps_the_old_model_until_the_swap(model_a, model_b, tmp_path):
    library, photos = indexed_with_a(tmp_path, model_a, 24)
    with library:
        old, new = SearchEngine(library, model_a), SearchEngine(library, model_b)
        every = sorted(str(p) for p in photos)
        assert library.begin_model_change(model_b) is True
        assert library.catalog.model_id == model_id(model_a)
        assert library.status()["staged_model"] == model_id(model_b)
        assert everything(old) == every

        control, progress = cancel_after(4)
        seen: list[ReindexProgress] = []
        stats = library.reindex_staged(
            model_b, control=control, progress=lambda p: (seen.append(p), progress(p)), batch_size=4
        )
        assert stats.cancelled and not stats.swapped
        assert all(isinstance(p, ReindexProgress) and p.model == "tiny-synthetic" for p in seen)
        done, total = library.catalog.staged_progress()
        assert 4 <= done < total == 24
        # Mid-change: the old model still finds every photo, the new one is refused.
        assert everything(old) == every
        with pytest.raises(SearchError, match="until the re-index"):
            new.search("a photo")

        stats = library.reindex_staged(model_b, batch_size=4)
        assert stats.swapped and stats.indexed == 24 - done
        with pytest.raises(SearchError, match="holds vectors of model"):
            old.search("a photo")
        assert everything(SearchEngine(library, model_b)) == every
        consistent(library, model_b)
    # The swapped index was saved where the next open finds it, without a rebuild.
    with Library.open(tmp_path / "lib") as library:
        sidecar = json.loads((tmp_path / "lib" / SIDECAR_NAME).read_text())
        assert sidecar["model_id"] == model_id(model_b)
        assert sidecar["generation"] == library.catalog.generation
        consistent(library, model_b)


def test_photos_added_changed_and_removed_during_the_change(model_a, model_b, tmp_path):
    library, photos = indexed_with_a(tmp_path, model_a, 30)
    with library:
        old = SearchEngine(library, model_a)
        stage_part(library, model_b)
        staged = library.catalog.staged_progress()[0]
        assert 4 <= staged <= 16  # the batches in flight are committed

        # One photo that has its new vector and one that does not go away; one that has it
        # changes content; two new ones arrive.
        missing = sorted(p.path for p in library.catalog.staged_pending(limit=100))
        have = sorted(set(map(str, photos)) - set(missing))
        gone, changed = [have[0], missing[0]], have[1]
        for path in gone:
            os.remove(path)
        write_photo_jpeg(changed, width=120, height=90, seed=101)
        added = make_photos(tmp_path / "photos", 2, start=50)
        library.scan()
        library.index_pending(model_a, batch_size=4)  # what the watcher does: active first

        # At once: the new photos are searchable with the old model, the removed ones gone.
        expected = sorted({*map(str, photos), *map(str, added)} - set(gone))
        assert everything(old) == expected
        for path in added:
            assert old.similar(str(path), k=1)[0].path == str(path)
        assert library.catalog.staged_progress() == (staged - 2, 30)

        stats = library.reindex_staged(model_b, batch_size=4)
        assert stats.swapped
        new = SearchEngine(library, model_b)
        assert everything(new) == expected
        for path in [*added, changed]:
            assert new.similar(str(path), k=1)[0].path == str(path)
        consistent(library, model_b)


def test_cancelled_then_resumed_after_a_restart(model_a, model_b, tmp_path):
    library, photos = indexed_with_a(tmp_path, model_a, 20)
    with library:
        stats = stage_part(library, model_b)
        assert stats.cancelled
        done, _ = library.catalog.staged_progress()
    # A new process: the staged change is still there, and its vectors are kept.
    with Library.open(tmp_path / "lib") as library:
        assert library.status()["staged_done"] == done
        assert everything(SearchEngine(library, model_a)) == sorted(map(str, photos))
        stats = library.reindex_staged(model_b, batch_size=4)
        assert stats.swapped and stats.indexed == 20 - done
        consistent(library, model_b)


def test_switching_back_to_the_active_model_cancels_the_change(model_a, model_b, tmp_path):
    library, photos = indexed_with_a(tmp_path, model_a, 12)
    with library:
        stage_part(library, model_b)
        assert library.use_model(model_a) is False
        assert library.staged_model_id is None
        assert library.catalog.staged_progress() == (0, 0)
        assert everything(SearchEngine(library, model_a)) == sorted(map(str, photos))
        consistent(library, model_a)


def test_an_empty_library_takes_a_model_at_once(model_a, model_b, tmp_path):
    with Library.open(tmp_path / "lib") as library:
        assert library.use_model(model_a) is True
        assert library.use_model(model_b) is True  # nothing indexed: nothing to stage
        assert library.staged_model_id is None
        assert library.catalog.model_id == model_id(model_b)


def test_index_pending_with_another_model_re_indexes_then_swaps(model_a, model_b, tmp_path):
    library, photos = indexed_with_a(tmp_path, model_a, 10)
    with library:
        make_photos(tmp_path / "photos", 2, start=30)
        library.scan()
        stats = library.index_pending(model_b, batch_size=4)
        assert stats.swapped and stats.indexed == 12
        consistent(library, model_b)


def test_the_watcher_indexes_new_photos_first_then_re_indexes_and_swaps(model_a, model_b, tmp_path):
    """What the GUI and `photofind watch` run: Watcher(active, staged_model=new)."""
    library, photos = indexed_with_a(tmp_path, model_a, 12)
    with library:
        library.begin_model_change(model_b)
        added = make_photos(tmp_path / "photos", 2, start=40)  # arrive while it is staged
        for path in added:  # written a while ago: the first reconcile takes them, unsettled
            past = time.time() - 60
            os.utime(path, (past, past))
        messages: list[str] = []
        swapped = threading.Event()

        def on_batch(report) -> None:
            if library.catalog.model_id == model_id(model_b):
                swapped.set()

        options = WatchOptions(quiet_s=0.1, max_delay_s=1.0, settle_s=0.2, health_s=0.2)
        watcher = Watcher(
            library, model_a, options, say=messages.append, on_batch=on_batch, staged_model=model_b
        )
        watcher.start()
        try:
            assert swapped.wait(60), messages
        finally:
            watcher.stop()
        assert watcher.error is None
        assert watcher.model is model_b and watcher.staged_model is None
        new_first = next(i for i, m in enumerate(messages) if m.startswith("indexed 2 photo"))
        swap = next(i for i, m in enumerate(messages) if m.startswith("re-indexed for model"))
        assert new_first < swap
        assert everything(SearchEngine(library, model_b)) == sorted(map(str, [*photos, *added]))
        consistent(library, model_b)


def _encoded_and_swapped_in_catalog(root, model_a, model_b):
    """A library re-indexed for B whose catalog swapped, as if the process died right
    after the swap transaction; returns the staged index (not yet saved anywhere)."""
    library, _ = indexed_with_a(root, model_a, 10)
    mid = model_id(model_b)
    library.begin_model_change(model_b)
    staged = library._staged_index_for(model_b, mid)
    Indexer(library.catalog, staged, model_b, staged_model_id=mid, batch_size=4).run()
    staged.generation = library.catalog.swap_staged(mid)
    staged.sync(library.catalog)
    return library, staged


def test_a_crash_between_the_catalog_swap_and_the_file_move(model_a, model_b, tmp_path):
    library, _ = _encoded_and_swapped_in_catalog(tmp_path / "one", model_a, model_b)
    library.close()  # the catalog says B, the index files still hold A: rebuilt on open
    assert json.loads((library.root / SIDECAR_NAME).read_text())["model_id"] == model_id(model_a)
    with Library.open(library.root) as reopened:
        consistent(reopened, model_b)


def test_a_crash_in_the_middle_of_the_file_move(model_a, model_b, tmp_path):
    library, staged = _encoded_and_swapped_in_catalog(tmp_path / "two", model_a, model_b)
    folder = library.root / STAGED_INDEX_DIR
    folder.mkdir()
    staged.save(folder)
    os.replace(folder / INDEX_NAME, library.root / INDEX_NAME)  # ... and the sidecar never
    library.close()
    with Library.open(library.root) as reopened:
        consistent(reopened, model_b)
        # The move was finished: the staged sidecar describes the index now in place.
        assert reopened.index.generation == reopened.catalog.generation


def test_leftovers_of_a_swap_that_never_happened_are_dropped(model_a, model_b, tmp_path):
    library, photos = indexed_with_a(tmp_path, model_a, 6)
    with library:
        library.begin_model_change(model_b)
        (library.root / STAGED_INDEX_DIR).mkdir()
        (library.root / STAGED_INDEX_DIR / SIDECAR_NAME).write_text("{}")
    with Library.open(tmp_path / "lib") as library:
        assert not (library.root / STAGED_INDEX_DIR).exists()
        assert library.staged_model_id == model_id(model_b)
        assert everything(SearchEngine(library, model_a)) == sorted(map(str, photos))


def test_cli_models_use_begins_the_change_and_index_finishes_it(
    model_a, random_package, tmp_path, capsys
):
    make_photos(tmp_path / "photos", 6)
    lib = str(tmp_path / "lib")
    base = ["--library", lib, "--provider", "cpu"]
    assert (
        main(
            [
                *base,
                "--model",
                str(random_package),
                "index",
                "--no-progress",
                str(tmp_path / "photos"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main([*base, "models", "use", "tiny-synthetic"]) == 0
    out = capsys.readouterr().out
    assert "re-indexes 6 photos" in out and "search uses tiny-test-random-seed0 until done" in out
    assert main([*base, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["model"] == model_id(model_a)
    assert status["staged_model"].startswith("tiny-synthetic@")
    assert (status["staged_done"], status["staged_total"]) == (0, 6)
    assert main([*base, "status"]) == 0
    assert "re-indexing for model tiny-synthetic: 0 / 6 photos" in capsys.readouterr().out

    assert main([*base, "index", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (
        "re-indexing 6 photos for model tiny-synthetic; search uses tiny-test-random-seed0" in err
    )
    assert "model tiny-synthetic is now the library's model" in err
    assert main([*base, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["model"].startswith("tiny-synthetic@") and "staged_model" not in status
    assert status["indexed"] == status["vectors_in_index"] == 6


# -- crashes: a real process killed at random moments ---------------------------------------


def _index_command(lib, photos, model):
    return [
        sys.executable, "-m", "photofind", "--library", str(lib), "--model", str(model),
        "--provider", "cpu", "index", "--no-progress", "--batch-size", "4", str(photos),
    ]  # fmt: skip


def _staged_done(lib) -> int:
    """Staged vectors committed, read the way a second process would (read-only)."""
    try:
        with Catalog.open(lib, readonly=True) as catalog:
            return catalog.staged_progress()[0]
    except Exception:  # noqa: BLE001 - not there yet, or mid-creation
        return 0


@pytest.mark.slow
def test_sigkill_during_the_change_resumes_and_ends_consistent(random_package, model_b, tmp_path):
    """An index process re-indexing for model B is killed 10 times: at random moments after
    start (start-up, loading, the first batches) and at random staged counts; the next run
    finishes, and the library ends whole on model B. (The crash windows around the swap
    itself are the deterministic tests above.)"""
    count = 400
    make_photos(tmp_path / "photos", count, size=(320, 240))
    lib = tmp_path / "lib"
    done = subprocess.run(
        _index_command(lib, tmp_path / "photos", random_package), capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rng = random.Random(3)
    cmd = _index_command(lib, tmp_path / "photos", "tiny-synthetic")
    for i in range(10):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 3 == 0:
            # A kill by time, but never past the end (a fast run could finish the change).
            deadline = time.monotonic() + rng.uniform(0.05, 1.0)
            while (
                proc.poll() is None
                and time.monotonic() < deadline
                and _staged_done(lib) < count - 40
            ):
                pass
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            # Never past the end, so that the final run still has a change to finish.
            target = min(_staged_done(lib) + rng.randint(1, 60), count - 40)
            while proc.poll() is None and _staged_done(lib) < target:
                pass
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    with Catalog.open(lib, readonly=True) as catalog:
        assert catalog.staged_model_id is not None  # the kills did land during the change
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "search uses tiny-test-random-seed0 until done" in done.stderr
    with Library.open(lib) as library:
        consistent(library, model_b)
        assert library.status()["indexed"] == count


# -- the app ---------------------------------------------------------------------------------


def test_the_app_re_indexes_in_the_background_and_swaps(qtbot, model_a, model_b, tmp_path):
    """While the watcher re-indexes for model B (held at a pause), the window's search still
    answers with model A; at the swap it loads B and runs the query on screen again."""
    pytest.importorskip("PySide6.QtWidgets")
    from photofind.gui import create_window
    from photofind.library.watcher import WatchOptions

    make_photos(tmp_path / "photos", 40)
    fast = WatchOptions(quiet_s=0.1, max_delay_s=1.0, settle_s=0.2, health_s=0.2)
    win = create_window(tmp_path / "lib", model_a, watch_options=fast)
    win.relevance_cutoff = False  # random weights: no score means anything
    qtbot.addWidget(win)
    try:
        with qtbot.waitSignal(win.indexing.finished, timeout=60_000):
            win.add_folder(str(tmp_path / "photos"))
        win.search_box.setText("a photo")

        win.library.pause_indexing()  # the re-index waits at its first batch
        with qtbot.waitSignal(win.modelSet, timeout=30_000):  # the change begins off the GUI
            win.set_model(model_b)
        assert win.model is model_a and win.staged_model is model_b
        assert "re-indexing for tiny-synthetic" in win.model_label.text()
        assert win.library.staged_model_id == model_id(model_b)
        with qtbot.waitSignal(win.searchFinished, timeout=10_000) as found:
            win.run_search()
        assert found.args == [40]  # the old model's vectors still answer

        labels: list[str] = []
        win.indexing.progress.connect(lambda p: labels.append(win.index_label.text()))
        answers: list[tuple] = []  # (results, the model that answered), searches run meanwhile
        win.searchFinished.connect(lambda n: answers.append((n, win.engine.model)))
        with qtbot.waitSignal(win.indexing.modelSwapped, timeout=60_000):
            win.indexing.resume()
        assert win.model is model_b and win.staged_model is None
        # The query on screen runs again with the new model, and finds every photo.
        qtbot.waitUntil(lambda: (40, model_b) in answers, timeout=10_000)
        assert all(n == 40 for n, _ in answers)
        assert any(t.startswith("Re-indexing for model tiny-synthetic: ") for t in labels)
        assert "/40" in labels[-1]
        consistent(win.library, model_b)
    finally:
        win.shutdown()
        win.close()
