"""Thumbnails: made off the GUI thread, kept on disk and in a bounded memory cache.

The disk cache is keyed by path, size and mtime, so an edited photo gets a new thumbnail
and a stale one is simply never asked for again (the cache is disposable). Requests are
served newest first: what the view asks for last is what is on screen now, so scrolling
fast through 100,000 results never leaves the visible cells waiting behind old ones.

A video's thumbnail is one of its frames: the best frame of the search hit it stands for
(``time_s``), else its first. So is an animated picture's when a search hit names a frame
time (its vectors are its frames, as a video's). Requests and both caches are keyed by path
and frame time.
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
from photofind.formats import frames as animation
from photofind.formats.kinds import VIDEO, kind_of
from photofind.formats.video import frame_at

log = logging.getLogger(__name__)

STORED_SIZE = 320  # pixels, longest side, on disk; the view scales down from it
MAX_PENDING = 512  # requests beyond this are dropped oldest first (scrolled past)


def cache_key(path: str, size: int, mtime_ns: int, frame_ms: int | None = None) -> str:
    raw = os.fsencode(path) + f"|{size}|{mtime_ns}|{STORED_SIZE}".encode()
    if frame_ms is not None:
        raw += f"|{frame_ms}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def _frame_ms(path: str, time_s: float | None) -> int | None:
    """The frame a video's thumbnail shows (its first when no time is asked); an animated
    picture's when a time is asked (a still's hits name none); else None."""
    if kind_of(path) != VIDEO and time_s is None:
        return None
    return 0 if time_s is None else max(0, round(time_s * 1000))


def make_thumbnail(path: str, cache_dir: Path | None, time_s: float | None = None) -> QImage:
    """The thumbnail of ``path`` as a QImage (from the disk cache when present); a video's
    is its frame at ``time_s`` (its first when None)."""
    st = os.stat(path)
    frame_ms = _frame_ms(path, time_s)
    cached = None
    if cache_dir is not None:
        key = cache_key(path, st.st_size, st.st_mtime_ns, frame_ms)
        cached = cache_dir / key[:2] / f"{key}.jpg"
        if cached.is_file():
            image = QImage(str(cached))
            if not image.isNull():
                return image
    if frame_ms is not None and kind_of(path) == VIDEO:
        img = frame_at(path, frame_ms, side=STORED_SIZE)
    elif frame_ms is not None:
        img = animation.frame_at(path, frame_ms, side=STORED_SIZE)
    else:
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
        key = self.loader._next()
        if key is None:
            return
        path, time_s = key
        try:
            image = make_thumbnail(path, self.loader.cache_dir, time_s)
        except (OSError, PhotofindError) as exc:
            self.loader._failed.emit(key, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad photo must not kill the pool
            log.exception("thumbnail of %s failed", path)
            self.loader._failed.emit(key, str(exc))
        else:
            self.loader._loaded.emit(key, image)


class ThumbnailLoader(QObject):
    """``get(path, time_s)`` returns a cached QImage or None and schedules a load;
    ``ready(path)`` is emitted on the GUI thread when it arrives. ``time_s``: the frame of
    a video to show (None: a photo, or a video's first frame)."""

    ready = Signal(str)
    _loaded = Signal(object, QImage)  # (path, time_s), the image
    _failed = Signal(object, str)

    def __init__(self, cache_dir: Path | None, *, memory_items: int = 2000, threads: int = 2):
        super().__init__()
        self.cache_dir = cache_dir
        self.memory_items = memory_items
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._memory: OrderedDict[tuple, QImage] = OrderedDict()
        self._broken: dict[tuple, str] = {}
        self._queue: OrderedDict[tuple, None] = OrderedDict()
        self._in_flight: set[tuple] = set()
        self._lock = threading.Lock()
        self._loaded.connect(self._on_loaded)
        self._failed.connect(self._on_failed)

    def get(self, path: str, time_s: float | None = None) -> QImage | None:
        key = (path, time_s)
        image = self._memory.get(key)
        if image is not None:
            self._memory.move_to_end(key)
            return image
        if key not in self._broken:
            self._request(key)
        return None

    def error(self, path: str, time_s: float | None = None) -> str | None:
        return self._broken.get((path, time_s))

    def _request(self, key: tuple) -> None:
        with self._lock:
            if key in self._in_flight:
                return
            self._queue.pop(key, None)
            self._queue[key] = None  # newest at the end
            while len(self._queue) > MAX_PENDING:
                self._queue.popitem(last=False)
        self.pool.start(_Job(self))

    def _next(self) -> tuple | None:
        with self._lock:
            if not self._queue:
                return None
            key, _ = self._queue.popitem(last=True)
            self._in_flight.add(key)
            return key

    def _on_loaded(self, key: tuple, image: QImage) -> None:
        with self._lock:
            self._in_flight.discard(key)
        self._memory[key] = image
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
        self.ready.emit(key[0])

    def _on_failed(self, key: tuple, reason: str) -> None:
        with self._lock:
            self._in_flight.discard(key)
        self._broken[key] = reason
        self.ready.emit(key[0])

    def clear_queue(self) -> None:
        with self._lock:
            self._queue.clear()

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)
