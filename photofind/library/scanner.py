"""The scanner: what changed on disk since the catalog last looked.

It walks the library's folders, compares every image file with the catalog by size and
mtime_ns, and recognises renamed and moved files by their partial content hash so they keep
their embeddings. It writes nothing: it returns a :class:`ScanResult` that
:meth:`Catalog.apply_scan` commits in one transaction.

What the walk tolerates, because real disks have all of it:

- symbolic links to folders are followed, but every folder is entered at most once, by
  ``(st_dev, st_ino)``: symlink loops and links back into the tree end there;
- a folder that cannot be listed is recorded in ``problems`` and its known photos are left
  alone (a permission hiccup must not delete vectors);
- a photo that cannot be stat'ed or read (broken link, link loop, permission) becomes a
  ``failed`` entry with a readable reason, so the user sees it;
- hidden (dot) and system folders (``@eaDir``, ``$RECYCLE.BIN``, ``lost+found`` ...) are
  skipped, and so are folders registered as library folders of their own;
- a library folder whose root is gone (unplugged drive) turns its photos ``offline``;
  they are not removed;
- files moved while the walk runs: a file that vanishes between the listing and its stat
  or hashing is left out (it is no longer there, it is not unreadable), and a new file
  whose content matches a catalogued file that is gone by then is that file moved,
  wherever the walk met the old path (already walked, or in a folder not scanned now).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from photofind.formats.kinds import SUPPORTED_EXTENSIONS
from photofind.library.catalog import Catalog, Folder, KnownFile
from photofind.library.hashing import partial_hash

# The one list of supported types (formats/kinds.py); the old name stays for its readers.
IMAGE_EXTENSIONS = SUPPORTED_EXTENSIONS

# Compared lower-case: Windows and NAS names vary in case.
SYSTEM_FOLDERS = frozenset(
    {
        "@eadir",  # Synology thumbnails
        "$recycle.bin",
        "system volume information",
        "lost+found",
        "#recycle",
        "#snapshot",
        "__macosx",
        "node_modules",
    }
)

_WIN_HIDDEN_OR_SYSTEM = 0x2 | 0x4  # FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM


@dataclass(frozen=True)
class FileInfo:
    folder_id: int
    path: str
    size: int
    mtime_ns: int
    phash: str | None


@dataclass(frozen=True)
class FailedFile:
    folder_id: int
    path: str
    reason: str


@dataclass(frozen=True)
class ScanProblem:
    """A folder that could not be walked; not fatal."""

    path: str
    reason: str


#: the kinds of change a scan finds: a :class:`ScanResult` lists them, a reconcile's report
#: counts them
CHANGE_KINDS = ("added", "updated", "moved", "removed", "restored", "failed", "offline_folders")


def any_change(result) -> bool:
    """Whether a scan's result (or a report of one) holds a change of any kind."""
    return any(getattr(result, kind) for kind in CHANGE_KINDS)


@dataclass
class ScanResult:
    """The difference between the disk and the catalog, ready for ``Catalog.apply_scan``."""

    added: list[FileInfo] = field(default_factory=list)
    #: (photo id, new stat): same path, different size or mtime: re-encode
    updated: list[tuple[int, FileInfo]] = field(default_factory=list)
    #: (photo id, new place): same content under a new path: keeps its embedding
    moved: list[tuple[int, FileInfo]] = field(default_factory=list)
    #: photo ids whose file is gone
    removed: list[int] = field(default_factory=list)
    #: photo ids that were offline and are back, unchanged
    restored: list[int] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    offline_folders: list[int] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return any_change(self)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _skip_folder(entry: os.DirEntry) -> bool:
    """Hidden and system folders. Raises ``OSError`` when the entry cannot be looked at."""
    name = entry.name
    if name.startswith(".") or name.lower() in SYSTEM_FOLDERS:
        return True
    attrs = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attrs & _WIN_HIDDEN_OR_SYSTEM)


def _reason(exc: OSError, path: str) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return (
            f"its path is {len(os.fsencode(path)):,} bytes long, more than this system lets "
            "a program name (PATH_MAX, 4,096 bytes on Linux): photofind cannot read it or "
            "what is inside; move it to a shorter path"
        )
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return "broken symbolic link"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


@dataclass
class _Walk:
    found: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (size, mtime)
    failed: list[FailedFile] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # folders we could not list


def walk_folder(
    root: str, folder_id: int, *, exclude: Iterable[str] = (), visited: set | None = None
) -> _Walk:
    """Every image file under ``root``: ``path -> (size, mtime_ns)``, plus failures."""
    out = _Walk()
    visited = set() if visited is None else visited
    excluded = {os.path.normcase(os.path.abspath(p)) for p in exclude}
    root_st = os.stat(root)
    visited.add((root_st.st_dev, root_st.st_ino))
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            out.problems.append(ScanProblem(folder, _reason(exc, folder)))
            out.unreadable.append(folder)
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                try:
                    if _skip_folder(entry) or os.path.normcase(entry.path) in excluded:
                        continue
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # gone since its parent was listed: nothing to walk
                except OSError as exc:
                    # Not silently: a folder too deep for a path, or unreadable, hides photos.
                    out.problems.append(ScanProblem(entry.path, _reason(exc, entry.path)))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in visited:  # a loop, or a second way into a folder already seen
                    continue
                visited.add(key)
                stack.append(entry.path)
                continue
            if entry.name.startswith(".") or not is_image_name(entry.name):
                continue
            try:
                st = entry.stat()
                if not stat.S_ISREG(st.st_mode):
                    out.failed.append(FailedFile(folder_id, entry.path, "not a regular file"))
                    continue
            except OSError as exc:
                if not _vanished(entry.path):
                    out.failed.append(FailedFile(folder_id, entry.path, _reason(exc, entry.path)))
                continue
            out.found[entry.path] = (st.st_size, st.st_mtime_ns)
    return out


def scan(
    catalog: Catalog,
    folders: Iterable[Folder] | None = None,
    *,
    hash_new: bool = True,
    hasher: Callable[[str, int], str] = partial_hash,
) -> ScanResult:
    """Compare ``folders`` (default: all of the library's) with the catalog.

    Moves are matched across all the folders scanned together, so a photo moved from one
    library folder to another keeps its vector too. With ``hash_new`` every new or changed
    file gets its partial hash now (128 KiB read), so that a later rename can be recognised.
    """
    all_folders = catalog.folders()
    folders = all_folders if folders is None else list(folders)
    result = ScanResult()
    missing: dict[str, KnownFile] = {}
    candidates: list[FileInfo] = []
    # The library's own folder (thumbnails, models) is never walked, even when it lies in
    # a photo folder: marked seen by its identity, it is skipped whichever path leads in
    # (a photo folder inside it, like the demo's, is walked from below it and never meets it).
    library_dir = catalog.path.parent
    visited: set = set()
    with contextlib.suppress(OSError):
        library_st = os.stat(library_dir)
        visited.add((library_st.st_dev, library_st.st_ino))
    for folder in folders:
        known = catalog.known_files(folder.id)
        if not os.path.isdir(folder.path):
            result.offline_folders.append(folder.id)
            result.problems.append(ScanProblem(folder.path, "folder is not reachable (offline)"))
            continue
        if is_library_folder(folder.path, library_dir):
            result.problems.append(
                ScanProblem(folder.path, "it is photofind's own library folder; not indexed")
            )
            continue
        others = [
            f.path for f in all_folders if f.id != folder.id and _is_inside(f.path, folder.path)
        ]
        walk = walk_folder(folder.path, folder.id, exclude=others, visited=visited)
        result.problems.extend(walk.problems)
        failed_paths = set()
        for f in walk.failed:
            failed_paths.add(f.path)
            k = known.get(f.path)
            if k is None or k.status != "failed":
                result.failed.append(f)
        for path, (size, mtime_ns) in walk.found.items():
            k = known.get(path)
            if k is None:
                candidates.append(FileInfo(folder.id, path, size, mtime_ns, None))
            elif k.size == size and k.mtime_ns == mtime_ns:
                if k.status == "offline":
                    result.restored.append(k.id)
                else:
                    result.unchanged += 1
            else:
                result.updated.append((k.id, FileInfo(folder.id, path, size, mtime_ns, None)))
        for path, k in known.items():
            if path in walk.found or path in failed_paths:
                continue
            if any(_is_inside(path, d) for d in walk.unreadable):
                continue  # cannot tell; leave it as it is
            missing[path] = k

    # Hash what is new or changed; match new files against vanished ones by content.
    by_content: dict[tuple[int, str], list[KnownFile]] = {}
    for k in missing.values():
        if k.phash:
            by_content.setdefault((k.size, k.phash), []).append(k)
    sizes_missing = {k.size for k in missing.values() if k.phash}

    def hashed(info: FileInfo) -> FileInfo | FailedFile:
        try:
            return FileInfo(
                info.folder_id, info.path, info.size, info.mtime_ns, hasher(info.path, info.size)
            )
        except OSError as exc:
            return FailedFile(info.folder_id, info.path, _reason(exc, info.path))

    moved_ids: set[int] = set()
    # A photo recorded as failed in this scan stays where it is: taken for moved as well,
    # it would follow the new path still marked failed, and never be retried there.
    failed_paths = {f.path for f in result.failed}
    sizes: list[set[int]] = []  # the catalog's file sizes, read once if a lookup is due
    for info in candidates:
        if not hash_new and info.size not in sizes_missing:
            result.added.append(info)
            continue
        h = hashed(info)
        if isinstance(h, FailedFile):
            if not _vanished(h.path):
                result.failed.append(h)
                failed_paths.add(h.path)
            continue
        twins = by_content.get((h.size, h.phash))
        if twins:
            old = twins.pop()
            del missing[old.path]
        else:
            if not sizes:
                sizes.append(catalog.file_sizes())
            old = _moved_away(catalog, h, moved_ids, failed_paths) if h.size in sizes[0] else None
        if old is None:
            result.added.append(h)
        else:
            result.moved.append((old.id, h))
            moved_ids.add(old.id)
    if hash_new:
        for i, (photo_id, info) in enumerate(result.updated):
            h = hashed(info)
            result.updated[i] = (photo_id, h if isinstance(h, FileInfo) else info)
    result.removed = [k.id for k in missing.values()]
    return result


def is_library_folder(path: str | os.PathLike, library_dir: str | os.PathLike) -> bool:
    """Whether ``path`` is the library folder ``library_dir`` itself (after resolving
    links). Photo folders may lie inside it (the demo's do) or around it, never be it:
    walked from there, the library's own thumbnails would be indexed."""
    real, library = os.path.realpath(path), os.path.realpath(library_dir)
    return os.path.normcase(real) == os.path.normcase(library)


def _vanished(path: str) -> bool:
    """Gone since the walk listed it (moved or deleted meanwhile; a broken link is still
    there, and unreadable)."""
    return not os.path.lexists(path)


def _moved_away(
    catalog: Catalog, new: FileInfo, taken: set[int], failed: set[str]
) -> KnownFile | None:
    """The catalogued file that ``new`` is, moved while the scan ran: same size and partial
    hash, and its path gone now. The walk missed the move when it saw the old path before
    the file left it, or when the old path lies in a library folder not scanned this time
    (the watcher scans the folders that had events); either way the photo keeps its vector
    instead of being encoded again under the new path and removed under the old. Offline
    photos stay where they are: their paths are gone with their drive."""
    for old in catalog.files_with_content(new.size, new.phash):
        if (
            old.id not in taken
            and old.path != new.path
            and old.path not in failed
            and old.status != "offline"
            and _vanished(old.path)
        ):
            return old
    return None


def _is_inside(path: str, folder: str) -> bool:
    path, folder = os.path.normcase(path), os.path.normcase(folder.rstrip(os.sep))
    return path != folder and path.startswith(folder + os.sep)
