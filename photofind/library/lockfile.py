"""One writer per library: an advisory lock on a small file, holding the writer's pid.

The operating system drops the lock when the process dies (even by SIGKILL), so a crashed
indexer never leaves a stale lock behind, unlike a "lock file exists" scheme. Readers do not
take it: SQLite's WAL mode lets them read while the writer writes.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from photofind.errors import PhotofindError

if os.name == "nt":  # pragma: no cover - exercised on Windows CI only
    import msvcrt
else:
    import fcntl

# Windows locks byte ranges and blocks reads of a locked range; lock a byte past the pid.
_WIN_LOCK_OFFSET = 4096


class LibraryLockedError(PhotofindError):
    """Another process is writing this library."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class LockFileError(PhotofindError):
    """The lock file is something photofind must not write through (a link, a pipe)."""


class ProcessLock:
    """Non-blocking exclusive lock on ``path``; :meth:`acquire` raises when it is held."""

    def __init__(self, path: str | os.PathLike, *, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = self._open()
        try:
            self._lock(fd)
        except OSError:
            pid = self._read_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid else "pid unknown"
            raise LibraryLockedError(
                f"{self.what} is being written by another photofind process ({holder}); "
                f"wait for it to finish, or open the library read-only",
                pid,
            ) from None
        # Only the holder writes its pid, after locking: a loser must not clobber it.
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _open(self) -> int:
        """The lock file, opened for writing only when it is a plain file of its own.

        The holder truncates it and writes its pid: through a symbolic link (or a hard
        link) planted in the library folder that would overwrite whatever file it points
        to. ``O_NOFOLLOW`` refuses a link in the last component at open time, with no race
        between a check and the open; the type and link count are checked on the opened
        descriptor. ``O_NONBLOCK`` keeps a named pipe put there from blocking the open.
        """
        if os.name == "nt" and self.path.is_symlink():  # pragma: no cover - no O_NOFOLLOW
            raise LockFileError(self._refusal("is a symbolic link"))
        nonblock = getattr(os, "O_NONBLOCK", 0)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        flags |= nonblock | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP or self.path.is_symlink():
                raise LockFileError(self._refusal("is a symbolic link")) from None
            raise LockFileError(f"cannot open the lock file {self.path}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LockFileError(self._refusal("is not a regular file"))
            if st.st_nlink > 1:
                raise LockFileError(self._refusal(f"has {st.st_nlink} hard links"))
            if nonblock:
                os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refusal(self, what: str) -> str:
        return (
            f"{self.path} {what}: photofind will not use it as the lock file of "
            f"{self.what}, since writing it would change another file; remove it (photofind "
            "makes a new one)"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            self._unlock(fd)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    @staticmethod
    def _lock(fd: int) -> None:
        if os.name == "nt":  # pragma: no cover
            os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    @staticmethod
    def _unlock(fd: int) -> None:
        if os.name == "nt":  # pragma: no cover
            os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _read_pid(fd: int) -> int | None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None
