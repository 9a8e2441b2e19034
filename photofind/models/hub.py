"""The Hugging Face hub's file listing of a model repository, through its public API.

* The address is ``HF_ENDPOINT`` when set (as ``huggingface_hub`` reads it: users behind a
  mirror set it), else https://huggingface.co; read at each call, never cached.
* A revision ("main") is resolved to its commit first (``/api/models/{repo}/revision/{rev}``),
  so that the listing and every file come from the same commit, which model.json records.
* The listing (``/api/models/{repo}/tree/{commit}?recursive=true``, followed over its
  ``Link: rel="next"`` pages) gives each file's size; an LFS file's ``lfs.oid`` is the
  sha256 of its bytes, a small file's ``oid`` its git blob id (sha1 of ``blob SIZE\\0`` and
  the bytes): both are checked after the download, so every file is verified against the
  hub's own record of that commit.
* Files for other runtimes are left out: Arm NN (``*.armnn``) and RKNN (``rknpu/``,
  ``*.rknn``), and the repository's dot files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from photofind.models.download import _OPENER, USER_AGENT, DownloadError, check_url

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"
# A listing of a few hundred files is tens of kilobytes; a page is read no further than this.
MAX_LISTING_BYTES = 16 << 20
MAX_PAGES = 100
_HEX = re.compile(r"^[0-9a-f]+$")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def endpoint() -> str:
    return (os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None  # LFS files
    git_oid: str | None  # the others


def file_url(repo: str, revision: str, path: str) -> str:
    return f"{endpoint()}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def _get_json(url: str, timeout: float):
    check_url(url)
    request = urllib.request.Request(
        url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(MAX_LISTING_BYTES + 1)
            link = response.headers.get("Link", "")
    except urllib.error.HTTPError as exc:
        exc.close()
        hint = " (no such model repository, or it is private)" if exc.code in (401, 404) else ""
        raise DownloadError(f"{url}: the hub answered {exc.code} {exc.reason}{hint}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: cannot connect ({exc.reason})") from exc
    except OSError as exc:
        raise DownloadError(f"{url}: the connection failed ({exc})") from exc
    if len(body) > MAX_LISTING_BYTES:
        raise DownloadError(f"{url}: the listing is larger than {MAX_LISTING_BYTES:,} bytes")
    try:
        return json.loads(body), link
    except ValueError as exc:
        raise DownloadError(f"{url}: the hub's answer is not JSON ({exc})") from exc


def resolve_revision(repo: str, revision: str, timeout: float = 30.0) -> str:
    """The commit ``revision`` of ``repo`` points at now."""
    url = f"{endpoint()}/api/models/{repo}/revision/{quote(revision, safe='')}"
    data, _ = _get_json(url, timeout)
    sha = data.get("sha") if isinstance(data, dict) else None
    if not isinstance(sha, str) or len(sha) != 40 or not _HEX.match(sha):
        raise DownloadError(f"{url}: the answer names no commit")
    return sha


def wanted(path: str) -> bool:
    """Whether photofind fetches this file of an Immich repository."""
    parts = PurePosixPath(path).parts
    if any(p.startswith(".") for p in parts) or "rknpu" in parts or "armnn" in parts:
        return False
    return not path.lower().endswith((".armnn", ".rknn"))


def list_files(repo: str, commit: str, timeout: float = 30.0) -> list[HubFile]:
    """Every file of ``repo`` at ``commit`` that :func:`wanted` keeps."""
    url = f"{endpoint()}/api/models/{repo}/tree/{quote(commit, safe='')}?recursive=true"
    found: list[HubFile] = []
    for _ in range(MAX_PAGES):
        data, link = _get_json(url, timeout)
        if not isinstance(data, list):
            raise DownloadError(f"{url}: the listing is not a list of files")
        for item in data:
            if not isinstance(item, dict) or item.get("type") != "file":
                continue
            found.append(_hub_file(item, url))
        match = _NEXT.search(link)
        if not match:
            return [f for f in found if wanted(f.path)]
        url = match.group(1)
    raise DownloadError(f"{repo}: the listing runs over {MAX_PAGES} pages; refused")


def _hub_file(item: dict, url: str) -> HubFile:
    path, size = item.get("path"), item.get("size")
    parts = PurePosixPath(path).parts if isinstance(path, str) else ()
    if (
        not parts
        or path.startswith("/")
        or any(p in ("", ".", "..") or "\\" in p for p in parts)
        or not isinstance(size, int)
        or size < 0
    ):
        raise DownloadError(f"{url}: the listing names an unsafe or malformed file {path!r:.80}")
    lfs = item.get("lfs")
    sha256 = lfs.get("oid") if isinstance(lfs, dict) else None
    oid = item.get("oid")
    if sha256 is not None and not (isinstance(sha256, str) and len(sha256) == 64):
        raise DownloadError(f"{url}: {path}: malformed LFS sha256")
    if sha256 is None and not (isinstance(oid, str) and len(oid) == 40 and _HEX.match(oid)):
        raise DownloadError(f"{url}: {path}: neither an LFS sha256 nor a git blob id")
    if isinstance(lfs, dict) and isinstance(lfs.get("size"), int):
        size = lfs["size"]
    return HubFile(path, size, sha256.lower() if sha256 else None, None if sha256 else oid)


def git_blob_id(path) -> str:
    """The git blob id of a file (sha1 of ``blob SIZE\\0`` and its bytes)."""
    size = os.path.getsize(path)
    digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
