"""The large preview (Space on a photo): the picture and its details."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QFormLayout, QLabel, QSizePolicy, QVBoxLayout

from photofind.clip.preprocess import open_image, open_photo

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


def load_preview(path: str, score: float | None, date: str | None) -> tuple[QImage, PhotoDetails]:
    """Decode a screen-sized copy of ``path`` and read its details. Runs off the GUI thread."""
    size = os.stat(path).st_size
    img = open_image(path, draft_size=(PREVIEW_SIDE, PREVIEW_SIDE))  # names what is wrong
    with open_photo(path) as probe:
        width, height = probe.size  # the stored size; cheap, reads only the header
    img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BICUBIC)
    data = img.tobytes()
    image = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()
    return image, PhotoDetails(path, date, width, height, size, score)


class PreviewDialog(QDialog):
    """Non-modal: the grid stays usable; Space or Esc closes it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("previewDialog")
        self.setWindowTitle("Preview")
        self.setModal(False)
        from photofind.gui.app import fit_to_screen

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
        self.fields["score"].setText("—" if details.score is None else f"{details.score:.3f}")

    def show_error(self, path: str, message: str) -> None:
        if path == self.path:
            self.image.setText(f"Cannot show this photo: {message}")

    def _fit(self) -> None:
        if self._pixmap is None:
            return
        ratio = self.devicePixelRatioF()
        # Fit the label, but never blow a small photo up past its own size (a blurry,
        # pixelated enlargement tells nothing more about it).
        target = (self.image.size() * ratio).boundedTo(self._pixmap.size() * ratio)
        scaled = self._pixmap.scaled(
            target, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        scaled.setDevicePixelRatio(ratio)
        self.image.setPixmap(scaled)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Space, Qt.Key.Key_Escape):
            self.close()
            return
        super().keyPressEvent(event)
