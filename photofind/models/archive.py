"""Unpack a model archive (.tar.gz/.tgz/.tar/.zip) without trusting it.

An archive from the internet may try to write outside the target folder (``../``, absolute
names, a symlink pointing out followed by a file "inside" it), to exhaust the disk (a
small file that inflates to terabytes), or to plant device files. Model packages are plain
files in plain folders, so anything else is refused outright: no links of any kind, no
devices, no absolute or ``..`` names, and a cap on the number of entries and on the bytes
actually written (counted while copying, not taken from the archive's own headers).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from photofind.errors import PhotofindError

# A ViT-L/14 package is about 1.7 GB; this leaves room without inviting a disk filler.
DEFAULT_MAX_BYTES = 8 << 30
DEFAULT_MAX_ENTRIES = 10_000
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class ArchiveError(PhotofindError):
    """An archive is unreadable or holds something a model package must not."""


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _safe_relative(archive: Path, name: str) -> PurePosixPath:
    # Zip names use '/', tar names too; a backslash is a Windows separator in disguise.
    rel = PurePosixPath(name.replace("\\", "/"))
    drive = bool(rel.parts) and ":" in rel.parts[0]  # C:/... from a Windows tool
    if rel.is_absolute() or name.startswith(("/", "\\")) or drive:
        raise ArchiveError(f"{archive}: entry {name!r} has an absolute path; refused")
    if any(part == ".." for part in rel.parts):
        raise ArchiveError(f"{archive}: entry {name!r} leaves the archive folder (..); refused")
    parts = [p for p in rel.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


class _Budget:
    def __init__(self, archive: Path, max_bytes: int, max_entries: int):
        self.archive, self.max_bytes, self.max_entries = archive, max_bytes, max_entries
        self.bytes = 0
        self.entries = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise ArchiveError(
                f"{self.archive}: more than {self.max_entries:,} entries; refused as unsafe"
            )

    def copy(self, source, target: Path) -> None:
        with open(target, "xb") as out:
            while block := source.read(1 << 20):
                self.bytes += len(block)
                if self.bytes > self.max_bytes:
                    raise ArchiveError(
                        f"{self.archive}: unpacks to more than {self.max_bytes:,} bytes; "
                        "refused as unsafe"
                    )
                out.write(block)


def _target(dest: Path, rel: PurePosixPath) -> Path:
    target = dest.joinpath(*rel.parts)
    # Belt and braces: after the checks above this can only fail through a bug.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise ArchiveError(f"entry {rel} would land outside {dest}")
    return target


def extract(
    archive: str | Path,
    dest: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Path:
    """Unpack ``archive`` into the (new or empty) folder ``dest``; return ``dest``.

    On any refusal the partly written ``dest`` is removed and :class:`ArchiveError` raised.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} does not exist or is not a file")
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(archive, max_bytes, max_entries)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest, budget)
        elif is_archive(archive):
            _extract_tar(archive, dest, budget)
        else:
            raise ArchiveError(
                f"{archive}: not a known archive type (expected {', '.join(ARCHIVE_SUFFIXES)})"
            )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{archive} cannot be read as a tar archive: {exc}") from exc
    with tar:
        try:
            for member in tar:
                budget.entry()
                rel = _safe_relative(archive, member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(
                        f"{archive}: entry {member.name!r} is a link; model packages hold "
                        "plain files only, refused"
                    )
                if member.isdir():
                    _target(dest, rel).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise ArchiveError(
                        f"{archive}: entry {member.name!r} is not a plain file or folder; refused"
                    )
                target = _target(dest, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ArchiveError(f"{archive}: entry {member.name!r} cannot be read")
                with source:
                    budget.copy(source, target)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, FileExistsError):
                raise ArchiveError(f"{archive}: entry {exc.filename} appears twice") from exc
            raise ArchiveError(f"{archive} is damaged or truncated: {exc}") from exc


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{archive} cannot be read as a zip archive: {exc}") from exc
    with zf:
        try:
            for info in zf.infolist():
                budget.entry()
                rel = _safe_relative(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ArchiveError(
                        f"{archive}: entry {info.filename!r} is a link; model packages hold "
                        "plain files only, refused"
                    )
                if info.is_dir():
                    _target(dest, rel).mkdir(parents=True, exist_ok=True)
                    continue
                # Zip writers often store permission bits only (no file type): a plain file.
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise ArchiveError(
                        f"{archive}: entry {info.filename!r} is not a plain file; refused"
                    )
                target = _target(dest, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source:
                    budget.copy(source, target)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
            if isinstance(exc, FileExistsError):
                raise ArchiveError(f"{archive}: entry {exc.filename} appears twice") from exc
            raise ArchiveError(f"{archive} is damaged or truncated: {exc}") from exc
