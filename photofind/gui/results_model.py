"""The results grid's model: one row per search result, in rank order."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QModelIndex, QRect, QSize, QStringListModel, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QIcon, QImage, QPainter, QPixmap

from photofind.formats.video import duration_text
from photofind.gui.plaintext import tooltip as plain_tooltip
from photofind.gui.thumbnails import ThumbnailLoader

PathRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2
PhotoIdRole = Qt.ItemDataRole.UserRole + 3

# Scaled icons kept for repainting; a screenful at the smallest zoom is a few hundred.
MAX_SCALED_ICONS = 1500


#: the matching frames a video's preview strip shows at most
STRIP_FRAMES = 6


@dataclass(frozen=True)
class Row:
    path: str
    score: float
    photo_id: int | None = None
    #: a video hit: the time of its best frame (its thumbnail), in seconds
    time_s: float | None = None
    #: a video's length in ms (the grid's badge)
    duration_ms: int | None = None
    #: a video hit's best frames for the query, ``(time in s, score)``, best first
    frames: tuple = ()
    #: files of the same shot shown through this one (its RAW, its Live Photo clip)
    companions: tuple[str, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.time_s is not None or self.duration_ms is not None


def result_row(engine, found, result) -> Row:
    """A search result as a row of the grid; a video's with its best frames for the query
    (read from the catalog: call it off the GUI thread)."""
    frames: tuple = ()
    if result.time_s is not None and found.vector is not None:
        frames = tuple(engine.frames(result.photo_id, found.vector)[:STRIP_FRAMES])
    return Row(
        result.path,
        float(result.score),
        result.photo_id,
        result.time_s,
        result.duration_ms,
        frames,
        tuple(result.companions),
    )


def badge_text(row: Row) -> str:
    """What a video's cell shows over its picture: a play mark and the length."""
    return f"▶ {duration_text(row.duration_ms)}".strip() if row.is_video else ""


def display_name(row: Row) -> str:
    """The cell's name: the file's, and the kinds of its companions ("IMG_1.JPG + DNG")."""
    name = os.path.basename(row.path)
    if not row.companions:
        return name
    kinds = sorted({os.path.splitext(c)[1][1:].upper() for c in row.companions})
    return f"{name} + {' + '.join(kinds)}"


def score_line(score: float, threshold: float | None) -> str:
    """ "score 0.468", and below or above which cut-off, for a cell's tooltip."""
    if threshold is None:
        return f"score {score:.3f}"
    side = "above" if score >= threshold else "below"
    return f"score {score:.3f} ({side} the relevance cut-off {threshold:.3f})"


def _placeholder(size: int, colour: QColor) -> QPixmap:
    pix = QPixmap(size, size)
    pix.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pix)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawRoundedRect(4, 4, size - 8, size - 8, 8, 8)
    painter.end()
    return pix


class ResultsModel(QStringListModel):
    """The rows, with the count and the names kept on the C++ side (a string list), so
    that a repaint calls into Python once per painted cell (:meth:`multiData`) and never
    for the row count, which Qt asks for on every index it makes. Each call into Python
    must take the GIL, and while the indexer's threads run Python each take can wait:
    the fewer a repaint makes, the less the grid stutters while indexing. The view must
    not edit the names (``NoEditTriggers``); :meth:`flags` says they are read-only."""

    def __init__(self, thumbnails: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self._rows: list[Row] = []
        self._threshold: float | None = None
        self._row_of: dict[str, int] = {}
        self._thumbs = thumbnails
        self._icon_size = 160
        self._scaled: OrderedDict[str, QIcon] = OrderedDict()
        self._placeholder = _placeholder(self._icon_size, QColor(128, 128, 128, 60))
        self._broken = _placeholder(self._icon_size, QColor(200, 60, 60, 80))
        thumbnails.ready.connect(self._thumbnail_ready)

    # -- content --------------------------------------------------------------------------

    def set_rows(self, rows: list[Row]) -> None:
        self._rows = list(rows)
        self._row_of = {r.path: i for i, r in enumerate(self._rows)}
        # The scaled icons stay (an LRU by path): a re-run search mostly shows the same
        # photos, and scaling a screenful again would cost the GUI thread tens of ms.
        self._thumbs.clear_queue()
        self.setStringList([os.path.basename(r.path) for r in self._rows])  # the reset

    def set_threshold(self, threshold: float | None) -> None:
        """The relevance cut-off the rows were found under, for their tooltips."""
        self._threshold = threshold

    def tooltip(self, index: QModelIndex) -> str:
        """What hovering a cell shows: the path and the score against the cut-off."""
        row = self.row_at(index)
        if row is None:
            return ""
        return plain_tooltip(f"{row.path}\n{score_line(row.score, self._threshold)}")

    def rows(self) -> list[Row]:
        return list(self._rows)

    def paths(self):
        return self._row_of.keys()

    def index_of(self, path: str) -> QModelIndex:
        row = self._row_of.get(path)
        return self.index(row) if row is not None else QModelIndex()

    def row_at(self, index: QModelIndex) -> Row | None:
        return self._rows[index.row()] if index.isValid() else None

    def set_icon_size(self, size: int) -> None:
        if size == self._icon_size:
            return
        self._icon_size = size
        self._scaled.clear()
        self._placeholder = _placeholder(size, QColor(128, 128, 128, 60))
        self._broken = _placeholder(size, QColor(200, 60, 60, 80))
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))

    # -- the item model -----------------------------------------------------------------------

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        return self._value(self._rows[index.row()], role)

    def multiData(self, index: QModelIndex, roles) -> None:  # noqa: N802 - Qt naming
        """Every role a cell's paint asks for, in one call into Python instead of seven
        (the delegate asks for display, decoration, font, colours, alignment, check state).
        Each call from Qt into Python must take the GIL; while the indexer's threads run
        Python, each take can wait, so fewer of them keep a repaint short."""
        if not index.isValid() or index.row() >= len(self._rows):
            return
        row = self._rows[index.row()]
        for i in range(roles.size()):
            slot = roles[i]
            value = self._value(row, slot.role())
            if value is not None:
                slot.setData(value)

    def _value(self, row: Row, role: int):
        if role == Qt.ItemDataRole.DisplayRole:
            return display_name(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            # The grid's own tooltip adds the score: tooltip().
            return plain_tooltip("\n".join((row.path, *(f"with {c}" for c in row.companions))))
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icon(row)
        if role == PathRole:
            return row.path
        if role == ScoreRole:
            return row.score
        if role == PhotoIdRole:
            return row.photo_id
        if role == Qt.ItemDataRole.AccessibleTextRole:
            video = f", video {duration_text(row.duration_ms)}" if row.is_video else ""
            return f"{display_name(row)}{video}, {score_line(row.score, self._threshold)}"
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self._icon_size + 16, self._icon_size + 36)
        return None

    def _icon(self, row: Row):
        # A video's picture is its best frame for this search: keyed by the time too.
        key = (row.path, row.time_s)
        icon = self._scaled.get(key)
        if icon is not None:
            self._scaled.move_to_end(key)
            return icon
        image: QImage | None = self._thumbs.get(row.path, row.time_s)
        if image is None:
            if self._thumbs.error(row.path, row.time_s):
                return self._broken
            return self._placeholder
        icon = QIcon(self._square(image, badge_text(row)))
        self._scaled[key] = icon
        if len(self._scaled) > MAX_SCALED_ICONS:
            self._scaled.popitem(last=False)
        return icon

    def _square(self, image: QImage, badge: str = "") -> QPixmap:
        """The thumbnail centred on a square, transparent pixmap: every cell's picture has
        one size, so the names under them line up. Drawn at the screen's pixel ratio, so
        it stays sharp on a HiDPI screen. ``badge``: a video's "▶ 0:42", drawn in the
        picture's bottom-left corner."""
        ratio = QGuiApplication.instance().devicePixelRatio() if QGuiApplication.instance() else 1
        side = round(self._icon_size * ratio)
        scaled = QPixmap.fromImage(image).scaled(
            side,
            side,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        pix = QPixmap(side, side)
        pix.fill(QColor(0, 0, 0, 0))
        painter = QPainter(pix)
        left, top = (side - scaled.width()) // 2, (side - scaled.height()) // 2
        painter.drawPixmap(left, top, scaled)
        if badge:
            _draw_badge(painter, badge, QRect(left, top, scaled.width(), scaled.height()), ratio)
        painter.end()
        pix.setDevicePixelRatio(ratio)
        return pix

    def _thumbnail_ready(self, path: str) -> None:
        row = self._row_of.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


def _draw_badge(painter: QPainter, text: str, picture: QRect, ratio: float) -> None:
    """White text on a dark rounded box in the picture's bottom-left corner."""
    font = QFont(painter.font())
    font.setPixelSize(max(9, round(11 * ratio)))
    font.setBold(True)
    painter.setFont(font)
    metrics = painter.fontMetrics()
    pad = round(3 * ratio)
    width = metrics.horizontalAdvance(text) + 2 * pad
    height = metrics.height() + pad
    box = QRect(picture.left() + pad, picture.bottom() - height - pad, width, height)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 170))
    painter.drawRoundedRect(box, 4 * ratio, 4 * ratio)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
