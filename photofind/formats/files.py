"""Opening a user's file for reading: regular files only, never blocking on a FIFO."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


class NotARegularFile(OSError):
    """A path that names a named pipe, a device, a socket or a folder where a file was
    expected; ``strerror`` says which, as the scanner and the decoder report it."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")``, refusing anything but a regular file (:class:`NotARegularFile`).

    The file is opened non-blocking and its type checked on the opened descriptor, not on
    the name: a photo replaced by a named pipe between the scan and the decode would
    otherwise block its reader in ``open`` until some writer came along (forever), and a
    check of the name before opening races with that very replacement.
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs at a path
    flags = os.O_RDONLY | nonblock | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind(mode)
            if kind != "not a regular file":
                kind = f"it is {kind}, not a regular file"
            raise NotARegularFile(errno.EINVAL, kind, os.fspath(path))
        if nonblock:
            os.set_blocking(fd, True)  # no effect on a regular file's reads, but be plain
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike, n: int = 32) -> bytes:
    """The first ``n`` bytes of a regular file (b"" when it cannot be read)."""
    try:
        with open_regular_file(path) as fp:
            return fp.read(n)
    except OSError:
        return b""
