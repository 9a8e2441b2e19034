"""The large preview (Space on a photo): the picture and its details."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QFormLayout, QLabel, QSizePolicy, QVBoxLayout

from photofind.clip.preprocess import open_image
from photofind.formats.decode import stored_size

PREVIEW_SIDE = 1600  # pixels, longest side decoded for the preview


@dataclass(frozen=True)
class PhotoDetails:
    path: str
    date: str | None
    width: int
    height: int
    size_bytes: int
    score: float | None


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def score_text(score: float | None, threshold: float | None) -> str:
    """A result's score, and where it stands against the cut-off it was shown under."""
    if score is None:
        return "—"
    if threshold is None:
        return f"{score:.3f}"
    side = "above" if score >= threshold else "below"
    return f"{score:.3f} ({side} the relevance cut-off {threshold:.3f})"


def load_preview(path: str, score: float | None, date: str | None) -> tuple[QImage, PhotoDetails]:
    """Decode a screen-sized copy of ``path`` and read its details. Runs off the GUI thread."""
    size = os.stat(path).st_size
    img = open_image(path, draft_size=(PREVIEW_SIDE, PREVIEW_SIDE))  # names what is wrong
    width, height = stored_size(path)  # as stored; cheap, reads only the header
    img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BICUBIC)
    data = img.tobytes()
    image = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()
    return image, PhotoDetails(path, date, width, height, size, score)


# Keys that move the preview through the results, as in an image viewer.
STEP_KEYS = {
    Qt.Key.Key_Right: "next",
    Qt.Key.Key_Down: "next",
    Qt.Key.Key_Left: "previous",
    Qt.Key.Key_Up: "previous",
    Qt.Key.Key_Home: "first",
    Qt.Key.Key_End: "last",
}
# Enlarged more than this, a picture is shown with square pixels (a 1x1 or an icon-sized
# image blurred to a smear tells nothing; its pixels do).
CRISP_ENLARGEMENT = 4.0


class PreviewDialog(QDialog):
    """Non-modal: the grid stays usable; Space or Esc closes it; the arrow keys, Home and
    End ask for another photo of the results (``stepRequested``)."""

    stepRequested = Signal(str)  # noqa: N815 - "next", "previous", "first" or "last"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("previewDialog")
        self.setWindowTitle("Preview")
        self.setModal(False)
        from photofind.gui.placement import fit_to_screen

        # At most 85% of the screen: at scale 2 a 2560×1440 screen is 1280×720 points.
        fit_to_screen(self, QSize(960, 760), share=0.85)
        layout = QVBoxLayout(self)
        self.image = QLabel("Loading…", self)
        self.image.setObjectName("previewImage")
        self.image.setAccessibleName("Photo preview")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # A file name or an error quoting one may look like HTML: show it, never render it.
        self.image.setTextFormat(Qt.TextFormat.PlainText)
        self.image.setMinimumSize(320, 240)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        layout.addWidget(self.image, 1)
        form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label in (
            ("path", "Path"),
            ("date", "Date"),
            ("dimensions", "Dimensions"),
            ("size", "File size"),
            ("score", "Score"),
        ):
            value = QLabel("", self)
            value.setObjectName(f"preview_{key}")
            value.setTextFormat(Qt.TextFormat.PlainText)  # "<h1>…</h1>.jpg" is a name
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            form.addRow(label, value)
            self.fields[key] = value
        layout.addLayout(form)
        self._pixmap: QPixmap | None = None
        self.path: str | None = None
        #: the relevance cut-off of the results the photo came from (None: none applied)
        self.threshold: float | None = None

    def show_loading(self, path: str) -> None:
        self.path = path
        self.setWindowTitle(os.path.basename(path))
        self._pixmap = None
        self.image.setPixmap(QPixmap())
        self.image.setText("Loading…")
        self.fields["path"].setText(path)
        for key in ("date", "dimensions", "size", "score"):
            self.fields[key].setText("")

    def show_photo(self, image: QImage, details: PhotoDetails) -> None:
        if details.path != self.path:
            return  # another photo was asked for meanwhile
        self._pixmap = QPixmap.fromImage(image)
        self._fit()
        self.fields["date"].setText(details.date.replace("T", " ") if details.date else "unknown")
        self.fields["dimensions"].setText(f"{details.width} × {details.height} pixels")
        self.fields["size"].setText(human_size(details.size_bytes))
        self.fields["score"].setText(score_text(details.score, self.threshold))

    def show_error(self, path: str, message: str) -> None:
        if path == self.path:
            self.image.setText(f"Cannot show this photo: {message}")

    def _fit(self) -> None:
        if self._pixmap is None:
            return
        ratio = self.devicePixelRatioF()
        # Fit the label, small pictures too: a 1x1 PNG shown at its own size is a dot.
        target = self.image.size() * ratio
        enlargement = min(
            target.width() / max(1, self._pixmap.width()),
            target.height() / max(1, self._pixmap.height()),
        )
        how = (
            Qt.TransformationMode.FastTransformation
            if enlargement > CRISP_ENLARGEMENT
            else Qt.TransformationMode.SmoothTransformation
        )
        scaled = self._pixmap.scaled(target, Qt.AspectRatioMode.KeepAspectRatio, how)
        scaled.setDevicePixelRatio(ratio)
        self.image.setPixmap(scaled)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Space, Qt.Key.Key_Escape):
            self.close()
            return
        step = STEP_KEYS.get(event.key())
        # (Arrow keys come with the keypad modifier on some systems.)
        plain = not (event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier)
        if step is not None and plain:
            self.stepRequested.emit(step)
            event.accept()
            return
        super().keyPressEvent(event)
