"""What the app does with errors nobody caught, and with a library another process writes.

- Uncaught exceptions on any thread (``sys.excepthook`` for the GUI thread,
  ``threading.excepthook`` for the others) are logged with their traceback to the user log
  folder and shown in a dialog; the app keeps running. A worker thread never touches a
  widget: its report crosses to the GUI thread by a queued signal.
- The dialog is non-modal (an error must not block the event loop, nor a test), named
  ``errorDialog`` so that automation finds it; the function that shows it is injectable.
- A second writer gets :class:`LibraryLockedError`: the app says who holds the library and
  offers to open it read-only (searching works; watching and indexing are left to the
  holder).
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from photofind.gui.plaintext import plain_box

log = logging.getLogger(__name__)


def show_error_dialog(parent: QWidget | None, title: str, text: str, details: str = "") -> None:
    """A non-modal error box that deletes itself when closed."""
    box = plain_box(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorDialog")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.NonModal)
    if details:
        box.setDetailedText(details)
    box.show()


class ErrorReporter(QObject):
    """Installs the hooks; ``show(title, text, details)`` runs on the GUI thread."""

    reported = Signal(str, str, str)  # title, text, details

    def __init__(
        self,
        parent_widget: Callable[[], QWidget | None] = lambda: None,
        show: Callable[[str, str, str], None] | None = None,
    ):
        super().__init__()
        self._parent_widget = parent_widget
        self.show = show or (lambda t, x, d: show_error_dialog(self._parent_widget(), t, x, d))
        self.reported.connect(lambda t, x, d: self.show(t, x, d))
        self._saved: tuple | None = None

    def install(self) -> ErrorReporter:
        self._saved = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook
        return self

    def uninstall(self) -> None:
        if self._saved is not None:
            sys.excepthook, threading.excepthook = self._saved
            self._saved = None

    def _excepthook(self, kind, value, tb) -> None:
        self.report(kind, value, tb, where="the app")

    def _thread_excepthook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "a worker thread"
        self.report(args.exc_type, args.exc_value, args.exc_traceback, where=f"thread {name}")

    def report(self, kind, value, tb, *, where: str) -> None:
        log.error("uncaught exception in %s", where, exc_info=(kind, value, tb))
        text = "".join(traceback.format_exception_only(kind, value)).strip()
        details = "".join(traceback.format_exception(kind, value, tb))
        # Emitting from a worker thread queues the call onto the GUI thread.
        self.reported.emit(
            "photofind: something went wrong",
            f"{text}\n\n(in {where}; the details are in the log file. photofind keeps running.)",
            details,
        )


def ask_read_only(error: Exception, parent: QWidget | None = None) -> bool:
    """The library is locked by another writer: open it read-only? (modal, at start-up)"""
    holder = f" (process {error.pid})" if getattr(error, "pid", None) else ""
    box = plain_box(
        QMessageBox.Icon.Warning,
        "This library is in use",
        f"Another photofind{holder} is writing this library: only one app or command may "
        "change it at a time.",
        QMessageBox.StandardButton.NoButton,
        parent,
    )
    box.setObjectName("libraryLockedDialog")
    box.setInformativeText(
        f"{error}\n\nYou can open it read-only: searching works, but new photos are not "
        "added until the other photofind ends."
    )
    read_only = box.addButton("Open read-only", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.exec()
    return box.clickedButton() is read_only
