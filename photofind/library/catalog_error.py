"""The catalog's error, in a module of its own: catalog.py and the record mixins it is built
from (face_records.py) both raise it, and neither may import the other for it."""

from __future__ import annotations

from photofind.errors import PhotofindError


class CatalogError(PhotofindError):
    """The catalog is missing, unreadable, or asked to do something inconsistent."""
