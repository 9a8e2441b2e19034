"""What the user can do with a photo of the grid, and the window's keys.

As in MusicBrainz Picard's ``ui/mainwindow/actions.py``: the actions are declared once in a
table (name, text, what they do), built into ``QAction``s for the window, and every menu
uses those same objects. What reads a file (the preview, Copy image) reads it on a pool
thread: a slow disk or a FIFO named like a photo must not freeze the window.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from PySide6.QtCore import QMimeData, QObject, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QGuiApplication,
    QImage,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import QMenu

from photofind.clip.preprocess import open_image
from photofind.formats.kinds import VIDEO, is_supported, kind_of
from photofind.gui.filters import photo_date
from photofind.gui.results_model import PathRole


@dataclass(frozen=True)
class ActionSpec:
    attribute: str  # the window's attribute for the QAction (tests and menus find it there)
    text: str
    slot: str  # the PhotoActions method it runs


# The photo menu, in its order; None is a separator.
PHOTO_MENU: tuple[ActionSpec | None, ...] = (
    ActionSpec("find_similar_action", "Find similar", "find_similar_current"),
    None,
    ActionSpec("open_action", "Open", "open_current"),
    # The RAW (or Live Photo clip) shown through this photo; hidden when it has none.
    ActionSpec("open_companion_action", "Open the RAW", "open_companion_current"),
    ActionSpec("show_action", "Show in folder", "show_current"),
    ActionSpec("copy_path_action", "Copy path", "copy_path_current"),
    ActionSpec("copy_image_action", "Copy image", "copy_image_current"),
)


def image_path(mime: QMimeData) -> str | None:
    """The first local file of a kind photofind reads among dropped or pasted URLs."""
    for url in mime.urls():
        if url.isLocalFile() and is_supported(url.toLocalFile()):
            return url.toLocalFile()
    return None


class PhotoActions(QObject):
    #: Copy image finished: the path, and whether the clipboard holds its picture now
    imageCopied = Signal(str, bool)  # noqa: N815 - Qt naming

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self._copy_serial = 0
        for spec in PHOTO_MENU:
            if spec is not None:
                action = QAction(spec.text, window)
                action.triggered.connect(getattr(self, spec.slot))
                setattr(window, spec.attribute, action)
        w = window
        zoom_in = lambda: w._set_zoom(w.zoom.value() + 24)  # noqa: E731
        QShortcut(QKeySequence.StandardKey.ZoomIn, w, zoom_in)
        QShortcut(QKeySequence("Ctrl+="), w, zoom_in)
        QShortcut(QKeySequence.StandardKey.ZoomOut, w, lambda: w._set_zoom(w.zoom.value() - 24))
        QShortcut(QKeySequence.StandardKey.Paste, w, self.paste_image)
        # Ctrl+Q on every platform: StandardKey.Quit is empty on Windows (and offscreen).
        QShortcut(QKeySequence("Ctrl+Q"), w, w.close)

    def connect_view(self, view) -> None:
        view.customContextMenuRequested.connect(self.context_menu)
        view.activated.connect(lambda index: self.open_photo(index.data(PathRole)))
        view.previewRequested.connect(self.show_preview)

    # -- the current photo ------------------------------------------------------------------

    def current(self):
        index = self.window.view.currentIndex()
        return self.window.results.row_at(index) if index.isValid() else None

    def _with_current(self, fn) -> None:
        row = self.current()
        if row is not None:
            fn(row.path)

    def find_similar_current(self) -> None:
        row = self.current()
        if row is not None:
            # From a video hit: like the frame that matched (its thumbnail).
            self.window.search.find_similar(row.photo_id, row.path, row.time_s)

    def open_current(self) -> None:
        self._with_current(self.open_photo)

    def companion_of_current(self) -> str | None:
        """The first file shown through the current photo (its RAW), or None."""
        row = self.current()
        return row.companions[0] if row is not None and row.companions else None

    def open_companion_current(self) -> None:
        companion = self.companion_of_current()
        if companion is not None:
            self.open_photo(companion)

    def show_current(self) -> None:
        self._with_current(self.show_in_folder)

    def copy_path_current(self) -> None:
        self._with_current(self.copy_path)

    def copy_image_current(self) -> None:
        row = self.current()
        if row is not None:
            self.copy_image(row.path, row.time_s)

    def context_menu(self, pos) -> None:
        view = self.window.view
        index = view.indexAt(pos)
        if not index.isValid():
            return
        view.setCurrentIndex(index)
        companion = self.companion_of_current()
        open_companion = self.window.open_companion_action
        open_companion.setVisible(companion is not None)
        if companion is not None:
            open_companion.setText(f"Open {os.path.basename(companion)}")
        menu = QMenu(view)
        for spec in PHOTO_MENU:
            if spec is None:
                menu.addSeparator()
            else:
                menu.addAction(getattr(self.window, spec.attribute))
        menu.exec(view.viewport().mapToGlobal(pos))

    # -- what they do -----------------------------------------------------------------------

    def open_photo(self, path: str) -> None:
        # openUrl says False when no launcher took it (no xdg-open, no default app): Qt
        # only warns on stderr, where nobody looking at the app reads it.
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self._cannot_launch(f"Cannot open {os.path.basename(path)}", path)

    def show_in_folder(self, path: str) -> None:
        try:
            if sys.platform == "darwin":
                subprocess.Popen(["open", "-R", path])
                return
            if sys.platform == "win32":
                subprocess.Popen(["explorer", "/select,", os.path.normpath(path)])
                return
        except OSError as exc:
            self._cannot_launch(f"Cannot show {os.path.basename(path)}", path, str(exc))
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path))):
            self._cannot_launch(f"Cannot show {os.path.basename(path)}", os.path.dirname(path))

    def _cannot_launch(self, title: str, path: str, reason: str = "") -> None:
        self.window.report_error(
            title,
            f"No application on this computer opened {path}"
            + (f" ({reason})" if reason else "")
            + ". The desktop's file launcher (xdg-open on Linux) may be missing, or no "
            "application is set for this kind of file. Copy path gives the file's place.",
        )

    def copy_path(self, path: str) -> None:
        QGuiApplication.clipboard().setText(path)

    def copy_image(self, path: str, time_s: float | None = None) -> None:
        """Put the photo's picture on the clipboard; the file is read and decoded on a pool
        thread (a QImage may be, unlike a QPixmap), the clipboard set on the GUI thread.
        A video's: its frame at ``time_s`` (the search's best; else its first)."""
        w = self.window
        self._copy_serial += 1
        serial = self._copy_serial

        def done(image, error):
            if w._closing:
                return
            ok = error is None and not image.isNull()
            if serial == self._copy_serial:  # else a newer Copy image was asked meanwhile
                if ok:
                    QGuiApplication.clipboard().setImage(image)
                else:
                    w.statusBar().showMessage(f"Cannot copy {path}: not readable", 5000)
            self.imageCopied.emit(path, ok and serial == self._copy_serial)

        def work():
            if kind_of(path) == VIDEO:  # never the whole file into memory
                from photofind.gui.preview import PREVIEW_FRAME_SIDE, frame_at, qimage

                return qimage(frame_at(path, round((time_s or 0) * 1000), side=PREVIEW_FRAME_SIDE))
            # The bytes first, by Python: QImage(path) would wait on a slow file inside Qt's
            # image reader, holding its plugin lock, and every other decode (the GUI
            # thread's too) would queue behind it.
            with open(path, "rb") as file:
                image = QImage.fromData(file.read())
            if not image.isNull():
                return image
            # What Qt does not read (HEIC, AVIF, JPEG XL, camera RAW): photofind.formats.
            img = open_image(path)
            data = img.tobytes()
            return QImage(
                data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888
            ).copy()

        w.tasks.run(work, done, pool=w.tasks.io_pool)

    def paste_image(self) -> None:
        path = image_path(QGuiApplication.clipboard().mimeData())
        if path:
            self.window.search.search_by_image(path)

    # -- the preview ------------------------------------------------------------------------

    def show_preview(self) -> None:
        """The large preview of the current photo, loaded off the GUI thread."""
        from photofind.gui.preview import PreviewDialog, load_preview

        w = self.window
        row = self.current()
        if row is None:
            return
        if w.preview is None:
            w.preview = PreviewDialog(w)
            w.preview.stepRequested.connect(self._step_preview)
            w.preview.playRequested.connect(self.open_photo)  # the system's player
        dialog = w.preview
        dialog.threshold = w.header.threshold
        dialog.show_loading(row.path)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()  # Space and Esc then reach it, to close it again
        catalog = w.library.catalog

        def work():
            photo = catalog.photo(row.photo_id) if row.photo_id is not None else None
            date = photo_date(photo) if photo is not None else None
            # Faces found on a video's frames are boxed on no single picture shown here.
            faces = [
                (face, name)
                for face, name in (catalog.face_names(photo.id) if photo is not None else [])
                if face.frame_ms is None
            ]
            return load_preview(
                row.path, row.score, date, faces, time_s=row.time_s, frames=row.frames
            )

        def done(result, error):
            if error is not None:
                dialog.show_error(row.path, str(error))
            else:
                dialog.show_photo(*result)
            w.previewShown.emit(row.path)

        w.tasks.run(work, done, pool=w.tasks.io_pool)

    def _step_preview(self, step: str) -> None:
        """The preview's arrow keys, Home and End: the next photo of the grid, in its order."""
        w = self.window
        count = w.results.rowCount()
        if count == 0:
            return
        row = w.view.currentIndex().row()
        target = {
            "next": min(count - 1, row + 1),
            "previous": max(0, row - 1),
            "first": 0,
            "last": count - 1,
        }[step]
        if target != row:
            w.view.setCurrentIndex(w.results.index(target))
            self.show_preview()
