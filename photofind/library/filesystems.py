"""What kind of file system holds a path: network file systems and read-only mounts.

SQLite's WAL mode keeps its readers and its writer in step through a shared-memory file
(``-shm``) that every process maps. Over SMB, NFS and the like each machine maps its own
copy, so a reader on one and the writer on another do not see each other's marks: the
documented result is a corrupt catalog. Locally, on the other hand, WAL is what lets a
search run while photos are committed. So the catalog asks here where it lives.
"""

from __future__ import annotations

import os
import sys

#: Linux's table of mounts; a module constant so that a test can give a generated one.
MOUNTINFO = "/proc/self/mountinfo"

#: File system types (as ``/proc/self/mountinfo`` names them) that reach another machine.
NETWORK_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "coda",
        "9p",  # WSL's Windows drives, VM shares
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.davfs2",
        "fuse.glusterfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.smbnetfs",
        "fuse.curlftpfs",
    }
)


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | os.PathLike) -> str | None:
    """The file system type of the mount holding ``path`` (Linux), or None when unknown."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = _unescape(fields[4])
        # Later lines are later mounts: one mounted over another at the same point wins.
        if _inside(real, mount_point) and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0]
    return best_type


def _windows_network_drive(path: str) -> bool:  # pragma: no cover - Windows only
    import ctypes

    full = os.path.abspath(path)
    if full.startswith("\\\\"):
        return True  # a UNC path: \\server\share
    drive_remote = 4
    return ctypes.windll.kernel32.GetDriveTypeW(os.path.splitdrive(full)[0] + "\\") == drive_remote


def network_filesystem(path: str | os.PathLike) -> str | None:
    """The type of the network file system holding ``path`` (e.g. ``"nfs4"``, ``"cifs"``),
    or None when it is local or cannot be told (macOS, whose mounts are not read here)."""
    if sys.platform == "win32":  # pragma: no cover
        return "smb" if _windows_network_drive(os.fspath(path)) else None
    fs_type = filesystem_type(path)
    return fs_type if fs_type in NETWORK_TYPES else None


def mounted_readonly(path: str | os.PathLike) -> bool:
    """Whether the file system holding ``path`` is mounted read-only (a DVD, a write-
    protected card, a read-only bind or network mount)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False
