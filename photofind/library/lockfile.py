"""One writer per library: an advisory lock on a small file, holding the writer's pid.

The operating system drops the lock when the process dies (even by SIGKILL), so a crashed
indexer never leaves a stale lock behind, unlike a "lock file exists" scheme. Readers do not
take it: SQLite's WAL mode lets them read while the writer writes.
"""

from __future__ import annotations

import os
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


class ProcessLock:
    """Non-blocking exclusive lock on ``path``; :meth:`acquire` raises when it is held."""

    def __init__(self, path: str | os.PathLike, *, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
