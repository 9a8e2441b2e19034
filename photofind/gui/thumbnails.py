"""Thumbnails: made off the GUI thread, kept on disk and in a bounded memory cache.

The disk cache is keyed by path, size and mtime, so an edited photo gets a new thumbnail
and a stale one is simply never asked for again (the cache is disposable). Requests are
served newest first: what the view asks for last is what is on screen now, so scrolling
fast through 100,000 results never leaves the visible cells waiting behind old ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from photofind.clip.preprocess import open_image
from photofind.errors import PhotofindError

log = logging.getLogger(__name__)

STORED_SIZE = 320  # pixels, longest side, on disk; the view scales down from it
MAX_PENDING = 512  # requests beyond this are dropped oldest first (scrolled past)


def cache_key(path: str, size: int, mtime_ns: int) -> str:
    raw = os.fsencode(path) + f"|{size}|{mtime_ns}|{STORED_SIZE}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def make_thumbnail(path: str, cache_dir: Path | None) -> QImage:
    """The thumbnail of ``path`` as a QImage (from the disk cache when present)."""
    st = os.stat(path)
    cached = None
    if cache_dir is not None:
        key = cache_key(path, st.st_size, st.st_mtime_ns)
        cached = cache_dir / key[:2] / f"{key}.jpg"
        if cached.is_file():
            image = QImage(str(cached))
            if not image.isNull():
                return image
    img = open_image(path, draft_size=(STORED_SIZE, STORED_SIZE))
    img.thumbnail((STORED_SIZE, STORED_SIZE), Image.Resampling.BICUBIC)
    if cached is not None:
        tmp = cached.with_suffix(f".{threading.get_ident()}.tmp")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            img.save(tmp, "JPEG", quality=85)
            os.replace(tmp, cached)
        except OSError as exc:
            # The cache is disposable: a library on read-only media, or a full disk, still
            # gets its thumbnails, made again each time.
            log.debug("thumbnail cache %s not written: %s", cached, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
    data = img.tobytes()
    return QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()


class _Job(QRunnable):
    def __init__(self, loader: ThumbnailLoader):
        super().__init__()
        self.loader = loader

    def run(self) -> None:
        path = self.loader._next()
        if path is None:
            return
        try:
            image = make_thumbnail(path, self.loader.cache_dir)
        except (OSError, PhotofindError) as exc:
            self.loader._failed.emit(path, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad photo must not kill the pool
            log.exception("thumbnail of %s failed", path)
            self.loader._failed.emit(path, str(exc))
        else:
            self.loader._loaded.emit(path, image)


class ThumbnailLoader(QObject):
    """``get(path)`` returns a cached QImage or None and schedules a load; ``ready(path)``
    is emitted on the GUI thread when it arrives."""

    ready = Signal(str)
    _loaded = Signal(str, QImage)
    _failed = Signal(str, str)

    def __init__(self, cache_dir: Path | None, *, memory_items: int = 2000, threads: int = 2):
        super().__init__()
        self.cache_dir = cache_dir
        self.memory_items = memory_items
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._memory: OrderedDict[str, QImage] = OrderedDict()
        self._broken: dict[str, str] = {}
        self._queue: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._loaded.connect(self._on_loaded)
        self._failed.connect(self._on_failed)

    def get(self, path: str) -> QImage | None:
        image = self._memory.get(path)
        if image is not None:
            self._memory.move_to_end(path)
            return image
        if path not in self._broken:
            self._request(path)
        return None

    def error(self, path: str) -> str | None:
        return self._broken.get(path)

    def _request(self, path: str) -> None:
        with self._lock:
            if path in self._in_flight:
                return
            self._queue.pop(path, None)
            self._queue[path] = None  # newest at the end
            while len(self._queue) > MAX_PENDING:
                self._queue.popitem(last=False)
        self.pool.start(_Job(self))

    def _next(self) -> str | None:
        with self._lock:
            if not self._queue:
                return None
            path, _ = self._queue.popitem(last=True)
            self._in_flight.add(path)
            return path

    def _on_loaded(self, path: str, image: QImage) -> None:
        with self._lock:
            self._in_flight.discard(path)
        self._memory[path] = image
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
        self.ready.emit(path)

    def _on_failed(self, path: str, reason: str) -> None:
        with self._lock:
            self._in_flight.discard(path)
        self._broken[path] = reason
        self.ready.emit(path)

    def clear_queue(self) -> None:
        with self._lock:
            self._queue.clear()

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)
