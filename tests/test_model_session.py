"""The model session: which model a library uses, which is staged, which pass runs next.

Real folders, SQLite, hnswlib and ONNX sessions, and no torch: model A is the random package
written by tests/onnx_package.py, model B the bundled ``tiny-synthetic``.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from images import write_photo_jpeg
from onnx_package import write_random_package

from photofind.cli import main
from photofind.clip import available_models, load_model
from photofind.library.folder_watches import FolderWatches
from photofind.library.library import Library
from photofind.library.model_id import ModelId
from photofind.library.model_session import NEW, STAGED, ModelSession
from photofind.library.watcher import Watcher
from photofind.models.store import ModelStore
from photofind.paths import bundled_models_dir, models_dir
from photofind.search import SearchEngine

TINY = bundled_models_dir() / "tiny-synthetic"


@pytest.fixture(scope="module")
def model_a(random_package):
    return load_model(random_package, provider="cpu")


@pytest.fixture(scope="module")
def model_b():
    return load_model(TINY, provider="cpu")


def photos(folder, n, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_photo_jpeg(folder / f"p{i:03d}.jpg", width=64, height=48, seed=i)
        for i in range(start, start + n)
    ]


def indexed_with_a(tmp_path, model_a, n=6, *, install=True) -> Library:
    """A library of ``n`` photos indexed with A; A installed beside it unless not asked."""
    if install:
        shutil.copytree(model_a.info.path, models_dir(tmp_path / "lib") / model_a.info.name)
    photos(tmp_path / "photos", n)
    library = Library.open(tmp_path / "lib")
    library.add_folder(tmp_path / "photos")
    library.scan()
    library.index_pending(model_a, batch_size=4)
    return library


def every_path(library, model) -> list[str]:
    engine = SearchEngine(library, model)
    return sorted(r.path for r in engine.search("a photo", k=1000, cutoff=False))


def test_new_photos_first_then_the_re_index_then_what_the_swap_left(model_a, model_b, tmp_path):
    with indexed_with_a(tmp_path, model_a) as library:
        session = ModelSession.open(library, model_b, provider="cpu")
        # The held model's package is here: it stays active, B is staged.
        assert session.active.info.name == model_a.info.name and session.staged is model_b
        assert session.target is model_b and session.todo() == 6
        added = photos(tmp_path / "photos", 2, start=20)
        library.scan()
        assert session.next_pass() == NEW
        stats = session.run_pass(NEW, batch_size=4)
        assert stats.indexed == 2
        # The new photos answer at once, with the held model's vectors.
        assert set(map(str, added)) <= set(every_path(library, session.active))
        assert session.next_pass() == STAGED
        stats = session.run_pass(STAGED, batch_size=4)
        assert stats.swapped and stats.indexed == 8
        assert session.active is model_b and session.staged is None
        assert session.next_pass() is None and session.target is None
        assert library.catalog.model_id == str(ModelId.of(model_b))
        assert len(every_path(library, model_b)) == 8


def test_a_held_model_not_on_this_machine_makes_the_chosen_one_do_both(model_a, model_b, tmp_path):
    with indexed_with_a(tmp_path, model_a, install=False) as library:
        session = ModelSession.open(library, model_b, provider="cpu")
        assert session.active is model_b and session.staged is None
        assert session.target is model_b  # the library still holds A's vectors
        assert session.next_pass() == NEW
        stats = session.run_pass(NEW, batch_size=4)
        assert stats.swapped and session.next_pass() is None
        assert library.catalog.model_id == str(ModelId.of(model_b))


def test_choosing_a_package_needs_no_model_and_switching_back_cancels(model_a, model_b, tmp_path):
    with indexed_with_a(tmp_path, model_a) as library:
        session = ModelSession(library)
        change = session.choose_package(TINY)
        assert change.staged and change.todo == 6 and change.cancelled is None
        assert change.held == str(ModelId.of(model_a))
        assert library.catalog.staged_model_id == str(ModelId.of(model_b))
        back = session.choose_package(model_a.info.path)
        assert not back.staged and back.cancelled == str(ModelId.of(model_b))
        assert library.catalog.staged_model_id is None


def test_choose_keeps_the_held_model_searching(model_a, model_b, tmp_path):
    """What the window asks when the user picks another model."""
    with indexed_with_a(tmp_path, model_a) as library:
        session = ModelSession(library, model_a)
        change = session.choose(model_b)
        assert change.staged and session.active is model_a and session.staged is model_b
        change = session.choose(model_a)
        assert not change.staged and change.cancelled == str(ModelId.of(model_b))
        assert session.active is model_a and session.staged is None


def test_search_finds_the_held_model_by_its_digest_not_its_name(model_a, tmp_path, capsys):
    """A namesake with other weights makes other vectors: search must not take it."""
    library = indexed_with_a(tmp_path, model_a)
    library.close()
    installed = models_dir(tmp_path / "lib") / model_a.info.name
    shutil.rmtree(installed)
    write_random_package(installed, seed=1)
    manifest = json.loads((installed / "model.json").read_text())
    manifest["name"] = model_a.info.name  # same name, other weights
    (installed / "model.json").write_text(json.dumps(manifest))
    code = main(["--library", str(tmp_path / "lib"), "--provider", "cpu", "search", "a photo"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"indexed with model {model_a.info.name!r}, which is not installed here" in err


def test_a_package_being_removed_is_not_a_package(random_package, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(random_package, models_dir(lib) / ".trash-gone-1-2")
    shutil.copytree(random_package, models_dir(lib) / "kept")
    assert "kept" in available_models(lib) and ".trash-gone-1-2" not in available_models(lib)
    names = [m.name for m in ModelStore(lib).list()]
    assert "kept" in names and ".trash-gone-1-2" not in names


def test_watcher_status_is_a_pure_read(model_a, tmp_path):
    with indexed_with_a(tmp_path, model_a) as library:
        watcher = Watcher(library, model_a)
        before = dict(vars(watcher.counters))
        first, second = watcher.status(), watcher.status()
        assert first["counters"] == second["counters"] and first["counters"]["events"] == 0
        assert vars(watcher.counters) == before


def test_watching_sets_watchdogs_log_levels_back(tmp_path):
    names = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
    before = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)  # a user's quieter log
        one = FolderWatches(lambda _: None, lambda _: None, force_polling=True)
        two = FolderWatches(lambda _: None, lambda _: None, force_polling=True)
        one.start()
        two.start()
        assert all(logging.getLogger(n).level == logging.WARNING for n in names)
        one.stop()  # the other still listens for overflows
        assert all(logging.getLogger(n).level == logging.WARNING for n in names)
        two.stop()
        assert all(logging.getLogger(n).level == logging.ERROR for n in names)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
