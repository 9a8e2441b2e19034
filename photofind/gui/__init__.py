"""The desktop app (PySide6). Everything Qt lives in this package."""

from __future__ import annotations

import os
from pathlib import Path


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
    from photofind.gui.main_window import MainWindow
    from photofind.gui.watching import ObservedLibrary
    from photofind.search import SearchEngine

    library_dir = Path(library_dir)
    if model is not None and not isinstance(model, ClipModel):
        model = load_model(os.fspath(model), provider=provider, library=library_dir)
    library = ObservedLibrary.open(library_dir, readonly=readonly)
    staged = None
    if model is not None:
        # The chosen model may be re-indexed for (or another process writes the library):
        # search with the model whose vectors the library holds, when it is here.
        model, staged = library.choose_model(model, provider=provider)
    engine = SearchEngine(library, model) if model is not None else None
    window = MainWindow(
        library,
        model,
        engine,
        thumbnail_dir=library_dir / "thumbnails",
        watch_options=watch_options,
        staged_model=staged,
    )
    window.destroyed.connect(library.close)
    return window
