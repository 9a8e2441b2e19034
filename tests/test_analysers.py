"""The analyser interface, proved by a second analyser the indexer knows nothing about.

``MeanColour`` is defined here, as a face or text analyser would be defined elsewhere: it
needs a small picture, keeps its result (the mean RGB, 3 bytes) in its state row, fails on
some photos on purpose, and can be given a new model version. Everything runs on real
files, a real catalog and the real tiny model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter

import numpy as np
import pytest
from images import write_photo_jpeg, write_text_as_jpeg

import photofind.clip.preprocess as preprocess
from photofind.library import Catalog
from photofind.library.analysers import Analyser, Failure
from photofind.library.library import Library


class MeanColour(Analyser):
    """The mean colour of a photo; fails (on purpose) on photos named ``odd...``."""

    name = "mean-colour"
    priority = 50
    picture_side = 8

    def __init__(self, version: int = 1, crash_after: int | None = None):
        self.model_id = f"mean-colour@{version}"
        self.version = version
        self.analysed: list[str] = []  # file names, in the order analysed
        self.pictures: list = []
        self.crash_after = crash_after
        self._lock = threading.Lock()

    def prepare(self, item, picture):
        with self._lock:
            self.pictures.append(picture)
        if "odd" in item.path:
            return Failure(f"{item.path}: odd photos have no mean colour here")
        return np.asarray(picture.image(), dtype=np.float64).reshape(-1, 3).mean(axis=0)

    def analyse(self, items, inputs):
        if self.crash_after is not None and len(self.analysed) >= self.crash_after:
            raise RuntimeError("the analyser's process died")  # a kill, in-process
        self.analysed.extend(item.path.rsplit("/", 1)[-1] for item in items)
        return [np.round(m).astype(np.uint8).tobytes() + bytes([self.version]) for m in inputs]


def photos(folder, names, seed0=0):
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_photo_jpeg(folder / n, width=96, height=72, seed=seed0 + i)
        for i, n in enumerate(names)
    ]


@pytest.fixture
def library(tmp_path):
    with Library.open(tmp_path / "lib") as library:
        yield library


def test_a_second_analyser_keeps_its_own_state_and_failures(library, model, tmp_path):
    paths = photos(tmp_path / "p", ["a.jpg", "b.jpg", "odd.jpg", "c.jpg"])
    write_text_as_jpeg(tmp_path / "p" / "broken.jpg")
    library.add_folder(tmp_path / "p")
    library.scan()
    mean = MeanColour()
    stats = library.index_pending(model, analysers=[mean], batch_size=2)
    assert (stats.indexed, stats.failed) == (3, 2)  # odd.jpg (mean only), broken.jpg (both)
    catalog = library.catalog
    assert catalog.analyser_model("mean-colour") == "mean-colour@1"
    counts = catalog.analysis_counts("mean-colour")
    assert counts == {"done": 3, "failed": 2, "pending": 0}

    a = catalog.photo_by_path(paths[0])
    status, error, data = catalog.analysis(a.id, "mean-colour")
    assert status == "done" and error is None and len(data) == 4
    odd = catalog.photo_by_path(paths[2])
    assert odd.status == "indexed"  # CLIP read it: searchable, only the mean failed
    status, error, _ = catalog.analysis(odd.id, "mean-colour")
    assert status == "failed" and "odd.jpg" in error
    assert catalog.analysis(odd.id, "clip")[0] == "done"
    broken = catalog.photo_by_path(tmp_path / "p" / "broken.jpg")
    assert broken.status == "failed"
    for name in ("clip", "mean-colour"):
        status, error, _ = catalog.analysis(broken.id, name)
        assert status == "failed" and "broken.jpg" in error

    # Nothing left for either: a second run analyses nothing.
    again = MeanColour()
    assert library.index_pending(model, analysers=[again]).indexed == 0
    assert again.analysed == []


def test_each_file_is_decoded_once_for_all_its_analysers(library, model, tmp_path, monkeypatch):
    photos(tmp_path / "p", [f"{i}.jpg" for i in range(6)])
    library.add_folder(tmp_path / "p")
    library.scan()
    decodes: Counter[str] = Counter()
    real = preprocess._decode

    def counting(item, *args):
        decodes[str(item)] += 1
        return real(item, *args)

    monkeypatch.setattr(preprocess, "_decode", counting)
    mean = MeanColour()
    library.index_pending(model, analysers=[mean], batch_size=4)
    assert len(decodes) == 6 and set(decodes.values()) == {1}
    # At the larger of the two sizes asked (CLIP's), which the small analyser also gets.
    clip_side = preprocess.draft_side(model.spec.image_size)
    assert {p.side for p in mean.pictures} == {clip_side}


def test_clip_runs_first_then_what_only_the_others_need(library, model, tmp_path):
    photos(tmp_path / "p", ["old0.jpg", "old1.jpg", "old2.jpg"])
    library.add_folder(tmp_path / "p")
    library.scan()
    library.index_pending(model)  # CLIP only: searchable
    photos(tmp_path / "p", ["new3.jpg", "new4.jpg"], seed0=10)
    library.scan()
    mean = MeanColour()
    library.index_pending(model, analysers=[mean], batch_size=2)
    # New photos (waiting for CLIP) first, although their ids are larger; then the rest.
    assert mean.analysed[:2] == ["new3.jpg", "new4.jpg"]
    assert sorted(mean.analysed[2:]) == ["old0.jpg", "old1.jpg", "old2.jpg"]
    assert library.status()["indexed"] == 5


def test_a_killed_run_resumes_with_only_what_is_missing(library, model, tmp_path):
    photos(tmp_path / "p", [f"{i}.jpg" for i in range(8)])
    library.add_folder(tmp_path / "p")
    library.scan()
    dying = MeanColour(crash_after=4)
    with pytest.raises(RuntimeError, match="died"):
        library.index_pending(model, analysers=[dying], batch_size=2)
    before = library.catalog.analysis_counts("mean-colour")
    assert before["done"] == 4 and before["pending"] == 4
    mean = MeanColour()
    library.index_pending(model, analysers=[mean], batch_size=2)
    assert sorted(mean.analysed) == sorted(set(f"{i}.jpg" for i in range(8)) - set(dying.analysed))
    assert library.catalog.analysis_counts("mean-colour") == {
        "done": 8,
        "failed": 0,
        "pending": 0,
    }
    assert library.status()["indexed"] == 8


def test_a_new_analyser_model_is_collected_beside_the_old_then_swapped(library, model, tmp_path):
    paths = photos(tmp_path / "p", [f"{i}.jpg" for i in range(6)])
    library.add_folder(tmp_path / "p")
    library.scan()
    library.index_pending(model, analysers=[MeanColour(1)])
    catalog = library.catalog
    first = catalog.photo_by_path(paths[0]).id

    v2 = MeanColour(2, crash_after=2)
    with pytest.raises(RuntimeError, match="died"):
        library.index_pending(model, analysers=[v2], batch_size=2)
    # Cut short: version 1 stays in use for every photo, version 2 waits beside it.
    assert catalog.analysis_counts("mean-colour", "mean-colour@2")["done"] == 2
    assert catalog.analyser_model("mean-colour") == "mean-colour@1"
    assert all(catalog.analysis(p.id, "mean-colour")[2][-1] == 1 for p in catalog.photos())

    rest = MeanColour(2)
    library.index_pending(model, analysers=[rest])
    assert sorted(rest.analysed + v2.analysed) == [f"{i}.jpg" for i in range(6)]
    assert catalog.analyser_model("mean-colour") == "mean-colour@2"
    assert catalog.analysis(first, "mean-colour")[2][-1] == 2
    assert catalog.analysis_counts("mean-colour", "mean-colour@1") == {
        "done": 0,
        "failed": 0,
        "pending": 6,
    }  # its rows are gone


def test_a_photo_that_changes_is_analysed_again_by_every_analyser(library, model, tmp_path):
    paths = photos(tmp_path / "p", ["a.jpg", "b.jpg"])
    library.add_folder(tmp_path / "p")
    library.scan()
    library.index_pending(model, analysers=[MeanColour()])
    write_photo_jpeg(paths[1], width=80, height=60, seed=99)
    library.scan()
    mean = MeanColour()
    stats = library.index_pending(model, analysers=[mean])
    assert stats.indexed == 1 and mean.analysed == ["b.jpg"]


def test_two_analysers_may_not_share_a_name(library, model):
    with pytest.raises(ValueError, match="share a name"):
        library.index_pending(model, analysers=[MeanColour(), MeanColour()])


KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[3])
from test_analysers import MeanColour
from photofind.clip import load_model
from photofind.library.library import Library

library = Library.open(sys.argv[1])
library.index_pending(load_model(sys.argv[2], provider="cpu"), analysers=[MeanColour()],
                      batch_size=2)
"""


def _mean_done(lib) -> int:
    """Committed mean colours, read the way a second process would (read-only)."""
    try:
        with Catalog.open(lib, readonly=True) as catalog:
            return catalog.analysis_counts("mean-colour", "mean-colour@1")["done"]
    except Exception:  # noqa: BLE001 - not created yet, or mid-creation
        return 0


def test_a_sigkilled_run_resumes_with_only_what_is_missing(model, random_package, tmp_path):
    count = 60
    photos(tmp_path / "p", [f"{i:02d}.jpg" for i in range(count)])
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(tmp_path / "p")
        library.scan()
    tests = os.path.dirname(__file__)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path / "lib"), str(random_package), tests],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None and _mean_done(tmp_path / "lib") < 6:
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Library.open(tmp_path / "lib") as library:
        done = library.catalog.analysis_counts("mean-colour")["done"]
        assert 6 <= done < count, "the run ended before the kill"
        mean = MeanColour()
        library.index_pending(model, analysers=[mean], batch_size=2)
        assert len(mean.analysed) == count - done
        assert library.catalog.analysis_counts("mean-colour")["done"] == count
        assert library.status()["indexed"] == count


@pytest.mark.parametrize("new", [3, 2], ids=["backlog", "a-few"])
def test_a_backlog_is_made_searchable_first_and_analysed_after(library, model, tmp_path, new):
    from photofind.library.model_session import NEW, ModelSession

    photos(tmp_path / "p", [f"{i}.jpg" for i in range(new)])
    library.add_folder(tmp_path / "p")
    library.scan()
    mean, session = MeanColour(), ModelSession(library, model)
    passes = []
    while (kind := session.next_pass([mean])) is not None:
        assert kind == NEW
        analysers = session.pass_analysers([mean], searchable_first=3)
        session.run_pass(kind, analysers=analysers, batch_size=2)
        counts = library.catalog.analysis_counts("mean-colour")
        passes.append((library.catalog.counts().get("pending", 0), counts.get("done", 0)))
        assert len(passes) < 5
    if new == 3:  # the backlog: every photo searchable, none analysed; then the analyser
        assert passes == [(0, 0), (0, 3)]
    else:
        assert passes == [(0, 2)]
    assert sorted(mean.analysed) == [f"{i}.jpg" for i in range(new)]
