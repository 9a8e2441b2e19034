"""Exception types shared by every layer.

Each one carries a message meant for a person: the CLI prints ``str(exc)`` as its one
line, the GUI shows it in a dialog.
"""


class PhotofindError(Exception):
    """Base class of every error photofind raises on purpose."""


class ModelError(PhotofindError):
    """A model package is missing, incomplete, corrupt or inconsistent."""


class ProviderError(PhotofindError):
    """The requested ONNX Runtime execution provider cannot be used."""


class ImageError(PhotofindError):
    """A photo cannot be read or decoded."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class ImageTooLarge(ImageError):
    """A photo has more pixels than the decompression-bomb guard allows."""
