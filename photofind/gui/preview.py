"""The large preview (Space on a photo): the picture, its faces boxed with their names, and
its details.

A video hit shows its best frame large, a strip of its frames that match the search best
(each with its time and score), and a button that opens it in the system's player. So does
an animated picture's hit (a search names one of its frames, as a video's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from photofind.clip.preprocess import open_image
from photofind.formats import frames as animation
from photofind.formats.decode import stored_size
from photofind.formats.kinds import VIDEO, kind_of
from photofind.formats.video import duration_text, frame_at, video_size

PREVIEW_SIDE = 1600  # pixels, longest side decoded for the preview
#: the shortest side a video's frame is decoded at for the preview (a 16:9 frame: 1600 wide)
PREVIEW_FRAME_SIDE = 900
STRIP_SIDE = 96  # pixels, shortest side of a frame in a video's strip


@dataclass(frozen=True)
class PhotoDetails:
    path: str
    date: str | None
    width: int
    height: int
    size_bytes: int
    score: float | None
    #: a video's length in ms (None: a still)
    duration_ms: int | None = None
    #: the time of the video frame shown, in seconds
    time_s: float | None = None
    #: the names of the people whose faces are boxed ("Unnamed" for a face on nobody named)
    people: tuple[str, ...] = ()


@dataclass(frozen=True)
class StripFrame:
    """A frame of a video's strip: its time, its score for the search, its picture."""

    time_s: float
    score: float
    image: QImage


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


UNNAMED = "Unnamed"
FACE_BOX = QColor(255, 214, 10)  # a yellow that stands out on skin, sky and shadow


def qimage(img: Image.Image) -> QImage:
    """A PIL picture as an RGB888 QImage that owns its pixels (made on any thread)."""
    img = img.convert("RGB")
    data = img.tobytes()
    return QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()


def load_preview(
    path: str,
    score: float | None,
    date: str | None,
    faces=(),
    *,
    time_s: float | None = None,
    frames: tuple = (),
):
    """Decode a screen-sized copy of ``path`` and read its details. Runs off the GUI thread
    (QPainter on a QImage may).

    ``(image, details, strip)``; ``faces`` are boxed: pairs of a stored face (its box in the
    upright photo's full-size pixels) and its person's name or None. For a video the image
    is its frame at ``time_s`` (the search's best) and the strip the ``frames`` ``(time s,
    score)`` asked, decoded small, in time order. A photo's strip is empty."""
    size = os.stat(path).st_size
    if kind_of(path) == VIDEO:
        return _load_video_preview(path, score, date, size, time_s, frames)
    if time_s is not None:  # an animated picture's hit names the frame the search found
        shape = (stored_size(path), animation.running_ms(path))
        return _frames_preview(path, score, date, size, time_s, frames, shape, animation.frame_at)
    img = open_image(path, draft_size=(PREVIEW_SIDE, PREVIEW_SIDE))  # names what is wrong
    width, height = stored_size(path)  # as stored; cheap, reads only the header
    # Decoding drafts and EXIF-rotates: the upright full width is the stored width, or the
    # height for a photo turned by a quarter.
    upright = width if (img.width >= img.height) == (width >= height) else height
    img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BICUBIC)
    image = qimage(img)
    names = tuple(name or UNNAMED for _, name in faces)
    if faces:
        draw_faces(image, [(face.box, name) for face, name in faces], img.width / max(1, upright))
    return image, PhotoDetails(path, date, width, height, size, score, people=names), ()


def _load_video_preview(path, score, date, size, time_s, frames):
    return _frames_preview(path, score, date, size, time_s, frames, video_size(path), frame_at)


def _frames_preview(path, score, date, size, time_s, frames, shape, frame_of):
    """A video's (or an animated picture's) preview: ``shape`` is ``((width, height),
    duration in ms)``, ``frame_of(path, ms, side=...)`` its frame at a time."""
    (width, height), duration = shape
    at = 0.0 if time_s is None else time_s
    img = frame_of(path, round(at * 1000), side=PREVIEW_FRAME_SIDE)
    img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BICUBIC)
    strip = tuple(
        StripFrame(t, s, qimage(frame_of(path, round(t * 1000), side=STRIP_SIDE)))
        for t, s in sorted(frames, key=lambda f: f[0])
        if t is not None
    )
    details = PhotoDetails(path, date, width, height, size, score, duration, at)
    return qimage(img), details, strip


def draw_faces(image: QImage, boxes, scale: float) -> None:
    """Each ``(x, y, w, h)`` box (full-size pixels, times ``scale``) outlined, its name
    under it (nothing for a face on no named person)."""
    painter = QPainter(image)
    try:
        line = max(2, round(min(image.width(), image.height()) / 300))
        painter.setPen(QPen(FACE_BOX, line))
        font = QFont()
        font.setPixelSize(max(11, round(image.height() / 45)))
        painter.setFont(font)
        for (x, y, w, h), name in boxes:
            rect = QRectF(x * scale, y * scale, w * scale, h * scale)
            painter.drawRect(rect)
            if name:
                below = QRectF(rect.left() - w, rect.bottom() + line, rect.width() + 2 * w, 200)
                painter.drawText(
                    below, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), name
                )
    finally:
        painter.end()


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
    #: the "Play" button of a video: open this path in the system's player
    playRequested = Signal(str)  # noqa: N815

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
        # A video's best frames for the search, and the way to watch it.
        self.strip = QWidget(self)
        self.strip.setObjectName("previewStrip")
        self.strip_layout = QHBoxLayout(self.strip)
        self.strip_layout.setContentsMargins(0, 0, 0, 0)
        self.strip.setVisible(False)
        layout.addWidget(self.strip)
        self.play = QPushButton("▶  Play in the system player", self)
        self.play.setObjectName("previewPlay")
        self.play.setVisible(False)
        self.play.clicked.connect(lambda: self.path and self.playRequested.emit(self.path))
        layout.addWidget(self.play, 0, Qt.AlignmentFlag.AlignLeft)
        form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label in (
            ("path", "Path"),
            ("date", "Date"),
            ("dimensions", "Dimensions"),
            ("size", "File size"),
            ("duration", "Length"),
            ("score", "Score"),
            ("people", "People"),
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
        for key in ("date", "dimensions", "size", "duration", "score", "people"):
            self.fields[key].setText("")
        self._set_strip(())
        self.play.setVisible(False)

    def _set_strip(self, strip) -> None:
        while self.strip_layout.count():
            widget = self.strip_layout.takeAt(0).widget()
            if widget is not None:
                widget.setParent(None)  # out of findChildren at once
                widget.deleteLater()
        for frame in strip:
            cell = QLabel(self.strip)
            cell.setObjectName("previewStripFrame")
            cell.setPixmap(QPixmap.fromImage(frame.image))
            cell.setToolTip(
                f"{duration_text(round(frame.time_s * 1000))} · score {frame.score:.3f}"
            )
            caption = QLabel(f"{duration_text(round(frame.time_s * 1000))} · {frame.score:.3f}")
            caption.setObjectName("previewStripTime")
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            box = QWidget(self.strip)
            column = QVBoxLayout(box)
            column.setContentsMargins(2, 2, 2, 2)
            column.addWidget(cell)
            column.addWidget(caption)
            self.strip_layout.addWidget(box)
        self.strip_layout.addStretch(1)
        self.strip.setVisible(bool(strip))

    def strip_times(self) -> list[str]:
        """The times under the strip's frames, as shown."""
        return [label.text() for label in self.strip.findChildren(QLabel, "previewStripTime")]

    def show_photo(self, image: QImage, details: PhotoDetails, strip=()) -> None:
        if details.path != self.path:
            return  # another photo was asked for meanwhile
        self._pixmap = QPixmap.fromImage(image)
        self._fit()
        video = details.duration_ms is not None
        self.fields["duration"].setText(
            f"{duration_text(details.duration_ms)} (shown at {details.time_s:.1f} s)"
            if video
            else "—"
        )
        self._set_strip(strip)
        self.play.setVisible(video)
        self.fields["date"].setText(details.date.replace("T", " ") if details.date else "unknown")
        self.fields["dimensions"].setText(f"{details.width} × {details.height} pixels")
        self.fields["size"].setText(human_size(details.size_bytes))
        self.fields["score"].setText(score_text(details.score, self.threshold))
        self.fields["people"].setText(", ".join(details.people) if details.people else "—")

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
