"""Copy a model package folder the user points at, as plain files and within bounds.

``shutil.copytree`` follows every link and reads every kind of file: a link to
``/dev/zero`` copies until the disk is full, and a folder that holds the library copies the
install's own staging folder into itself. So the folder is listed first, regular files only
(a link to a regular file is fine: Hugging Face's cache is made of them), no linked folders,
nothing from inside the library; the sizes are checked against the cap and the free space;
then each file is opened and checked again on its descriptor (it may have been swapped for
a FIFO since it was listed) and copied, counted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from photofind.errors import ModelError
from photofind.models.budget import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    FreeSpace,
    WriteBudget,
    free_space,
)


def _refuse(path: Path, why: str) -> ModelError:
    return ModelError(f"{path}: {why}; a model package folder holds plain files only")


def _list_files(source: Path, budget: WriteBudget) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    pending = [source]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise ModelError(f"cannot read the folder {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            path = Path(entry.path)
            budget.entry()
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                raise _refuse(path, f"cannot be read ({exc.strerror or exc})") from exc
            if stat.S_ISDIR(st.st_mode):
                if entry.is_symlink():
                    raise _refuse(path, "is a link to a folder")
                pending.append(path)
            elif stat.S_ISREG(st.st_mode):
                files.append((path, st.st_size))
            else:
                raise _refuse(
                    path, "is not a regular file (a device, FIFO, socket or a link to one)"
                )
    return files


def copy_package_folder(
    source: Path,
    dest: Path,
    *,
    library: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    free: FreeSpace = free_space,
) -> None:
    """Copy the folder ``source`` to the new folder ``dest`` (regular files, bounded).

    ``library``: the library folder, which ``source`` must not contain (``dest`` is in it).
    """
    source, dest = Path(source), Path(dest)
    # Linked folders are refused below, so containing the library is a matter of paths.
    if Path(library).resolve().is_relative_to(source.resolve()):
        raise ModelError(
            f"{source} contains this library ({library}); install from the package's own folder"
        )
    dest.mkdir(parents=True)
    budget = WriteBudget(
        str(source),
        dest,
        max_bytes=max_bytes,
        max_entries=max_entries,
        free=free,
        error=ModelError,
        verb="holds",
    )
    files = _list_files(source, budget)
    budget.declare(sum(size for _, size in files))
    for path, size in files:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Non-blocking: a FIFO swapped in since the listing must not hang the open.
        try:
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, flags)
        except OSError as exc:
            raise _refuse(path, f"cannot be opened ({exc.strerror or exc})") from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _refuse(path, "is no longer a regular file")
            budget.copy(fh, target, declared=size)
