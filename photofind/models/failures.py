"""Why getting a model failed, in a sentence a person can act on.

:mod:`photofind.models.download` keeps the low-level error as the ``__cause__`` of its
:class:`~photofind.models.download.DownloadError`; :func:`explain` walks that chain and says
what it means: no network, a name that does not resolve (DNS), a proxy in the way, a refused
or silent server, a file not (or no longer) there, a full disk, a download cut short, bytes
that are not the expected ones. The technical message stays available as the details.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

from photofind.models.download import ChecksumMismatch, DownloadError, DownloadInterrupted

_NO_ROOM = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_NETWORK = {errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.EHOSTDOWN}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and what a URLError wraps (its ``reason``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        reason = getattr(e, "reason", None) if isinstance(e, urllib.error.URLError) else None
        for nxt in (reason, e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _proxy_for(url: str | None) -> str | None:
    """The proxy urllib sends ``url`` through (from the environment), if any."""
    if not url:
        return None
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme.lower())
    if proxy and parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxy


def explain(exc: BaseException, *, url: str | None = None, folder: os.PathLike | None = None):
    """One or two sentences saying why the model could not be had, and what to do.

    ``url``: what was fetched (to name the proxy in the way); ``folder``: where the model
    was being written (to say which disk is full).
    """
    chain = list(_chain(exc))
    where = f" ({folder})" if folder else ""
    for e in chain:
        if isinstance(e, OSError) and e.errno in _NO_ROOM:
            return (
                f"The disk is full{where}: there is no room left for the model. Free some "
                "space (a model takes up to a few hundred MB) and try again."
            )
    for e in chain:
        if isinstance(e, ChecksumMismatch):
            return (
                "The file that arrived is not the expected model (its checksum differs), so "
                "nothing was installed. A proxy or filter may have changed it; try again later."
            )
        if isinstance(e, DownloadInterrupted):
            return "The download was cut off before the end. Retry continues where it stopped."
    proxy = _proxy_for(url)
    for e in chain:
        if isinstance(e, urllib.error.HTTPError):
            if e.code == 407:
                return f"The proxy {proxy or ''} asks for a password that photofind does not have."
            if e.code in (404, 410):
                return (
                    f"The model is not at its download address (the server answered {e.code}). "
                    "photofind may be too old for it; an update or Import a model folder "
                    "works instead."
                )
            if e.code in (401, 403):
                return f"The server refused the download ({e.code}): it asks for a login."
            if e.code >= 500:
                return f"The download server has a problem ({e.code}). Try again later."
            return f"The download server answered {e.code} {getattr(e, 'reason', '')}".strip()
    connection_error = any(
        isinstance(e, (ConnectionError, TimeoutError, socket.gaierror))
        or (isinstance(e, OSError) and e.errno in _NO_NETWORK)
        for e in chain
    )
    if proxy and connection_error:
        return (
            f"The proxy {proxy} (set in this computer's proxy settings) could not be "
            "reached or did not pass the download on. Check the proxy, or unset it."
        )
    for e in chain:
        if isinstance(e, socket.gaierror):
            host = urlsplit(url).hostname if url else "the download server"
            return (
                f"The name {host} could not be looked up (DNS): this computer seems to be "
                "offline, or its name server does not answer. Check the internet connection."
            )
        if isinstance(e, OSError) and e.errno in _NO_NETWORK:
            return "There is no network: this computer is not connected to the internet."
        if isinstance(e, ConnectionRefusedError):
            return (
                "The download server refused the connection: nothing answers at its address. "
                "A firewall may block it; try again later."
            )
        if isinstance(e, ConnectionResetError):
            return "The connection was broken off by the other side. Try again."
        if isinstance(e, (TimeoutError, socket.timeout)):
            return (
                "The download server did not answer in time: the connection is very slow or "
                "something blocks it."
            )
        if isinstance(e, ssl.SSLCertVerificationError):
            return (
                "The download server's certificate could not be checked: a proxy or filter "
                "may be in the way, or this computer's clock is wrong."
            )
    for e in chain:
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"photofind may not write where the model goes{where}: {e.strerror}."
    if isinstance(exc, DownloadError):
        return f"The download failed: {exc}"
    return str(exc) or type(exc).__name__
