"""Where photofind keeps things, and where it finds its own data files.

Everything comes from platformdirs, overridable with ``PHOTOFIND_HOME`` or ``--library``.
Data files (the bundled tiny model, icons) are found through :func:`resources_dir`, which
works from a source checkout, an installed wheel and a frozen bundle alike.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "photofind"


def library_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder holding the catalog, the index and the thumbnail cache."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("PHOTOFIND_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def models_dir(library: Path | None = None) -> Path:
    """Installed model packages live beside the library they serve."""
    return (library or library_dir()) / "models"


def log_dir() -> Path:
    env = os.environ.get("PHOTOFIND_HOME")
    if env:
        return Path(env).expanduser() / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Things photofind can always make again (the record of verified model files)."""
    env = os.environ.get("PHOTOFIND_HOME")
    if env:
        return Path(env).expanduser() / "cache"
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def resources_dir() -> Path:
    """The ``resources/`` folder: beside the package in a checkout, inside a bundle."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "resources", here / "resources"):
        if candidate.is_dir():
            return candidate
    return here.parent / "resources"


def bundled_models_dir() -> Path:
    return resources_dir() / "models"
