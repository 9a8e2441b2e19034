"""Starting the desktop app: ``photofind gui`` (and ``photofind`` with no command)."""

from __future__ import annotations

import logging
import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from photofind import __version__

log = logging.getLogger(__name__)


def log_to_file() -> logging.Handler:
    """Send INFO and above to ``photofind.log`` in the user log folder; returns the handler."""
    from photofind.paths import log_dir

    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "photofind.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return handler


def run(library_dir, model=None, *, provider: str = "auto", start_indexing: bool = True) -> int:
    log_to_file()
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("photofind")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("photofind")
    from photofind.gui.errors import ErrorReporter, open_window

    shown: list = []
    reporter = ErrorReporter(lambda: shown[0] if shown else None).install()
    window = open_window(library_dir, model, provider=provider)
    if window is None:
        return 2  # the library is in use and the user chose not to open it read-only
    shown.append(window)
    window.show()
    window.search_box.setFocus()
    if window.model is None:
        QTimer.singleShot(0, window.offer_model)
    elif start_indexing and window.library.folders():
        window.start_indexing()
    try:
        return app.exec()
    finally:
        reporter.uninstall()
