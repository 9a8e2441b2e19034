"""The People panel, the face pass in the app's watcher, the preview's face boxes and the
face-recognition switch, with real widgets, a real catalog and the real faces of
../shared/data/faces (dlib's models, the bundled tiny CLIP).

The train photos' library (3 people of 2 faces, Alex's one face on nobody) is built once per
module by ``photofind faces index``; each test opens a copy in a window.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import faces_data as data
import pytest

pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel) is not installed")
if not data.FACES.is_dir():
    pytest.skip(f"{data.FACES}: the shared face photos are not there", allow_module_level=True)

from gui_support import FAST  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from photofind import settings  # noqa: E402
from photofind.cli import main  # noqa: E402
from photofind.gui import create_window  # noqa: E402
from photofind.gui.people_panel import ID_ROLE  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "resources" / "models" / "tiny-synthetic"
KNN = data.FACES / "knn_examples"
BIDEN = ["biden/biden.jpg", "biden/biden2.jpg"]
OBAMA = ["obama/obama.jpg", "obama/obama2.jpg"]
ROSE = ["rose_leslie/img1.jpg", "rose_leslie/img2.jpg"]
WAIT = 30_000


@pytest.fixture(scope="module")
def train_lib(tmp_path_factory):
    lib = tmp_path_factory.mktemp("gui-people") / "lib"
    argv = ["--library", str(lib), "--model", str(TINY), "--provider", "cpu"]
    assert main([*argv, "faces", "index", str(KNN / "train"), "--min-faces", "2"]) == 0
    return lib


@pytest.fixture
def win(qtbot, train_lib, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(train_lib, lib)
    threads_before = threading.active_count()
    w = create_window(lib, TINY, provider="cpu", watch_options=FAST)
    w.relevance_cutoff = False
    qtbot.addWidget(w)
    w.show()
    w.people.dock.raise_()  # tabbed behind the folders: laid out once in front
    _wait_people(qtbot, w, lambda rows: len(rows) == 3)
    yield w
    w.shutdown()
    w.close()
    qtbot.waitUntil(lambda: threading.active_count() <= threads_before + 1, timeout=WAIT)


def _rows(w) -> list[tuple[str, int]]:
    """(label's first line, faces) per person, in the panel's order."""
    out = []
    for i in range(w.people.panel.list.count()):
        first, count = w.people.panel.list.item(i).text().split("\n")
        out.append((first, int(count.split()[0])))
    return out


def _wait_people(qtbot, w, ok) -> None:
    """Until the panel's rows satisfy ``ok`` (a refresh, a correction, a pass may bring it)."""
    qtbot.waitUntil(lambda: ok(_rows(w)), timeout=WAIT)


def _person_with(w, relative: str) -> int:
    catalog = w.library.catalog
    photo = catalog.photo_by_path(str(KNN / "train" / relative))
    (face,) = catalog.faces(photo.id)
    return face.person_id


def _photos(w, person_id: int) -> list[str]:
    train = str(KNN / "train") + "/"
    return sorted(p.path.replace(train, "") for p in w.library.catalog.photos_of(person_id))


def _correct(qtbot, w, act) -> str:
    with qtbot.waitSignal(w.people.corrected, timeout=WAIT) as signal:
        act()
    assert not signal.args[0].startswith("failed"), signal.args[0]
    return signal.args[0]


def _choose(qtbot, w, person_id: int) -> None:
    """Click the person; their faces come below."""
    panel = w.people.panel
    with qtbot.waitSignal(w.people.facesShown, timeout=WAIT):
        panel.select_person(person_id)
    assert panel.current_person() == person_id


def test_one_face_per_person_with_counts_most_faces_first(qtbot, win):
    panel = win.people.panel
    assert _rows(win) == [("Unnamed", 2)] * 3
    for i in range(panel.list.count()):
        icon = panel.list.item(i).icon()
        assert not icon.isNull() and icon.pixmap(64, 64).width() > 0
    # One more face for Biden (a user's move): he comes first.
    catalog = win.library.catalog
    biden = _person_with(win, BIDEN[0])
    alex = catalog.photo_by_path(str(KNN / "train" / "alex_lacamoire" / "img1.jpg"))
    (alone,) = catalog.faces(alex.id)
    catalog.move_face(alone.id, biden)
    with qtbot.waitSignal(win.people.shown, timeout=WAIT):
        win.people.refresh()
    assert _rows(win) == [("Unnamed", 3), ("Unnamed", 2), ("Unnamed", 2)]
    assert panel.person_ids()[0] == biden


def test_naming_a_person_shows_the_name_offers_it_as_a_filter_and_finds_new_faces(qtbot, win):
    obama = _person_with(win, OBAMA[0])
    _choose(qtbot, win, obama)
    panel = win.people.panel
    assert len(panel.face_ids()) == 2
    panel.name_edit.setText("Barack Obama")
    _correct(qtbot, win, lambda: qtbot.keyClick(panel.name_edit, Qt.Key.Key_Return))
    _wait_people(qtbot, win, lambda rows: ("Barack Obama", 2) in rows)
    assert win.library.catalog.person(obama).name == "Barack Obama"
    bar = win.filter_bar.person
    assert [bar.itemText(i) for i in range(bar.count())] == ["Anyone", "Barack Obama"]
    # A new photo of him, found by the app's watcher: the k-NN puts it on the named person.
    extra = Path(win.library.root).parent / "extra"
    extra.mkdir()
    shutil.copy(KNN / "test" / "obama1.jpg", extra / "new.jpg")
    win.add_folder(str(extra))
    win.start_indexing()
    _wait_people(qtbot, win, lambda rows: ("Barack Obama", 3) in rows)


def test_clicking_a_person_shows_their_photos_in_the_grid(qtbot, win):
    rose = _person_with(win, ROSE[0])
    panel = win.people.panel
    _choose(qtbot, win, rose)
    with qtbot.waitSignal(win.searchFinished, timeout=WAIT):
        qtbot.mouseClick(panel.photos_button, Qt.MouseButton.LeftButton)
    shown = sorted(r.path for r in win.results.rows())
    assert shown == [str(KNN / "train" / r) for r in sorted(ROSE)]
    assert win.search_box.text() == f"person:{rose}"


def test_the_person_filter_keeps_their_photos_ranked_by_the_text(qtbot, win):
    biden = _person_with(win, BIDEN[0])
    _correct(qtbot, win, lambda: win.people.name(biden, "Joe"))
    bar = win.filter_bar.person
    qtbot.waitUntil(lambda: bar.findData("Joe") > 0, timeout=WAIT)
    win.search_box.setText("a photo of a man")
    with qtbot.waitSignal(win.searchFinished, timeout=WAIT):
        win.run_search()
    assert len(win.results.rows()) == 7  # every train photo, unfiltered
    with qtbot.waitSignal(win.searchFinished, timeout=WAIT):
        bar.setCurrentIndex(bar.findData("Joe"))
    rows = win.results.rows()
    assert sorted(r.path for r in rows) == [str(KNN / "train" / r) for r in sorted(BIDEN)]
    assert rows[0].score >= rows[1].score
    assert "of Joe" in win.filter_bar.describe()


def test_merge_then_split_then_not_this_person(qtbot, win):
    panel = win.people.panel
    biden, rose = _person_with(win, BIDEN[0]), _person_with(win, ROSE[0])
    panel.select_person(biden)
    panel.select_person(rose, add=True)
    assert panel.merge_button.isEnabled()
    _correct(qtbot, win, lambda: qtbot.mouseClick(panel.merge_button, Qt.MouseButton.LeftButton))
    _wait_people(qtbot, win, lambda rows: rows == [("Unnamed", 4), ("Unnamed", 2)])
    keep = panel.person_ids()[0]
    assert _photos(win, keep) == sorted(BIDEN + ROSE)

    # Split Rose's two faces off to a new person.
    _choose(qtbot, win, keep)
    roses = [
        i for i in range(panel.faces.count()) if "rose_leslie" in panel.faces.item(i).toolTip()
    ]
    assert len(roses) == 2 and panel.faces.count() == 4
    for i in roses:
        panel.faces.item(i).setSelected(True)
    _correct(qtbot, win, lambda: qtbot.mouseClick(panel.split_button, Qt.MouseButton.LeftButton))
    _wait_people(qtbot, win, lambda rows: rows == [("Unnamed", 2)] * 3)
    assert _photos(win, keep) == sorted(BIDEN)
    new = next(p for p in panel.person_ids() if _photos(win, p) == sorted(ROSE))

    # "Not this person" for one of Rose's faces: it leaves her, and stays off her after
    # the grouping that every correction runs (it was said not to be her).
    _choose(qtbot, win, new)
    panel.faces.item(0).setSelected(True)
    face = panel.faces.item(0).data(ID_ROLE)
    _correct(qtbot, win, lambda: qtbot.mouseClick(panel.reject_button, Qt.MouseButton.LeftButton))
    catalog = win.library.catalog
    # Still on Rose: her faces below are read again, the one taken off her gone.
    qtbot.waitUntil(lambda: panel.face_ids() and face not in panel.face_ids(), timeout=WAIT)
    assert panel.current_person() == new and len(panel.face_ids()) == 1
    assert catalog.face(face).person_id != new
    assert new in catalog.face_state().rejected[face]
    _wait_people(qtbot, win, lambda rows: rows == [("Unnamed", 2), ("Unnamed", 2), ("Unnamed", 1)])


def test_hide_takes_a_person_off_the_panel(qtbot, win):
    rose = _person_with(win, ROSE[0])
    _choose(qtbot, win, rose)
    _correct(
        qtbot,
        win,
        lambda: qtbot.mouseClick(win.people.panel.hide_button, Qt.MouseButton.LeftButton),
    )
    _wait_people(qtbot, win, lambda rows: len(rows) == 2)
    panel = win.people.panel
    assert rose not in panel.person_ids()
    assert win.library.catalog.person(rose).hidden
    # Shown again: the hidden people are listed with the box ticked, and Show undoes it.
    panel.show_hidden.setChecked(True)
    qtbot.waitUntil(lambda: rose in panel.person_ids(), timeout=WAIT)
    _choose(qtbot, win, rose)
    assert panel.hide_button.text() == "Show"
    _correct(qtbot, win, lambda: qtbot.mouseClick(panel.hide_button, Qt.MouseButton.LeftButton))
    panel.show_hidden.setChecked(False)
    _wait_people(qtbot, win, lambda rows: len(rows) == 3)
    assert not win.library.catalog.person(rose).hidden


def test_the_preview_boxes_the_faces_with_their_names(qtbot, win):
    obama = _person_with(win, OBAMA[0])
    _correct(qtbot, win, lambda: win.people.name(obama, "Barack"))
    win.search_box.setText("person:Barack")
    with qtbot.waitSignal(win.searchFinished, timeout=WAIT):
        win.run_search()
    row = next(i for i, r in enumerate(win.results.rows()) if r.path.endswith(OBAMA[0]))
    win.view.setCurrentIndex(win.results.index(row))
    with qtbot.waitSignal(win.previewShown, timeout=WAIT):
        win.show_preview()
    dialog = win.preview
    assert dialog.fields["people"].text() == "Barack"
    # The box is drawn on the picture: its outline's pixels are the box colour.
    from photofind.gui.preview import FACE_BOX

    image = dialog._pixmap.toImage()
    (face,) = win.library.catalog.faces(win.results.rows()[row].photo_id)
    with Image.open(win.results.rows()[row].path) as im:
        scale = image.width() / im.size[0]
    x, y, w, h = face.box
    edge = image.pixelColor(round((x + w / 2) * scale), round(y * scale))
    assert (edge.red(), edge.green(), edge.blue()) == pytest.approx(
        (FACE_BOX.red(), FACE_BOX.green(), FACE_BOX.blue()), abs=40
    )
    dialog.close()


def test_turning_face_recognition_off_deletes_every_face_and_stops_the_pass(qtbot, win):
    catalog = win.library.catalog
    assert len(catalog.faces()) == 7
    asked = []
    win.confirm = lambda title, text: asked.append(text) or True
    with qtbot.waitSignal(win.people.recognitionSet, timeout=WAIT):
        win.apply_settings(dataclasses.replace(win.settings, faces_enabled=False))
    assert asked and "deletes every face" in asked[0]
    assert catalog.faces() == [] and catalog.people(include_hidden=True) == []
    assert settings.load(win.library.root)["faces.enabled"] is False
    _wait_people(qtbot, win, lambda rows: rows == [])
    assert "off" in win.people.panel.status.text()
    # The watcher runs again, without a face pass: a new photo gets no faces.
    extra = Path(win.library.root).parent / "extra"
    extra.mkdir()
    shutil.copy(KNN / "test" / "obama1.jpg", extra / "new.jpg")
    win.add_folder(str(extra))
    win.start_indexing()
    qtbot.waitUntil(
        lambda: (
            (p := catalog.photo_by_path(str(extra / "new.jpg"))) is not None
            and p.status == "indexed"
        ),
        timeout=WAIT,
    )
    with qtbot.waitSignal(win.indexing.finished, timeout=WAIT):
        win.indexing.watcher.request_full_reconcile("test")
    assert catalog.faces() == []
    # A "no" keeps it on.
    with qtbot.waitSignal(win.people.recognitionSet, timeout=WAIT):
        win.apply_settings(dataclasses.replace(win.settings, faces_enabled=True))
    win.confirm = lambda title, text: False
    win.apply_settings(dataclasses.replace(win.settings, faces_enabled=False))
    assert win.settings.faces_enabled is True


def test_the_watcher_runs_the_face_pass_after_clip_with_progress(qtbot, tmp_path):
    lib = tmp_path / "lib"
    settings.update(lib, {"faces.min_faces": 2})
    threads_before = threading.active_count()
    w = create_window(lib, TINY, provider="cpu", watch_options=FAST)
    qtbot.addWidget(w)
    stages = []
    try:
        w.add_folder(str(KNN / "test"))
        w.indexing.progress.connect(lambda p: stages.append(p.stage))
        w.start_indexing()
        # Obama is in two of the five test photos: the one group of at least 2 faces ...
        _wait_people(qtbot, w, lambda rows: rows[:1] == [("Unnamed", 2)])
        qtbot.waitUntil(lambda: w.library.catalog.analysis_counts("faces")["pending"] == 0)
        # ... and the pass ran with CLIP and reported progress as it went.
        assert any("faces" in s for s in stages), stages
        assert len(w.library.catalog.faces()) == 8
    finally:
        w.shutdown()
        w.close()
    qtbot.waitUntil(lambda: threading.active_count() <= threads_before + 1, timeout=WAIT)
