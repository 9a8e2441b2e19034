"""Tooling that needs torch: CLIP checkpoint -> photofind model package, tiny-model training.

Nothing here is imported by the app. This ``__init__`` stays free of torch so that modules
which do not need it (image synthesis, the CLI's help) load without it; each module that does
imports torch itself.

Run ``python -m export --help`` for the subcommands.
"""

from __future__ import annotations

from photofind.errors import PhotofindError


class ExportError(PhotofindError):
    """A checkpoint, an architecture or an export step is wrong; the message says which."""


__all__ = ["ExportError"]
