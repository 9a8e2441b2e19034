"""A record of model files whose sha256 was checked, so that a start does not hash them again.

Hashing ViT-B/32's 580 MB took 0.35 s of each start on 2 cores (the window waits for the
model), more for larger models and slower disks. A file
is hashed again whenever anything about it changed: size, modification time, inode or the
status-change time, which every write updates and no tool can set back. So a file replaced
or edited in place is always checked again; only damage that leaves all of these alone (a
failing disk) goes unseen until the file is next hashed, and ONNX Runtime refuses most
such files anyway. The record is a cache: lost or unreadable, every file is hashed again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from photofind.atomic import atomic_write_text

log = logging.getLogger(__name__)

RECORD_NAME = "verified-model-files.json"


def user_record() -> VerifiedFiles:
    """The record in the user's cache folder, which the app and the command line keep
    (library code gets it as an argument: nothing writes the user's cache unasked)."""
    from photofind.paths import cache_dir

    return VerifiedFiles(cache_dir() / RECORD_NAME)


_lock = threading.Lock()


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


class VerifiedFiles:
    """``sha256_of(path)`` from the record when ``path`` is unchanged, else ``None``;
    ``remember(path, sha256)`` after hashing it. The record is read once, when first asked."""

    def __init__(self, record: Path):
        self.record = Path(record)
        self._files: dict | None = None

    def _known(self) -> dict:
        if self._files is None:
            self._files = self._read()
        return self._files

    def _read(self) -> dict:
        try:
            data = json.loads(self.record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s): model files are hashed again", self.record, exc)
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def sha256_of(self, path: Path) -> str | None:
        entry = self._known().get(os.fspath(Path(path).absolute()))
        try:
            if isinstance(entry, dict) and entry.get("stat") == _fingerprint(Path(path)):
                return entry.get("sha256")
        except OSError:
            pass
        return None

    def remember(self, path: Path, sha256: str) -> None:
        with _lock:
            # Re-read: another process may have recorded its own models meanwhile.
            files = {
                name: entry
                for name, entry in self._read().items()
                if os.path.exists(name)  # forget packages that were removed
            }
            try:
                files[os.fspath(Path(path).absolute())] = {
                    "stat": _fingerprint(Path(path)),
                    "sha256": sha256,
                }
                self.record.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.record, json.dumps({"version": 1, "files": files}))
            except OSError as exc:  # a read-only home: hash at every start, as before
                log.warning("cannot write %s: %s", self.record, exc)
            self._files = files
