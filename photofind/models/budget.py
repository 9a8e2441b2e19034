"""How much an install may write: a byte cap, an entry cap and the free space of the disk.

An archive or a folder names its sizes before its bytes arrive (tar headers, the zip central
directory, ``stat``), so the sizes are checked first, before anything is written: a 2 KB
archive that declares 3 GiB is refused without filling the disk. Declared sizes can lie, so
the bytes are counted again while copying and the copy stops at the cap. A disk that fills
anyway (another program writing) ends the install with one sentence, never a raw errno.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path

from photofind.errors import PhotofindError

# A ViT-L/14 package is about 1.7 GB; this leaves room without inviting a disk filler.
DEFAULT_MAX_BYTES = 8 << 30
DEFAULT_MAX_ENTRIES = 10_000
# Model files barely compress (float weights: about 1.1 : 1; a tokenizer.json about 4 : 1),
# so an archive that unpacks to more than this many times its own size is a bomb, not a model.
MAX_RATIO = 100
# ... but a tiny archive may still unpack to this much (small packages, big tokenizers).
RATIO_FLOOR = 256 << 20
# Left free after an install so that the catalog and the rest of the system can still write.
FREE_SPACE_RESERVE = 1 << 20
COPY_BLOCK = 1 << 20

FreeSpace = Callable[[Path], int]


def free_space(path: Path) -> int:
    """Bytes an unprivileged writer can still put on the file system holding ``path``."""
    return shutil.disk_usage(path).free


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, a quota, or a file-size limit: the same story for the user."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def ratio_cap(archive_size: int, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """The most an archive of ``archive_size`` bytes may unpack to."""
    return min(max_bytes, max(RATIO_FLOOR, MAX_RATIO * archive_size))


class WriteBudget:
    """Counts entries and bytes written for one install into ``dest``.

    ``error``: the exception class raised (with a message naming ``what``).
    ``free``: the free-space function (injectable, so a test can play a small disk).
    ``verb``: how the messages say what the source does ("unpacks to", "holds").
    """

    def __init__(
        self,
        what: str,
        dest: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        free: FreeSpace = free_space,
        error: type[PhotofindError] = PhotofindError,
        verb: str = "unpacks to",
    ):
        self.what, self.dest, self.verb = what, Path(dest), verb
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.free, self.error = free, error
        self.entries = 0
        self.declared = 0
        self.written = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise self.error(
                f"{self.what}: more than {self.max_entries:,} entries; refused as unsafe"
            )

    def _too_big(self) -> PhotofindError:
        return self.error(
            f"{self.what}: {self.verb} more than {self.max_bytes:,} bytes; refused as unsafe"
        )

    def declare(self, size: int) -> None:
        """Before writing ``size`` more bytes: refuse what passes the cap or cannot fit."""
        if size < 0:
            raise self.error(f"{self.what}: an entry declares a negative size; refused")
        self.declared += size
        if self.declared > self.max_bytes:
            raise self._too_big()
        available = self.free(self.dest) - FREE_SPACE_RESERVE
        if size > available:
            raise self.error(
                f"{self.what}: needs {size:,} bytes but the disk holding {self.dest} has only "
                f"{max(available, 0):,} free; nothing was installed"
            )

    def disk_full(self, exc: OSError) -> PhotofindError:
        return self.error(
            f"{self.what}: the disk holding {self.dest} is full ({exc.strerror}) after "
            f"{self.written:,} bytes; the partial copy was deleted and nothing was installed"
        )

    def copy(self, source, target: Path, declared: int | None = None) -> None:
        """``source`` (a binary file object) into the new file ``target``, counted.

        ``declared``: the entry's own size; more bytes than that is a lie and is refused.
        """
        mine = 0
        try:
            with open(target, "xb") as out:
                while block := source.read(COPY_BLOCK):
                    mine += len(block)
                    self.written += len(block)
                    if declared is not None and mine > declared:
                        raise self.error(
                            f"{self.what}: {target.name} holds more than the {declared:,} "
                            "bytes it declares; refused"
                        )
                    if self.written > self.max_bytes:
                        raise self._too_big()
                    out.write(block)
        except OSError as exc:
            if is_disk_full(exc):
                raise self.disk_full(exc) from None
            raise
