"""The desktop app (PySide6). Everything Qt lives in this package."""

from __future__ import annotations


def __getattr__(name: str):
    # ``from photofind.gui import create_window``: importing the package alone loads no Qt.
    if name == "create_window":
        from photofind.gui.app import create_window

        return create_window
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
