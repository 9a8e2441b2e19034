"""Unpack a model archive (.tar.gz/.tgz/.tar/.zip) without trusting it.

An archive from the internet may try to write outside the target folder (``../``, absolute
names, a symlink pointing out followed by a file "inside" it), to exhaust the disk (a
small file that inflates to terabytes), or to plant device files. Model packages are plain
files in plain folders, so anything else is refused outright: no links of any kind, no
devices, no absolute or ``..`` names, and caps (:mod:`photofind.models.budget`) on the
number of entries and on the bytes: the declared sizes are checked against the cap and the
free space before anything is written, and the bytes are counted again while copying.

Compression checksums only protect what is read: tar stops at its end-of-archive marker,
before the gzip/xz trailer that holds the checksum, so the rest of the stream is read too
and a corrupt archive is refused instead of unpacking without a word.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from photofind.errors import PhotofindError
from photofind.models.budget import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    FreeSpace,
    WriteBudget,
    free_space,
    is_disk_full,
    ratio_cap,
)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# Deflate's output per read is bounded by zipfile; bzip2 and LZMA members are decompressed
# a whole read at a time (one megabyte of LZMA zeros is gigabytes), and nobody zips a model
# with them, so only these two methods are unpacked.
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_ZIP_METHOD_NAMES = {9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard", 99: "AES"}
# Everything the decompressors raise on damaged input.
_DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)

__all__ = ["ARCHIVE_SUFFIXES", "DEFAULT_MAX_BYTES", "ArchiveError", "extract", "is_archive"]


class ArchiveError(PhotofindError):
    """An archive is unreadable or holds something a model package must not."""


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def suffix_of(name: str) -> str | None:
    """The archive suffix ``name`` ends with (lower case), or None."""
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _safe_relative(archive: Path, name: str) -> PurePosixPath:
    # Zip names use '/', tar names too; a backslash is a Windows separator in disguise.
    rel = PurePosixPath(name.replace("\\", "/"))
    drive = bool(rel.parts) and ":" in rel.parts[0]  # C:/... from a Windows tool
    if rel.is_absolute() or name.startswith(("/", "\\")) or drive:
        raise ArchiveError(f"{archive}: entry {name!r} has an absolute path; refused")
    if any(part == ".." for part in rel.parts):
        raise ArchiveError(f"{archive}: entry {name!r} leaves the archive folder (..); refused")
    if "\0" in name:
        raise ArchiveError(f"{archive}: entry {name!r} has a NUL in its name; refused")
    parts = [p for p in rel.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


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
    free: FreeSpace = free_space,
) -> Path:
    """Unpack ``archive`` into the (new or empty) folder ``dest``; return ``dest``.

    At most ``max_bytes`` (and at most :data:`~photofind.models.budget.MAX_RATIO` times the
    archive's size) and ``max_entries`` entries. On any refusal the partly written ``dest``
    is removed and :class:`ArchiveError` raised.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} does not exist or is not a file")
    dest.mkdir(parents=True, exist_ok=True)
    budget = WriteBudget(
        str(archive),
        dest,
        max_bytes=ratio_cap(archive.stat().st_size, max_bytes),
        max_entries=max_entries,
        free=free,
        error=ArchiveError,
    )
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


def _damaged(archive: Path, budget: WriteBudget, exc: BaseException) -> ArchiveError:
    if isinstance(exc, FileExistsError):
        return ArchiveError(f"{archive}: entry {exc.filename} appears twice")
    if is_disk_full(exc):
        return budget.disk_full(exc)
    return ArchiveError(f"{archive} is damaged or truncated: {exc}")


def _place(
    archive: Path, dest: Path, budget: WriteBudget, name: str, is_link: bool, is_dir: bool
) -> Path | None:
    """The checks every entry of a tar or zip passes alike: counted, a safe relative name,
    no link. A folder is made here (None); else the path its file is unpacked to."""
    budget.entry()
    rel = _safe_relative(archive, name)
    if is_link:
        raise ArchiveError(
            f"{archive}: entry {name!r} is a link; model packages hold plain files only, refused"
        )
    if is_dir:
        _target(dest, rel).mkdir(parents=True, exist_ok=True)
        return None
    return _target(dest, rel)


def _not_plain(archive: Path, name: str) -> ArchiveError:
    return ArchiveError(f"{archive}: entry {name!r} is not a plain file or folder; refused")


def _extract_tar(archive: Path, dest: Path, budget: WriteBudget) -> None:
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except _DAMAGE as exc:
        raise ArchiveError(f"{archive} cannot be read as a tar archive: {exc}") from exc
    with tar:
        try:
            for member in tar:
                is_link = member.issym() or member.islnk()
                target = _place(archive, dest, budget, member.name, is_link, member.isdir())
                if target is None:
                    continue
                if not member.isfile():
                    raise _not_plain(archive, member.name)
                # Sparse members declare their full size here, which is what they unpack to.
                budget.declare(member.size)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ArchiveError(f"{archive}: entry {member.name!r} cannot be read")
                with source:
                    budget.copy(source, target, declared=member.size)
            _drain(tar, budget)
        except _DAMAGE as exc:
            raise _damaged(archive, budget, exc) from exc


def _drain(tar: tarfile.TarFile, budget: WriteBudget) -> None:
    """Read the compressed stream to its end, so its checksum (gzip CRC, xz check) is
    verified; what follows the tar's end counts towards the cap like any other byte."""
    stream = tar.fileobj
    if not isinstance(stream, (gzip.GzipFile, lzma.LZMAFile, bz2.BZ2File)):
        return  # a plain tar has no checksum to reach
    rest = 0
    while block := stream.read(1 << 20):
        rest += len(block)
        if budget.written + rest > budget.max_bytes:
            raise ArchiveError(
                f"{budget.what}: more than {budget.max_bytes:,} bytes of data; refused as unsafe"
            )


def _check_zip_entry(archive: Path, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise ArchiveError(
            f"{archive}: entry {info.filename!r} is encrypted; model packages cannot be "
            "password-protected, refused"
        )
    if info.compress_type not in _ZIP_METHODS:
        method = _ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise ArchiveError(
            f"{archive}: entry {info.filename!r} is compressed with {method}, which photofind "
            "does not unpack; repack the archive with plain deflate (zip's default)"
        )


def _extract_zip(archive: Path, dest: Path, budget: WriteBudget) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except _DAMAGE as exc:
        raise ArchiveError(f"{archive} cannot be read as a zip archive: {exc}") from exc
    with zf:
        infos = zf.infolist()
        for info in infos:
            _check_zip_entry(archive, info)
        # The central directory lists every size before any byte is written.
        budget.declare(sum(info.file_size for info in infos if not info.is_dir()))
        try:
            for info in infos:
                mode = info.external_attr >> 16
                target = _place(
                    archive, dest, budget, info.filename, stat.S_ISLNK(mode), info.is_dir()
                )
                if target is None:
                    continue
                # Zip writers often store permission bits only (no file type): a plain file.
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise _not_plain(archive, info.filename)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source:
                    budget.copy(source, target, declared=info.file_size)
        except (zipfile.LargeZipFile, *_DAMAGE) as exc:
            raise _damaged(archive, budget, exc) from exc
