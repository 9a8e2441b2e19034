"""The desktop app (PySide6). Everything Qt lives in this package."""

from __future__ import annotations

import os
from pathlib import Path


def create_window(library_dir, model=None, *, provider: str = "auto"):
    """Build the main window over ``library_dir`` without showing it.

    ``model`` is a loaded :class:`photofind.clip.ClipModel`, a model name or folder, or
    None for the library's active model (no model at all: search is off until one is
    installed). A QApplication must exist.
    """
    from photofind.clip import ClipModel, load_model
    from photofind.gui.main_window import MainWindow
    from photofind.library.library import Library
    from photofind.search import SearchEngine

    library_dir = Path(library_dir)
    if model is not None and not isinstance(model, ClipModel):
        model = load_model(os.fspath(model), provider=provider, library=library_dir)
    library = Library.open(library_dir)
    if model is not None:
        library.use_model(model)
    engine = SearchEngine(library, model) if model is not None else None
    window = MainWindow(library, model, engine, thumbnail_dir=library_dir / "thumbnails")
    window.destroyed.connect(library.close)
    return window
