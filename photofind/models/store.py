"""The model store: install, list, choose and remove model packages of a library.

Installed packages live in ``<library>/models/NAME`` (:func:`photofind.paths.models_dir`),
where :func:`photofind.clip.available_models` finds them next to the bundled ones. The
library's chosen model is its ``model`` setting (:mod:`photofind.settings`).

An install never leaves a half-written package where the runtime looks: everything is
copied, unpacked, downloaded or adapted inside a hidden staging folder of ``models/``
(``.install-*``, never listed: its top level has no ``model.json``), validated (manifest,
every file's sha256, and a real load of the model that encodes one sentence and one image),
and only then renamed to ``models/NAME`` in one step on the same file system.

Downloads are kept in ``models/.downloads`` until the install succeeds, so that an
interrupted or failed install resumes instead of fetching hundreds of megabytes again.

``remove`` refuses the library's active model unless forced (then the choice is cleared),
since removing it would leave the next search with no model and a confusing error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from photofind import settings
from photofind.atomic import fsync_dir
from photofind.clip.package import (
    ModelSpec,
    read_manifest,
    sha256_file,
    verify_files,
)
from photofind.errors import ModelError, PhotofindError
from photofind.models import adapters, archive, catalogue, facts, hub
from photofind.models.budget import DEFAULT_MAX_BYTES
from photofind.models.download import (
    DownloadError,
    DownloadLimits,
    ProgressCallback,
    check_url,
    download,
)
from photofind.models.folder_copy import copy_package_folder
from photofind.paths import bundled_models_dir, models_dir

DOWNLOADS = ".downloads"
STAGING_PREFIX = ".install-"
TRASH_PREFIX = ".trash-"
# A staging folder older than this belongs to a crashed install, not a running one.
STALE_STAGING_S = 24 * 3600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


# -- the chosen model ----------------------------------------------------------------------


def active_model(library: Path) -> str | None:
    """The model chosen with ``photofind models use``, or None."""
    return settings.load(library)["model"]


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    bundled: bool
    active: bool
    spec: ModelSpec | None
    problem: str | None = None  # why model.json cannot be read, when it cannot


@dataclass
class InstallReport:
    name: str
    path: Path
    spec: ModelSpec
    layout: str  # "photofind" or "immich"
    # Files fetched without a pinned hash: their sha256 as computed here, for the user to
    # compare with the publisher's listing. Empty when everything was pinned or local.
    unpinned: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    speed: facts.Speed | None = None  # measured here by the install's probe


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ModelError(
            f"{name!r} is not a usable model name: letters, digits and . _ + - only, "
            "starting with a letter or digit, at most 100 characters"
        )
    return name


# -- the store -----------------------------------------------------------------------------


class ModelStore:
    """The model packages of one library folder."""

    def __init__(self, library: Path, *, provider: str = "cpu", max_bytes: int = DEFAULT_MAX_BYTES):
        self.library = Path(library)
        self.root = models_dir(self.library)
        self.provider = provider
        # The most one install may write (a folder's files, an archive's contents).
        self.max_bytes = max_bytes

    # listing and choosing -------------------------------------------------------------

    def installed(self) -> dict[str, Path]:
        from photofind.clip.model import packages_in

        return packages_in(self.root)

    def bundled(self) -> dict[str, Path]:
        from photofind.clip.model import packages_in

        return packages_in(bundled_models_dir())

    def list(self) -> list[InstalledModel]:
        active = active_model(self.library)
        found = {name: (path, True) for name, path in self.bundled().items()}
        found.update({name: (path, False) for name, path in self.installed().items()})
        models = []
        for name in sorted(found):
            path, bundled = found[name]
            try:
                spec, problem = read_manifest(path), None
            except ModelError as exc:
                spec, problem = None, str(exc)
            models.append(InstalledModel(name, path, bundled, name == active, spec, problem))
        return models

    def path_of(self, name: str) -> Path:
        installed, bundled = self.installed(), self.bundled()
        if name in installed:
            return installed[name]
        if name in bundled:
            return bundled[name]
        names = ", ".join(sorted({*installed, *bundled})) or "none"
        raise ModelError(f"no model named {name!r} is installed (installed or bundled: {names})")

    def use(self, name: str) -> ModelSpec:
        """Make ``name`` the library's model, after checking its files."""
        path = self.path_of(name)
        spec = read_manifest(path)
        verify_files(path, spec)
        settings.update(self.library, {"model": name})
        return spec

    def remove(self, name: str, *, force: bool = False) -> Path:
        installed = self.installed()
        if name not in installed:
            if name in self.bundled():
                raise ModelError(f"{name!r} is bundled with photofind and cannot be removed")
            raise ModelError(f"no model named {name!r} is installed in {self.root}")
        active = active_model(self.library) == name
        if active and not force:
            raise ModelError(
                f"{name!r} is the library's active model; choose another with "
                "`photofind models use NAME` first, or pass --force"
            )
        path = installed[name]
        trash = self.root / f"{TRASH_PREFIX}{name}-{os.getpid()}-{time.monotonic_ns()}"
        # One rename makes it vanish for readers; the slow delete comes after.
        os.rename(path, trash)
        fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)
        if active:
            settings.update(self.library, {"model": None})
        return path

    # installing -----------------------------------------------------------------------

    def install(
        self,
        source: str | os.PathLike | catalogue.CatalogueEntry,
        *,
        name: str | None = None,
        sha256: str | None = None,
        replace: bool = False,
        progress: ProgressCallback | None = None,
        timeout: float = 30.0,
        limits: DownloadLimits | None = None,
        int8: bool = False,
        fp16: bool | None = None,
    ) -> InstallReport:
        """Install a package folder, an archive, an https URL of an archive, or a catalogue
        entry (by name, or a :class:`~photofind.models.catalogue.CatalogueEntry`).

        ``sha256``: the expected hash of the archive (a downloaded or a local one); an
        archive without one has its hash computed and reported in ``unpinned``.
        ``limits``: how slow a download may be (``timeout`` is its per-read wait).
        ``int8``: also make the model's int8 encoders and check them (photofind.models.int8;
        their verdict is one of the report's notes). ``fp16``: also make its fp16 encoders
        for a GPU and check them (photofind.models.fp16); None: where CUDA can run here.
        """
        limits = limits or DownloadLimits(timeout=timeout)
        text = source.name if isinstance(source, catalogue.CatalogueEntry) else os.fspath(source)
        local = Path(text).expanduser()
        if name is not None:
            check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_leftovers()
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        content = staging / "content"
        downloaded: list[Path] = []
        report_extra: dict = {"unpinned": {}, "notes": []}
        entry = None
        try:
            if isinstance(source, catalogue.CatalogueEntry):
                entry = source
            elif not text.lower().startswith(("https://", "http://")) and not local.exists():
                entry = catalogue.find_or_immich(text)
                if entry is None:
                    raise ModelError(
                        f"{text!r} is neither a folder, an archive file, an https URL, a "
                        "name in the catalogue (`photofind models list --catalogue`) nor an "
                        "Immich model (immich-app/NAME)"
                    )
            if entry is not None:
                fetched = self._fetch_catalogue(entry, content, progress, limits, report_extra)
                downloaded.extend(fetched)
            elif text.lower().startswith(("https://", "http://")):
                downloaded.append(
                    self._fetch_archive(text, content, sha256, progress, limits, report_extra)
                )
            else:
                self._copy_local(local, content, sha256, report_extra)
            root, layout = adapters.find_package_root(content)
            if layout == "immich":
                package = staging / "package"
                guessed = entry.package_name if entry else _name_of_source(text, root, content)
                adapters.adapt_immich(
                    root,
                    package,
                    name=name or guessed,
                    description=entry.description if entry else "",
                    source=entry.source if entry else text,
                    license=entry.license if entry else "",
                    move=True,
                    repo=entry.name if entry else guessed,
                    probe=False,
                    extra=report_extra.get("revision"),
                    arch=entry.arch if entry else "",
                )
            else:
                package = root
            spec = read_manifest(package)
            verify_files(package, spec)
            final_name = check_name(name or (entry.package_name if entry else spec.name))
            speed = self._probe(package, spec)
            if int8:
                from photofind.models.int8 import make_int8

                report_extra["notes"].append(make_int8(package, final_name))
                spec = read_manifest(package)
            if fp16 is None:
                from photofind.models.fp16 import cuda_here

                fp16 = cuda_here()
            if fp16:
                from photofind.models.fp16 import make_fp16

                report_extra["notes"].append(make_fp16(package, final_name))
                spec = read_manifest(package)
            target = self._commit(package, final_name, replace)
            facts.record_speed(final_name, spec, speed)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for path in downloaded:
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return InstallReport(
            final_name,
            target,
            spec,
            layout,
            report_extra["unpinned"],
            report_extra["notes"],
            speed,
        )

    def _clean_leftovers(self) -> None:
        now = time.time()
        for child in self.root.iterdir():
            stale = child.name.startswith(STAGING_PREFIX) and now - child.stat().st_mtime > (
                STALE_STAGING_S
            )
            if child.name.startswith(TRASH_PREFIX) or stale:
                shutil.rmtree(child, ignore_errors=True)

    def _copy_local(self, local: Path, content: Path, sha256: str | None, report) -> None:
        if local.is_dir():
            if sha256:
                raise ModelError("--sha256 applies to archives only, not to a folder")
            copy_package_folder(local, content, library=self.library, max_bytes=self.max_bytes)
        elif archive.is_archive(local):
            # Hashed like a download: an Immich-layout archive carries no hashes of its own,
            # so this is what the user can compare with the publisher's listing.
            actual = sha256_file(local)
            if sha256 and actual != sha256.lower():
                raise ModelError(
                    f"{local}: its sha256 is {actual}, expected {sha256.lower()}; "
                    "nothing was installed"
                )
            if not sha256:
                report["unpinned"][str(local)] = actual
            archive.extract(local, content, max_bytes=self.max_bytes)
        else:
            raise ModelError(
                f"{local} is neither a model package folder nor an archive "
                f"({', '.join(archive.ARCHIVE_SUFFIXES)})"
            )

    def _download_dir(self, key: str) -> Path:
        folder = self.root / DOWNLOADS / key
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _fetch_archive(self, url, content, sha256, progress, limits, report) -> Path:
        check_url(url)
        # The URL's last segment only tells the archive type; the file written is always
        # "download<suffix>", so no name from the URL (whose %2F decodes to "/") can reach
        # the file system.
        suffix = archive.suffix_of(unquote(urlsplit(url).path))
        if suffix is None:
            raise ModelError(
                f"{url}: the URL should name an archive ({', '.join(archive.ARCHIVE_SUFFIXES)})"
            )
        # Keyed by the URL so that a second run finds the .part of the first and resumes.
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
        folder = self._download_dir(key)
        result = download(
            url,
            folder / f"download{suffix}",
            sha256=sha256,
            progress=progress,
            limits=limits,
            max_bytes=self.max_bytes,
        )
        if not sha256:
            report["unpinned"][url] = result.sha256
        archive.extract(result.path, content, max_bytes=self.max_bytes)
        return folder

    def _fetch_hub(self, entry, content, progress, limits, report) -> list[Path]:
        """Every wanted file of the entry's hub repository at one commit, each checked
        against the hub's listing (LFS sha256 or git blob id)."""
        commit = hub.resolve_revision(entry.repo, entry.revision or "main", limits.timeout)
        files = hub.list_files(entry.repo, commit, limits.timeout)
        if not files:
            raise ModelError(f"{entry.repo} at {commit[:12]} lists no files photofind can use")
        total = sum(f.size for f in files)
        if total > self.max_bytes:
            raise ModelError(
                f"{entry.repo} is {total:,} bytes, more than the {self.max_bytes:,} one "
                "install may write"
            )
        folder = self._download_dir(check_name(entry.name))
        for remote in files:
            local = folder / "__".join(remote.path.split("/"))
            result = download(
                hub.file_url(entry.repo, commit, remote.path),
                local,
                sha256=remote.sha256,
                progress=progress,
                limits=limits,
                max_bytes=max(remote.size, 1),
            )
            if remote.git_oid and hub.git_blob_id(result.path) != remote.git_oid:
                result.path.unlink()
                raise DownloadError(
                    f"{remote.path}: the downloaded bytes are not the git blob "
                    f"{remote.git_oid} the hub lists for commit {commit}; deleted"
                )
            target = content / remote.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(result.path, target)
            except OSError:
                shutil.copyfile(result.path, target)
        report["notes"].extend(entry.notes)
        report["notes"].append(
            f"{entry.repo} at commit {commit}: {len(files)} files, {total:,} bytes"
        )
        report["revision"] = {"hub_repo": entry.repo, "revision": commit}
        return [folder]

    def _fetch_catalogue(self, entry, content, progress, limits, report) -> list[Path]:
        if entry.repo and not entry.files:
            return self._fetch_hub(entry, content, progress, limits, report)
        if entry.kind == "checkpoint":
            raise ModelError(
                f"{entry.name} is an original checkpoint, which needs torch to convert: with "
                f"the export extra installed, download {entry.checkpoint_url} (sha256 "
                f"{entry.checkpoint_sha256 or 'not pinned'}), run `{entry.export_command()}` "
                f"and then `photofind models install {entry.package_name}`"
            )
        folder = self._download_dir(check_name(entry.name))
        for remote in entry.files:
            parts = remote.path.split("/")
            if any(p in ("", ".", "..") or "\\" in p for p in parts):
                raise ModelError(f"{entry.name}: catalogue file path {remote.path!r} is unsafe")
            local = folder / "__".join(parts)
            result = download(
                entry.url_of(remote),
                local,
                sha256=remote.sha256,
                progress=progress,
                limits=limits,
                max_bytes=remote.max_bytes or self.max_bytes,
            )
            if not remote.sha256:
                report["unpinned"][remote.path] = result.sha256
            target = content / remote.path
            target.parent.mkdir(parents=True, exist_ok=True)
            # A hard link costs no space and keeps the download for a retry if adapting fails.
            try:
                os.link(result.path, target)
            except OSError:
                shutil.copyfile(result.path, target)
        report["notes"].extend(entry.notes)
        return [folder]

    def _probe(self, package: Path, spec: ModelSpec) -> facts.Speed:
        """Load the package as the app will, encode one sentence and one blank image, and
        measure its speed here."""
        from photofind.clip import load_model

        try:
            model = load_model(package, provider=self.provider)
            text = model.encode_texts(["a photo of a cat"])
            size = spec.image_size
            image = model.encode_pixels(np.zeros((1, 3, size, size), dtype=np.float32))
            speed = facts.measure(model, size)
        except PhotofindError as exc:
            extra = spec.extra or {}
            hint = ""
            if extra.get("adapted_from"):
                hint = f" (the package was adapted from {extra['adapted_from']}'s layout)"
            raise ModelError(f"the package does not load: {exc}{hint}") from exc
        for what, vectors in (("text", text), ("image", image)):
            if vectors.shape != (1, spec.embed_dim) or not np.all(np.isfinite(vectors)):
                raise ModelError(
                    f"the package's {what} encoder gives shape {vectors.shape} or non-finite "
                    "values on a test input"
                )
        return speed

    def _commit(self, package: Path, name: str, replace: bool) -> Path:
        target = self.root / name
        old = None
        if target.exists():
            if not replace:
                raise ModelError(
                    f"a model named {name!r} is already installed at {target}; "
                    "pass --replace to overwrite it or --name to install under another name"
                )
            old = self.root / f"{TRASH_PREFIX}{name}-{os.getpid()}-{time.monotonic_ns()}"
            os.rename(target, old)
        os.rename(package, target)
        fsync_dir(self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target


def _name_of_source(text: str, root: Path, content: Path) -> str:
    """A package name for an Immich-layout source installed without --name: the folder's
    (or the archive's, or the URL's) own name, never our staging folder's."""
    if root != content:
        base = root.name  # the one folder inside an archive
    else:
        base = Path(unquote(urlsplit(text).path) if "://" in text else text).name
        suffix = archive.suffix_of(base)
        if suffix:
            base = base[: -len(suffix)]
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "-", base).strip("-._+")[:100]
    return cleaned or "immich-model"
