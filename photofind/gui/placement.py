"""Where the main window opens: inside the screen's free area, where it was last time.

The window used to ask for 1280×800 whatever the screen: on a 1280×800 screen with a panel,
the title bar and the panel pushed the status bar (indexing progress, Pause, "Search
failed") below the edge. Now its *frame* — the window with its title bar and borders — is
fitted into the screen's available geometry (the screen less panels and docks), before it
is shown with a guess of the frame and, once shown, with the real one.

The size, position and maximised state are the library's ``gui.window`` setting
(:mod:`photofind.settings` checks it), written when the window closes; a position on a
screen that is gone is moved onto one that is there.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QEvent, QMargins, QObject, QRect, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QWidget

from photofind import settings

log = logging.getLogger(__name__)

DEFAULT_SIZE = QSize(1280, 800)
#: Room kept for the frame before the window is shown (title bar and borders are only
#: known afterwards, and differ by desktop); the real frame is fitted once it is shown.
FRAME_GUESS = QMargins(4, 36, 4, 4)
# A window manager frames a new window a little after it is shown: look again then.
RECHECK_MS = 300


def fitted(frame: QRect, available: QRect) -> QRect:
    """``frame`` shrunk to fit ``available`` and moved inside it (the nearest place)."""
    width = min(frame.width(), available.width())
    height = min(frame.height(), available.height())
    x = min(max(frame.x(), available.x()), available.x() + available.width() - width)
    y = min(max(frame.y(), available.y()), available.y() + available.height() - height)
    return QRect(x, y, width, height)


def saved_placement(library: Path) -> dict | None:
    """The window's last geometry stored in ``library`` (None: none, or not usable)."""
    return settings.load(library)["gui.window"]


def save_placement(window: QWidget, library: Path) -> None:
    """Store ``window``'s geometry (its normal one when maximised) in ``library``."""
    maximized = bool(window.windowState() & Qt.WindowState.WindowMaximized)
    rect = window.normalGeometry() if maximized else window.geometry()
    if rect.width() <= 0 or rect.height() <= 0:
        rect = window.geometry()
    geometry = {
        "x": rect.x(),
        "y": rect.y(),
        "width": rect.width(),
        "height": rect.height(),
        "maximized": maximized,
    }
    try:
        settings.update(library, {"gui.window": geometry})
    except Exception as exc:  # noqa: BLE001 - closing must not fail over a settings file
        log.warning("window placement not saved: %s", exc)


def _screen_for(rect: QRect | None, window: QWidget):
    if rect is not None:
        screen = QGuiApplication.screenAt(rect.center())
        if screen is not None:
            return screen
    return window.screen() or QGuiApplication.primaryScreen()


def place(window: QWidget, saved: dict | None) -> None:
    """Size and position ``window`` before it is shown: where it was (``saved``), else the
    default size centred; either way inside its screen's available geometry."""
    rect = None
    if saved is not None:
        rect = QRect(saved["x"], saved["y"], saved["width"], saved["height"])
    screen = _screen_for(rect, window)
    if screen is None:  # no screen at all (never on a desktop): the size alone
        window.resize(DEFAULT_SIZE)
        return
    available = screen.availableGeometry()
    if rect is None:
        size = DEFAULT_SIZE.grownBy(FRAME_GUESS)
        rect = QRect(0, 0, size.width(), size.height())
        rect.moveCenter(available.center())
    else:
        rect = rect.marginsAdded(FRAME_GUESS)
    client = fitted(rect, available).marginsRemoved(FRAME_GUESS)
    window.setGeometry(client)
    if saved is not None and saved.get("maximized") is True:
        window.setWindowState(window.windowState() | Qt.WindowState.WindowMaximized)
    window.installEventFilter(_FitOnShow(window))


def keep_on_screen(window: QWidget) -> None:
    """Fit the shown window's real frame into its screen's available geometry."""
    if window.windowState() & (Qt.WindowState.WindowMaximized | Qt.WindowState.WindowFullScreen):
        return  # the window manager fits those
    screen = window.screen()
    if screen is None or not window.isVisible():
        return
    frame = window.frameGeometry()
    target = fitted(frame, screen.availableGeometry())
    if target == frame:
        return
    margins = QMargins(
        window.geometry().left() - frame.left(),
        window.geometry().top() - frame.top(),
        frame.right() - window.geometry().right(),
        frame.bottom() - window.geometry().bottom(),
    )
    client = target.marginsRemoved(margins)
    window.resize(client.size())
    window.move(target.topLeft())  # move() places the frame's corner


class _FitOnShow(QObject):
    """Fits the frame once it is known: when the window shows, and a little later."""

    def __init__(self, window: QWidget):
        super().__init__(window)
        self._window = window

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if watched is self._window and event.type() == QEvent.Type.Show:
            window = self._window
            QTimer.singleShot(0, window, lambda: keep_on_screen(window))
            QTimer.singleShot(RECHECK_MS, window, lambda: keep_on_screen(window))
        return False


def fit_to_screen(widget: QWidget, wanted: QSize, *, share: float = 1.0) -> bool:
    """Size ``widget`` to ``wanted``, or to ``share`` of its screen's free area where that is
    smaller (a 1280×800 window is taller than a 2560×1440 screen at scale 2, or a laptop's
    screen under its panel). Returns True when the screen was the limit."""
    screen = widget.screen() or QApplication.primaryScreen()
    if screen is None:
        widget.resize(wanted)
        return False
    free = screen.availableGeometry().size()
    limit = QSize(int(free.width() * share), int(free.height() * share))
    widget.resize(wanted.boundedTo(limit))
    return wanted.width() > limit.width() or wanted.height() > limit.height()
