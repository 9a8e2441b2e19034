"""The People panel: one face per person, with the name and the count, the most faces first;
below, the faces of the person chosen, for the corrections that work face by face.

A view only: it shows rows that :class:`photofind.gui.people_controller.PeopleController`
made off the GUI thread (each face thumbnail decoded there into a ``QImage``; the pixmap is
made here, on the GUI thread) and says what the user asked for with signals. Nothing here
reads the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from photofind.gui.plaintext import tooltip

ID_ROLE = Qt.ItemDataRole.UserRole
FACE_SIDE = 72
UNNAMED = "Unnamed"


@dataclass(frozen=True)
class PersonRow:
    id: int
    name: str | None
    face_count: int
    photo_count: int
    image: QImage | None  # the person's most confident face, decoded off the GUI thread
    hidden: bool = False

    @property
    def label(self) -> str:
        faces = f"{self.face_count} face{'s' if self.face_count != 1 else ''}"
        return f"{self.name or UNNAMED}\n{faces}" + (" (hidden)" if self.hidden else "")


@dataclass(frozen=True)
class FaceRow:
    id: int
    path: str | None  # the photo it is in
    image: QImage | None


def _icon_list(parent, name: str, accessible: str) -> QListWidget:
    view = QListWidget(parent)
    view.setObjectName(name)
    view.setAccessibleName(accessible)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setMovement(QListView.Movement.Static)
    view.setIconSize(QSize(FACE_SIDE, FACE_SIDE))
    view.setGridSize(QSize(FACE_SIDE + 36, FACE_SIDE + 40))
    view.setWordWrap(True)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    return view


def _pixmap(image: QImage | None) -> QPixmap:
    if image is None or image.isNull():
        blank = QPixmap(FACE_SIDE, FACE_SIDE)
        blank.fill(Qt.GlobalColor.lightGray)
        return blank
    return QPixmap.fromImage(image)


class PeoplePanel(QWidget):
    #: show the photos of this person in the grid
    personChosen = Signal(int)  # noqa: N815 - Qt naming
    #: the faces of this person are wanted below the list
    facesWanted = Signal(int)  # noqa: N815
    nameRequested = Signal(int, str)  # noqa: N815
    mergeRequested = Signal(int, int)  # noqa: N815 - keep, other
    #: hide the person (True) or show them again (False)
    hideRequested = Signal(int, bool)  # noqa: N815
    #: the hidden people are wanted in the list too (or no more)
    hiddenShown = Signal(bool)  # noqa: N815
    rejectRequested = Signal(list)  # noqa: N815 - face ids: "not this person"
    splitRequested = Signal(list)  # noqa: N815 - face ids: a new person

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("peoplePanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.status = QLabel("", self)
        self.status.setObjectName("peopleStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.show_hidden = QCheckBox("Show hidden people", self)
        self.show_hidden.setObjectName("showHiddenPeople")
        layout.addWidget(self.show_hidden)
        self.list = _icon_list(self, "peopleList", "People")
        layout.addWidget(self.list, 2)

        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("personName")
        self.name_edit.setAccessibleName("Name of the person")
        self.name_edit.setPlaceholderText("Name this person, then Enter")
        layout.addWidget(self.name_edit)
        buttons = QHBoxLayout()
        self.merge_button = self._button("Merge", "mergePeople", "Merge the two people chosen")
        self.hide_button = self._button("Hide", "hidePerson", "Hide this person")
        self.photos_button = self._button("Photos", "personPhotos", "Show this person's photos")
        for button in (self.merge_button, self.hide_button, self.photos_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.faces = _icon_list(self, "personFaces", "Faces of the person")
        layout.addWidget(self.faces, 1)
        face_buttons = QHBoxLayout()
        self.reject_button = self._button(
            "Not this person", "notThisPerson", "Take the chosen faces off this person"
        )
        self.split_button = self._button(
            "Split off", "splitFaces", "Move the chosen faces to a new person"
        )
        face_buttons.addWidget(self.reject_button)
        face_buttons.addWidget(self.split_button)
        layout.addLayout(face_buttons)

        self.list.itemSelectionChanged.connect(self._selection_changed)
        self.list.itemActivated.connect(lambda item: self.personChosen.emit(item.data(ID_ROLE)))
        self.faces.itemSelectionChanged.connect(self._update_buttons)
        self.name_edit.returnPressed.connect(self._name)
        self.merge_button.clicked.connect(self._merge)
        self.hide_button.clicked.connect(self._hide)
        self.show_hidden.toggled.connect(self.hiddenShown)
        self.photos_button.clicked.connect(lambda: self._with_current(self.personChosen.emit))
        self.reject_button.clicked.connect(lambda: self._with_faces(self.rejectRequested.emit))
        self.split_button.clicked.connect(lambda: self._with_faces(self.splitRequested.emit))
        self.writable = True
        self._hidden: set[int] = set()
        self._update_buttons()

    def _button(self, text: str, name: str, accessible: str) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setAccessibleName(accessible)
        button.setToolTip(accessible)
        # The dock may be narrower than the words: the buttons shrink (their tooltips and
        # accessible names say the whole), so the window still fits a small screen.
        button.setMinimumWidth(0)
        button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        return button

    # -- what the controller shows ------------------------------------------------------------

    def set_people(self, rows: list[PersonRow], message: str = "") -> None:
        """Show ``rows`` (in their order: the most faces first); keep the choice made."""
        chosen = set(self.selected_people())
        current = self.current_person()
        self._hidden = {row.id for row in rows if row.hidden}
        self.list.blockSignals(True)
        self.list.clear()
        for row in rows:
            item = QListWidgetItem(_pixmap(row.image), row.label)
            item.setData(ID_ROLE, row.id)
            item.setToolTip(
                tooltip(
                    f"{row.name or UNNAMED}: {row.face_count} faces in {row.photo_count} photos"
                )
            )
            self.list.addItem(item)
            if row.id in chosen:
                item.setSelected(True)
            if row.id == current:
                # The current item again, its selection as it was set just above.
                self.list.setCurrentItem(item, QItemSelectionModel.SelectionFlag.NoUpdate)
        self.list.blockSignals(False)
        self.status.setText(message)
        self.status.setVisible(bool(message))
        # The faces below are read again (a correction may have moved some), keeping the
        # ones chosen; another person chosen, or none, starts afresh.
        if self.current_person() == current and current is not None:
            self.facesWanted.emit(current)
            self._update_buttons()
        else:
            self._selection_changed()

    def set_faces(self, person_id: int, rows: list[FaceRow]) -> None:
        if person_id != self.current_person():
            return  # another person was chosen meanwhile
        chosen = set(self.selected_faces())
        self.faces.blockSignals(True)
        self.faces.clear()
        for row in rows:
            item = QListWidgetItem(_pixmap(row.image), "")
            item.setData(ID_ROLE, row.id)
            item.setToolTip(tooltip(row.path or ""))
            self.faces.addItem(item)
            item.setSelected(row.id in chosen)
        self.faces.blockSignals(False)
        self._update_buttons()

    def set_writable(self, writable: bool) -> None:
        self.writable = writable
        self._update_buttons()

    # -- the choice -----------------------------------------------------------------------

    def person_ids(self) -> list[int]:
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())]

    def selected_people(self) -> list[int]:
        return [item.data(ID_ROLE) for item in self.list.selectedItems()]

    def current_person(self) -> int | None:
        items = self.list.selectedItems()
        if len(items) == 1:
            return items[0].data(ID_ROLE)
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item is not None and item.isSelected() else None

    def select_person(self, person_id: int, *, add: bool = False) -> None:
        if not add:
            self.list.clearSelection()
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == person_id:
                item.setSelected(True)
                if not add:
                    self.list.setCurrentItem(item)

    def face_ids(self) -> list[int]:
        return [self.faces.item(i).data(ID_ROLE) for i in range(self.faces.count())]

    def selected_faces(self) -> list[int]:
        return [item.data(ID_ROLE) for item in self.faces.selectedItems()]

    def _selection_changed(self) -> None:
        self.faces.clear()
        person = self.current_person()
        if person is not None:
            self.facesWanted.emit(person)
        self._update_buttons()

    def _update_buttons(self) -> None:
        one = self.current_person() is not None and len(self.selected_people()) == 1
        faces = bool(self.faces.selectedItems())
        self.name_edit.setEnabled(self.writable and one)
        self.merge_button.setEnabled(self.writable and len(self.selected_people()) == 2)
        self.hide_button.setEnabled(self.writable and one)
        hidden = self.current_person() in self._hidden
        self.hide_button.setText("Show" if hidden else "Hide")
        self.hide_button.setAccessibleName(
            "Show this person again" if hidden else "Hide this person"
        )
        self.photos_button.setEnabled(one)
        self.reject_button.setEnabled(self.writable and one and faces)
        self.split_button.setEnabled(self.writable and one and faces)

    # -- the user's word ----------------------------------------------------------------------

    def _with_current(self, emit) -> None:
        person = self.current_person()
        if person is not None:
            emit(person)

    def _hide(self) -> None:
        person = self.current_person()
        if person is not None:
            self.hideRequested.emit(person, person not in self._hidden)

    def _with_faces(self, emit) -> None:
        faces = self.selected_faces()
        if faces:
            emit(faces)

    def _name(self) -> None:
        name = self.name_edit.text().strip()
        person = self.current_person()
        if name and person is not None and self.writable:
            self.nameRequested.emit(person, name)
            self.name_edit.clear()

    def _merge(self) -> None:
        chosen = self.selected_people()
        if len(chosen) != 2:
            return
        # The one listed first (more faces) keeps its id; a name wins over none.
        order = self.person_ids()
        keep, other = sorted(chosen, key=order.index)
        self.mergeRequested.emit(keep, other)
