"""Starting the desktop app: ``photofind gui`` (and ``photofind`` with no command)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle

from photofind import __version__
from photofind.gui.placement import fit_to_screen

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


class _PlainDialogButtons(QProxyStyle):
    """Fusion (Qt's own style, used where the desktop gives none) puts small 2000s-era
    bitmaps on OK and Cancel, pixelated at scale 2; GNOME and macOS show none either."""

    def styleHint(self, hint, option=None, widget=None, data=None):  # noqa: N802
        if hint == QStyle.StyleHint.SH_DialogButtonBox_ButtonsHaveIcons:
            return 0
        return super().styleHint(hint, option, widget, data)


def create_window(
    library_dir,
    model=None,
    *,
    provider: str = "auto",
    readonly: bool = False,
    watch_options=None,
):
    """Build the main window over ``library_dir`` without showing it.

    ``model`` is a loaded :class:`photofind.clip.ClipModel`, a model name or folder, or
    None for the library's active model (no model at all: search is off until one is
    installed). A QApplication must exist. ``readonly`` opens the library without its
    writer lock (no watching, no indexing: another process writes it). ``watch_options``
    (:class:`photofind.library.watcher.WatchOptions`) tune the watcher the window runs.
    Raises :class:`photofind.library.LibraryLockedError` when another process writes the
    library and ``readonly`` is false.
    """
    from photofind.clip import ClipModel, load_model
    from photofind.clip.verified import user_record
    from photofind.gui.main_window import MainWindow
    from photofind.gui.watching import ObservedLibrary
    from photofind.library.model_session import ModelSession
    from photofind.search import SearchEngine

    library_dir = Path(library_dir)
    if model is not None and not isinstance(model, ClipModel):
        from photofind import settings

        precision = settings.load(library_dir)["precision"]
        model = load_model(
            os.fspath(model),
            provider=provider,
            library=library_dir,
            verified=user_record(),
            precision=precision,
        )
    library = ObservedLibrary.open(library_dir, readonly=readonly)
    staged = session = None
    if model is not None:
        # The chosen model may be re-indexed for (or another process writes the library):
        # search with the model whose vectors the library holds, when it is here.
        session = ModelSession.open(library, model, provider=provider, verified=user_record())
        model, staged = session.active, session.staged
    engine = SearchEngine(library, model) if model is not None else None
    window = MainWindow(
        library,
        model,
        engine,
        thumbnail_dir=library_dir / "thumbnails",
        watch_options=watch_options,
        staged_model=staged,
        session=session,
    )
    window.destroyed.connect(library.close)
    # The window opens other windows (the demo) with this factory, handed in rather than
    # imported: main_window's modules sit below app.py, which builds them.
    window.create_window = create_window
    return window


def open_window(library_dir, model, *, provider: str = "auto", ask=None):
    """``create_window``, or — when another process writes the library — ask, then open it
    read-only (None when the user declines). ``ask`` defaults to the dialog
    :func:`photofind.gui.errors.ask_read_only`."""
    from photofind.gui.errors import ask_read_only
    from photofind.library import LibraryLockedError

    try:
        return create_window(library_dir, model, provider=provider)
    except LibraryLockedError as exc:
        log.warning("%s", exc)
        if not (ask or ask_read_only)(exc):
            return None
        return create_window(library_dir, model, provider=provider, readonly=True)


def run(library_dir, model=None, *, provider: str = "auto", start_indexing: bool = True) -> int:
    log_to_file()
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("photofind")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("photofind")
    if app.style().name().lower() == "fusion":
        app.setStyle(_PlainDialogButtons(app.style().name()))
    from photofind.gui.errors import ErrorReporter

    shown: list = []
    reporter = ErrorReporter(lambda: shown[0] if shown else None).install()
    window = open_window(library_dir, model, provider=provider)
    if window is None:
        return 2  # the library is in use and the user chose not to open it read-only
    shown.append(window)
    if fit_to_screen(window, window.size()):
        # Too big for this screen: fill it (a window manager then fits its frame in too).
        window.setWindowState(Qt.WindowState.WindowMaximized)
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
