"""The People panel's work: who is in the library, the user's corrections, face recognition
on and off.

Every catalog read and write runs on a pool thread (the watcher's writer may hold the
catalog's lock; the GUI thread never waits on it): the rows are read and each face thumbnail
(a JPEG the face pass stored) decoded into a ``QImage`` there; the panel makes the pixmaps.

- **Corrections** (name, merge, split, "not this person", hide) go one at a time on the
  write pool, each a catalog transaction beside the watcher's (the catalog keeps the user's
  faces apart from the machine's: a grouping never moves them). After each, the grouping
  runs again (:func:`photofind.people.corrected`), so the k-NN names at once the faces the
  correction reaches; then the panel and the search on screen are refreshed.
- **Face recognition off** (Settings) stops the watcher first, as every rewrite of the
  library does (gui/watching.py), deletes every face, person and face thumbnail
  (:func:`photofind.people.set_face_recognition`), and starts a watcher that runs no face
  pass. On again, the next watcher finds the faces.
- The panel follows the face pass: refreshed after every round of the watcher.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDockWidget

from photofind.gui.people_panel import FaceRow, PeoplePanel, PersonRow

log = logging.getLogger(__name__)

#: faces shown for the chosen person (the most confident first)
MAX_FACES_SHOWN = 200


def _image(jpeg: bytes | None) -> QImage | None:
    """A face thumbnail decoded (off the GUI thread: QImage, not QPixmap)."""
    if not jpeg:
        return None
    image = QImage.fromData(jpeg, "JPEG")
    return None if image.isNull() else image


def read_people(
    catalog, enabled: bool, hidden: bool = False
) -> tuple[list[PersonRow], list[str], str]:
    """On a pool thread: the panel's rows (the hidden people too, with ``hidden``), the
    named people for the filter bar, and what the panel says above the list."""
    if not enabled:
        return [], [], "Face recognition is off (Settings)."
    people = catalog.people(include_hidden=hidden)
    rows = [
        PersonRow(
            p.id,
            p.name,
            p.face_count,
            p.photo_count,
            _image(catalog.face_thumb(p.example_face_id)) if p.example_face_id else None,
            p.hidden,
        )
        for p in people
    ]
    names = sorted((p.name for p in people if p.name), key=str.casefold)
    message = "" if rows else "No people yet: they appear as the faces are found."
    return rows, names, message


def read_faces(catalog, person_id: int) -> list[FaceRow]:
    faces = catalog.faces_of(person_id)[:MAX_FACES_SHOWN]
    photos = catalog.photos_by_id({f.item_id for f in faces})
    return [
        FaceRow(
            f.id,
            photos[f.item_id].path if f.item_id in photos else None,
            _image(catalog.face_thumb(f.id)),
        )
        for f in faces
    ]


class PeopleController(QObject):
    #: the panel shows the people as the catalog has them now (after each refresh)
    shown = Signal()
    #: the faces of a person are shown (its id)
    facesShown = Signal(int)  # noqa: N815 - Qt naming
    #: a correction is stored and the grouping ran after it (its words), or it failed
    corrected = Signal(str)
    #: face recognition was turned on or off and the new watcher runs
    recognitionSet = Signal(bool)  # noqa: N815

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = PeoplePanel(window)
        self.panel.set_writable(not window.library.readonly)
        self.enabled = window.settings.faces_enabled
        self._refreshing = self._again = False
        self.rows: dict[int, PersonRow] = {}  # the people shown, by id
        dock = QDockWidget("People", window)
        dock.setObjectName("peopleDock")
        dock.setWidget(self.panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        if getattr(window, "folders_dock", None) is not None:
            window.tabifyDockWidget(window.folders_dock, dock)
            window.folders_dock.raise_()
        self.dock = dock
        p = self.panel
        p.personChosen.connect(self.show_photos)
        p.facesWanted.connect(self.show_faces)
        p.nameRequested.connect(self.name)
        p.mergeRequested.connect(self.merge)
        p.hideRequested.connect(self.hide)
        p.hiddenShown.connect(lambda _on: self.refresh())
        p.rejectRequested.connect(self.reject)
        p.splitRequested.connect(self.split)

    def attach(self, job) -> None:
        """Follow the face pass of the watcher ``job``: the people after each round."""
        job.batchDone.connect(lambda _batch: self.refresh())

    # -- reading ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the people off the GUI thread and show them; one read at a time (a refresh
        asked meanwhile runs once after it)."""
        w = self.window
        if w._closing:
            return
        if self._refreshing:
            self._again = True
            return
        self._refreshing = True
        catalog, enabled = w.library.catalog, self.enabled
        hidden = self.panel.show_hidden.isChecked()

        def done(result, error):
            self._refreshing = False
            if w._closing:
                return
            if error is not None:
                log.warning("people not read: %s", error)
            else:
                rows, names, message = result
                self.rows = {r.id: r for r in rows}
                self.panel.set_people(rows, message)
                w.filter_bar.set_people(names)
                self.shown.emit()
            if self._again:
                self._again = False
                self.refresh()

        w.tasks.run(lambda: read_people(catalog, enabled, hidden), done, pool=w.tasks.io_pool)

    def show_faces(self, person_id: int) -> None:
        w = self.window
        catalog = w.library.catalog

        def done(rows, error):
            if w._closing:
                return
            if error is not None:
                log.warning("faces of person %s not read: %s", person_id, error)
                return
            self.panel.set_faces(person_id, rows)
            self.facesShown.emit(person_id)

        w.tasks.run(lambda: read_faces(catalog, person_id), done, pool=w.tasks.io_pool)

    def show_photos(self, person_id: int) -> None:
        """The person's photos in the grid: the search ``person:ID`` (or their name)."""
        w = self.window
        row = self.rows.get(person_id)
        name = row.name if row is not None else None
        query = f"person:{person_id}"
        if name and '"' not in name and not name.isdigit():
            query = f'person:"{name}"' if any(c.isspace() for c in name) else f"person:{name}"
        w.search_box.setText(query)
        w.search.run_search()

    # -- the user's word ----------------------------------------------------------------------

    def name(self, person_id: int, name: str) -> None:
        self._correct(lambda c: c.name_person(person_id, name), f"Named {name}")

    def merge(self, keep: int, other: int) -> None:
        self._correct(lambda c: c.merge_people(keep, other), "Merged two people")

    def hide(self, person_id: int, hidden: bool = True) -> None:
        self._correct(
            lambda c: c.hide_person(person_id, hidden),
            "Hid a person" if hidden else "Showed a person again",
            regroup=False,
        )

    def reject(self, face_ids: list[int]) -> None:
        def work(catalog):
            for face_id in face_ids:
                catalog.reject_face(face_id)

        self._correct(work, f"Took {len(face_ids)} face(s) off the person")

    def split(self, face_ids: list[int]) -> None:
        self._correct(
            lambda c: c.split_faces(face_ids), f"Moved {len(face_ids)} face(s) to a new person"
        )

    def _correct(self, change, what: str, *, regroup: bool = True) -> None:
        """Store ``change(catalog)`` on the write pool, group again, refresh what shows."""
        from photofind.people import corrected

        w = self.window
        if w.library.readonly:
            return
        catalog, root = w.library.catalog, w.library.root

        def work():
            change(catalog)
            if regroup:
                corrected(catalog, root)

        def done(_result, error):
            if w._closing:
                return
            if error is not None:
                w.report_error("The correction was not stored", str(error))
                self.corrected.emit(f"failed: {error}")
                return
            w.statusBar().showMessage(what, 5000)
            self.refresh()
            w.search.run_again()  # a person's photos on screen may have changed
            self.corrected.emit(what)

        w.tasks.run(work, done, pool=w.tasks.write_pool)

    # -- on and off -----------------------------------------------------------------------------

    def set_recognition(self, enabled: bool) -> None:
        """Face recognition on or off (Settings): the watcher is stopped, the faces deleted
        when off, and a watcher started that runs the face pass or not."""
        from photofind.people import set_face_recognition

        w = self.window
        self.enabled = enabled
        models = w.models
        job, models.indexing = models.indexing, None
        watcher = job.detach() if job is not None else None
        library = w.library

        def work():
            if watcher is not None:
                watcher.stop()
            models.forget_analysers()
            return set_face_recognition(library, enabled)

        def done(gone, error):
            if job is not None:
                job.deleteLater()
            if w._closing:
                return
            if error is not None:
                w.report_error("Face recognition was not changed", str(error))
            elif not enabled:
                w.statusBar().showMessage(f"Face recognition off: {gone} faces deleted", 8000)
            if not w.writes.busy:
                models.make_indexing_job()
                models.start_indexing()
            self.refresh()
            w.search.run_again()
            self.recognitionSet.emit(enabled)

        w.writes.run(work, done)
