"""Starting the desktop app: ``photofind gui`` (and ``photofind`` with no command)."""

from __future__ import annotations

import logging
import sys
import traceback

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from photofind import __version__

log = logging.getLogger(__name__)


def _install_excepthook(app: QApplication) -> None:
    """Uncaught exceptions are logged and shown; the app keeps running when it can."""

    def hook(kind, value, tb):
        log.error("uncaught exception", exc_info=(kind, value, tb))
        text = "".join(traceback.format_exception_only(kind, value)).strip()
        if QApplication.instance() is not None:
            QMessageBox.critical(None, "photofind: something went wrong", text)

    sys.excepthook = hook


def _log_to_file() -> None:
    from photofind.paths import log_dir

    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "photofind.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))


def run(library_dir, model=None, *, provider: str = "auto", start_indexing: bool = True) -> int:
    from photofind.gui import create_window

    _log_to_file()
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("photofind")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("photofind")
    _install_excepthook(app)
    window = create_window(library_dir, model, provider=provider)
    window.show()
    window.search_box.setFocus()
    if window.model is None:
        QTimer.singleShot(0, window.offer_model)
    elif start_indexing and window.library.folders():
        window.start_indexing()
    return app.exec()
