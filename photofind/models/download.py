"""Downloads that resume, show progress and are checked before anything uses them.

Only the standard library (urllib): the app must fetch a model on a machine that has nothing
but photofind installed.

* Bytes go to ``<dest>.part``; a sidecar ``<dest>.part.json`` remembers the URL and the
  server's validator (ETag / Last-Modified). A later call for the same URL asks for the rest
  with ``Range: bytes=N-`` and ``If-Range``, so a file that changed on the server restarts
  from zero instead of being spliced from two versions.
* The sha256 is computed over the whole file (the kept part included) and compared with the
  expected one before the ``.part`` becomes ``dest``. A mismatch deletes the bytes.
* Plain ``http://`` is refused: a model is code-like input (ONNX graphs are parsed by native
  code) and a hash pinned in our catalogue is the only other defence. Tests serve over
  127.0.0.1 without TLS, so they set :data:`ALLOW_HTTP_ENV` to ``1``; nothing else should.
  Redirects are followed only to https (or http under the same switch).
* A server must keep the bytes coming (:class:`DownloadLimits`): each read waits at most
  ``timeout``, the rate over each ``rate_window`` must reach ``min_rate`` and the whole call
  ends at ``deadline``, so a server that drips a byte every few seconds cannot hold the
  install for ever. The ``.part`` is kept: the next call resumes it.
* The space is checked against the announced size before the first byte is written, and a
  disk that fills anyway loses its ``.part``: a full disk must not stay full of a download
  that can never finish.
* The name of the file written is the caller's ``dest``: never a name from the URL or from
  a header (Content-Disposition is not read at all).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from photofind import __version__
from photofind.errors import PhotofindError
from photofind.models.budget import FREE_SPACE_RESERVE, FreeSpace, free_space, is_disk_full

ALLOW_HTTP_ENV = "PHOTOFIND_ALLOW_HTTP_FOR_TESTS"
DEFAULT_TIMEOUT = 30.0
CHUNK = 1 << 16
USER_AGENT = f"photofind/{__version__} (+model store)"


class DownloadError(PhotofindError):
    """A download failed, was refused, or its bytes are not what was expected. The error
    that caused it (a socket's, an HTTP answer's) is kept as ``__cause__`` for
    :func:`photofind.models.failures.explain` to put in words."""


class DownloadInterrupted(DownloadError):
    """The connection dropped mid-file on every attempt; the ``.part`` stays to resume."""


class ChecksumMismatch(DownloadError):
    """The bytes arrived but are not the expected ones; they were deleted."""


@dataclass(frozen=True)
class DownloadLimits:
    """How long and how slowly a server may send one file."""

    timeout: float = DEFAULT_TIMEOUT  # seconds one read may wait for a byte
    # A whole call: ViT-L/14's 1.7 GB at 200 KB/s takes 2.4 h; anything slower resumes.
    deadline: float = 4 * 3600.0
    min_rate: float = 4096.0  # bytes per second, averaged over each window
    rate_window: float = 60.0  # seconds


@dataclass(frozen=True)
class DownloadProgress:
    """What a progress callback gets, often (once per chunk)."""

    url: str
    done: int  # bytes on disk so far, the resumed part included
    total: int | None  # None when the server sends no length
    rate: float  # bytes per second over this attempt
    resumed_from: int  # bytes that were already there when this attempt started


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    resumed_from: int  # > 0 when an earlier interrupted download was continued


ProgressCallback = Callable[[DownloadProgress], None]


def http_allowed() -> bool:
    return os.environ.get(ALLOW_HTTP_ENV) == "1"


def check_url(url: str) -> None:
    """Refuse anything but https (and http under the test-only switch)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        return
    if scheme == "http":
        if http_allowed():
            return
        raise DownloadError(
            f"refusing plain http for {url}: model files must come over https "
            "(a tampered model is not something a hash check after the fact should have to catch)"
        )
    raise DownloadError(f"{url!r} is not an https URL")


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (Hugging Face sends files to a CDN) but never down to plain http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SafeRedirects())


def _part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def _read_sidecar(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _total_from(response, start: int) -> int | None:
    """The full size of the resource, from Content-Range (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range", "")
    if content_range.startswith("bytes ") and "/" in content_range:
        size = content_range.rsplit("/", 1)[1].strip()
        if size.isdigit():
            return int(size)
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + start
    return None


def _range_start(response) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _hash_existing(path: Path, digest) -> int:
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int | None = None,
    attempts: int = 3,
    limits: DownloadLimits | None = None,
    free: FreeSpace = free_space,
) -> DownloadResult:
    """Fetch ``url`` into ``dest``, resuming a ``.part`` left by an earlier try.

    ``sha256``: the expected digest; when given, a file that does not match is deleted and
    :class:`DownloadError` is raised, so ``dest`` only ever holds verified bytes. When None
    the digest is computed and returned for the caller to show (never to pretend it was
    checked). ``attempts``: how many times a dropped connection is resumed within this call;
    after the last one the ``.part`` stays for the next call to continue. ``limits``: the
    timeouts and the minimum rate (``timeout`` is its ``timeout`` when not given).
    ``free``: the free-space function (injectable, so a test can play a small disk).
    """
    limits = limits or DownloadLimits(timeout=timeout)
    check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else None
    part, sidecar = _part_paths(dest)
    last_error: DownloadError | None = None
    clock = _Clock(url, limits)
    for _ in range(max(1, attempts)):
        try:
            return _attempt(url, dest, part, sidecar, expected, progress, clock, max_bytes, free)
        except _Interrupted as exc:
            last_error = DownloadInterrupted(str(exc))
    assert last_error is not None
    raise last_error


class _Interrupted(Exception):
    """The connection dropped; the bytes so far are kept and the next attempt resumes."""


class _Clock:
    """The deadline of one call and the rate over the current window."""

    def __init__(self, url: str, limits: DownloadLimits):
        self.url, self.limits = url, limits
        self.began = time.monotonic()
        self.window_start, self.window_done = self.began, 0

    def new_attempt(self, done: int) -> None:
        self.window_start, self.window_done = time.monotonic(), done

    def check(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        limits = self.limits
        of = f" of {total:,}" if total else ""
        if now - self.began > limits.deadline:
            raise DownloadError(
                f"download of {self.url} took longer than the {limits.deadline:g} s allowed "
                f"({done:,}{of} bytes so far); run the same command again to resume"
            )
        elapsed = now - self.window_start
        if elapsed >= limits.rate_window:
            rate = (done - self.window_done) / elapsed
            if rate < limits.min_rate:
                raise DownloadError(
                    f"download of {self.url} is too slow: {rate:,.0f} bytes/s over the last "
                    f"{elapsed:.0f} s, less than the {limits.min_rate:,.0f} required "
                    f"({done:,}{of} bytes so far); run the same command again to resume"
                )
            self.window_start, self.window_done = now, done


def _discard(part: Path, sidecar: Path) -> None:
    for path in (part, sidecar):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _check_space(url: str, part: Path, sidecar: Path, needed: int, free: FreeSpace) -> None:
    available = free(part.parent) - FREE_SPACE_RESERVE
    if needed > available:
        # An earlier attempt's bytes go too: they cannot become a whole file on this disk,
        # and left there they would take the space from the next install.
        earlier = part.stat().st_size if part.is_file() else 0
        _discard(part, sidecar)
        kept = f" (the {earlier:,} bytes of an earlier attempt were deleted)" if earlier else ""
        raise DownloadError(
            f"{url} needs {needed:,} more bytes but the disk holding {part.parent} has only "
            f"{max(available, 0):,} free; nothing was downloaded{kept}"
        )


def _disk_full(url: str, part: Path, sidecar: Path, done: int, exc: OSError) -> DownloadError:
    _discard(part, sidecar)
    return DownloadError(
        f"the disk holding {part.parent} filled up ({exc.strerror}) after {done:,} bytes of "
        f"{url}; the partial download was deleted"
    )


def _attempt(
    url, dest, part, sidecar, expected, progress, clock, max_bytes, free
) -> DownloadResult:
    timeout = clock.limits.timeout
    meta = _read_sidecar(sidecar)
    start = part.stat().st_size if part.is_file() else 0
    if start and meta.get("url") != url:
        start = 0  # a .part of some other URL: never splice
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            request.add_header("If-Range", validator)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and start:
            # Nothing left to send: the .part may already be whole. The hash decides.
            return _finish(url, dest, part, sidecar, expected, start)
        raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: cannot connect ({exc.reason})") from exc
    except TimeoutError as exc:
        raise DownloadError(f"{url}: no answer within {timeout:g} s ({exc})") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: the connection failed ({exc})") from exc

    with response:
        status = response.status
        if status == 206 and start and _range_start(response) == start:
            mode = "ab"
        else:
            # 200: the server ignored the range or the file changed (If-Range): start over.
            start, mode = 0, "wb"
        total = _total_from(response, start)
        if max_bytes is not None and total is not None and total > max_bytes:
            raise DownloadError(
                f"{url} is {total:,} bytes, more than the {max_bytes:,} allowed for it"
            )
        if total is not None:
            _check_space(url, part, sidecar, total - start, free)
        headers = response.headers
        done = start
        began = time.monotonic()
        clock.new_attempt(done)
        try:
            sidecar.write_text(
                json.dumps(
                    {
                        "url": url,
                        "etag": headers.get("ETag"),
                        "last_modified": headers.get("Last-Modified"),
                        "total": total,
                    }
                ),
                encoding="utf-8",
            )
            with open(part, mode) as out:
                while True:
                    # read1: whatever has arrived, so that a trickle is seen (and timed)
                    # instead of blocking until a whole chunk is there.
                    block = response.read1(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if max_bytes is not None and done > max_bytes:
                        out.close()
                        _discard(part, sidecar)  # it can never become a good file
                        raise DownloadError(
                            f"{url} sent more than the {max_bytes:,} bytes allowed for it"
                        )
                    if progress is not None:
                        elapsed = max(time.monotonic() - began, 1e-6)
                        progress(
                            DownloadProgress(url, done, total, (done - start) / elapsed, start)
                        )
                    clock.check(done, total)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            raise _Interrupted(_interrupted_message(url, done, total, exc)) from None
        except http.client.HTTPException as exc:
            # e.g. a chunk-size line longer than http.client's 64 KB limit (LineTooLong).
            raise DownloadError(
                f"{url}: the server sent a malformed response after {done:,} bytes "
                f"({type(exc).__name__}: {exc})"
            ) from None
        except OSError as exc:
            if is_disk_full(exc):
                raise _disk_full(url, part, sidecar, done, exc) from None
            raise _Interrupted(_interrupted_message(url, done, total, exc)) from None
        if total is not None and done < total:
            raise _Interrupted(_interrupted_message(url, done, total, "connection closed early"))
    return _finish(url, dest, part, sidecar, expected, start)


def _interrupted_message(url: str, done: int, total: int | None, why) -> str:
    of = f" of {total:,}" if total else ""
    return (
        f"download of {url} was interrupted after {done:,}{of} bytes ({why}); "
        "run the same command again to resume"
    )


def _finish(url, dest, part, sidecar, expected, resumed_from) -> DownloadResult:
    if not part.is_file():
        raise DownloadError(f"{url}: nothing was downloaded")
    digest = hashlib.sha256()
    size = _hash_existing(part, digest)
    actual = digest.hexdigest()
    if expected and actual != expected:
        part.unlink()
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        raise ChecksumMismatch(
            f"{url}: the downloaded file's sha256 is {actual}, expected {expected}; "
            "the file was deleted and nothing was installed"
        )
    os.replace(part, dest)
    with contextlib.suppress(FileNotFoundError):
        sidecar.unlink()
    return DownloadResult(dest, actual, size, resumed_from or 0)
