"""Which library folders are watched, and how: inotify, polling, or not at all (offline).

Watching is where photo tools go wrong quietly: a recursive inotify watch needs one kernel
watch per sub-folder, and when the user's limit (``fs.inotify.max_user_watches``) runs out,
watchdog keeps the watch on the folder itself but silently skips the sub-folders it could
not add. So after scheduling a folder we *check* that every sub-folder really is watched,
reading the kernel's own list in ``/proc/self/fdinfo``; a folder that is not fully covered
falls back to polling, and when the cause is the limit we say so once, with the fix.

Network file systems (NFS, SMB, sshfs ...) accept inotify watches but report only the
changes made on this machine, so they are polled from the start.

Everything here runs on the watcher's worker thread except the event handler, which only
calls ``on_event(folder_id)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from watchdog import events as wd_events
from watchdog.observers.polling import PollingObserver

from photofind.library.catalog import Folder
from photofind.library.filesystems import filesystem_type
from photofind.library.scanner import SYSTEM_FOLDERS, is_image_name

log = logging.getLogger(__name__)

INOTIFY = "inotify"
NATIVE = "native"  # FSEvents / ReadDirectoryChangesW / kqueue: what watchdog's Observer is
POLLING = "polling"
OFFLINE = "offline"

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "fuse.sshfs"}
    | {"fuse.rclone", "fuse.s3fs", "davfs", "fuse.davfs2", "lustre", "gpfs", "ncpfs"}
)

WATCH_LIMIT_MESSAGE = (
    "the system's limit on watched folders (inotify watches) is reached; "
    "{folder} and any folder that does not fit are checked by polling every {poll:g} s "
    "instead of live. To watch them live, raise the limit (currently {limit}): "
    "`sudo sysctl fs.inotify.max_user_watches={suggest}`, and to keep it after a reboot add "
    "`fs.inotify.max_user_watches={suggest}` to /etc/sysctl.d/90-photofind.conf"
)

# Events that can change what the catalog should hold. Opens, reads and closes without a
# write are left out of the kernel mask itself: the indexer reading photos must not look
# like a change.
_EVENT_TYPES = [
    wd_events.FileCreatedEvent,
    wd_events.DirCreatedEvent,
    wd_events.FileModifiedEvent,
    wd_events.FileDeletedEvent,
    wd_events.DirDeletedEvent,
    wd_events.FileMovedEvent,
    wd_events.DirMovedEvent,
    wd_events.FileClosedEvent,
]
if hasattr(wd_events, "FileAttribEvent"):  # watchdog >= 5: a touch (utime) is an attrib event
    _EVENT_TYPES.append(wd_events.FileAttribEvent)


@dataclass
class FolderState:
    folder: Folder
    mode: str  # INOTIFY / NATIVE / POLLING / OFFLINE
    reason: str | None = None  # why it is polled or offline
    watch: object | None = None  # watchdog ObservedWatch
    observer: object | None = None
    root_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the folder when watched


class _Handler(wd_events.FileSystemEventHandler):
    def __init__(self, folder: Folder, on_event: Callable[[int], None], ignore: list[str]):
        self.folder = folder
        self.on_event = on_event
        self.ignore = ignore  # e.g. the library's own data folder inside a photo folder

    def on_any_event(self, event) -> None:
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        if not any(self._matters(p, event.is_directory) for p in paths if p):
            return
        self.on_event(self.folder.id)

    def _matters(self, path: str, is_directory: bool) -> bool:
        rel = os.path.relpath(path, self.folder.path)
        if rel == "." and is_directory:
            return True  # the folder itself deleted or moved
        parts = rel.split(os.sep)
        if any(p.startswith(".") or p.lower() in SYSTEM_FOLDERS for p in parts[:-1]):
            return False  # the scanner skips hidden and system folders
        if any(_inside(path, other) for other in self.ignore):
            return False
        return is_directory or (not parts[-1].startswith(".") and is_image_name(parts[-1]))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class FolderWatches:
    """Keeps one watch per library folder in the right mode; see the module docstring."""

    def __init__(
        self,
        on_event: Callable[[int], None],
        on_full_reconcile: Callable[[str], None],
        *,
        poll_s: float = 30.0,
        ignore: list[str] | None = None,
        say: Callable[[str], None] | None = None,
        force_polling: bool = False,
        observer_factory: Callable[[], object] | None = None,
    ):
        self.on_event = on_event
        self.on_full_reconcile = on_full_reconcile
        self.poll_s = poll_s
        self.ignore = list(ignore or [])
        self.say = say or (lambda message: log.info("%s", message))
        self.force_polling = force_polling
        self._observer_factory = observer_factory
        self.states: dict[int, FolderState] = {}
        self.last_error: str | None = None
        self.limit_reported = False
        self._live = None
        self._live_mode = INOTIFY if sys.platform.startswith("linux") else NATIVE
        self._polling = None
        self._log_hook = _WatchdogLogHook(self._watchdog_trouble)
        self._lock = threading.Lock()  # status() may be read from other threads

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._log_hook.install()
        self._polling = PollingObserver(timeout=self.poll_s)
        self._polling.daemon = True
        self._polling.start()
        if self.force_polling:
            return
        try:
            if self._observer_factory is not None:
                self._live = self._observer_factory()
            else:
                from watchdog.observers import Observer

                self._live = Observer()
            self._live.daemon = True
            self._live.start()  # started empty: a folder that cannot be watched fails alone
        except OSError as exc:
            self._live = None
            self._error(f"live file watching is unavailable ({exc}); every folder is polled")
            if exc.errno == errno.EMFILE:
                self.say(
                    "photofind: the limit on inotify instances is reached: raise it with "
                    "`sudo sysctl fs.inotify.max_user_instances=512`"
                )

    def stop(self) -> None:
        for observer in (self._live, self._polling):
            if observer is not None:
                observer.stop()
        for observer in (self._live, self._polling):
            if observer is not None and observer.is_alive():
                observer.join(timeout=10)
        self._live = self._polling = None
        self._log_hook.remove()

    # -- keeping the watches right ----------------------------------------------------------

    def sync(self, folders: list[Folder]) -> list[tuple[Folder, str]]:
        """Bring every watch in line with the disk. Returns ``(folder, what happened)`` for
        each folder that needs a reconcile now (new, back, gone, re-watched)."""
        changed: list[tuple[Folder, str]] = []
        wanted = {f.id: f for f in folders}
        for folder_id in [i for i in self.states if i not in wanted]:
            self._unwatch(self.states.pop(folder_id))
        for folder in folders:
            state = self.states.get(folder.id)
            root_id = _root_id(folder.path)
            if root_id is None:
                if state is None or state.mode != OFFLINE:
                    if state is not None:
                        self._unwatch(state)
                    self._set(folder, FolderState(folder, OFFLINE, "folder is not reachable"))
                    changed.append((folder, "offline"))
                continue
            if state is None or state.mode == OFFLINE:
                self._set(folder, self._watch(folder, root_id))
                changed.append((folder, "watched" if state is None else "back"))
                continue
            if state.root_id != root_id or not self._alive(state):
                # Replaced by another folder of the same name, or its watch thread died.
                self._unwatch(state)
                self._set(folder, self._watch(folder, root_id))
                changed.append((folder, "re-watched"))
        return changed

    def verify(self) -> list[Folder]:
        """Re-check that live-watched folders are fully covered (sub-folders made since may
        not have fitted under the limit); those that are not move to polling."""
        moved = []
        for state in list(self.states.values()):
            if state.mode != INOTIFY:
                continue
            problem = self._coverage_problem(state.folder)
            if problem:
                self._unwatch(state)
                self._set(state.folder, self._poll(state.folder, state.root_id, problem))
                moved.append(state.folder)
        return moved

    def _set(self, folder: Folder, state: FolderState) -> None:
        with self._lock:
            self.states[folder.id] = state

    def _watch(self, folder: Folder, root_id) -> FolderState:
        handler = _Handler(folder, self.on_event, self.ignore)
        if self._live is None:
            return self._poll(folder, root_id, self.last_error or "live watching unavailable")
        fs_type = filesystem_type(folder.path)
        if fs_type in NETWORK_FILESYSTEMS:
            why = f"{fs_type} network file system: changes from other machines raise no events"
            return self._poll(folder, root_id, why)
        try:
            watch = self._live.schedule(
                handler, folder.path, recursive=True, event_filter=_EVENT_TYPES
            )
        except OSError as exc:
            return self._poll(folder, root_id, self._watch_failure(folder, exc))
        state = FolderState(folder, self._live_mode, None, watch, self._live, root_id)
        if self._live_mode == INOTIFY:
            problem = self._coverage_problem(folder)
            if problem:
                self._unwatch(state)
                return self._poll(folder, root_id, problem)
        return state

    def _poll(self, folder: Folder, root_id, reason: str) -> FolderState:
        handler = _Handler(folder, self.on_event, self.ignore)
        try:
            watch = self._polling.schedule(
                handler, folder.path, recursive=True, event_filter=_EVENT_TYPES
            )
        except OSError as exc:  # vanished in between: the next sync sees it offline
            return FolderState(folder, OFFLINE, f"cannot poll {folder.path}: {exc}")
        log.info("polling %s every %g s: %s", folder.path, self.poll_s, reason)
        return FolderState(folder, POLLING, reason, watch, self._polling, root_id)

    def _unwatch(self, state: FolderState) -> None:
        if state.watch is None:
            return
        # KeyError/OSError: its emitter already went away with the folder.
        with contextlib.suppress(KeyError, OSError):
            state.observer.unschedule(state.watch)
        state.watch = None

    def _alive(self, state: FolderState) -> bool:
        if state.watch is None or state.observer is None:
            return False
        if not state.observer.is_alive():
            return False
        return any(e.watch == state.watch and e.is_alive() for e in state.observer.emitters)

    # -- failures -----------------------------------------------------------------------------

    def _watch_failure(self, folder: Folder, exc: OSError) -> str:
        if exc.errno == errno.ENOSPC:
            self._report_limit(folder)
            return "inotify watch limit reached"
        if exc.errno == errno.EMFILE:
            self._error("inotify instance limit reached")
            return "inotify instance limit reached"
        reason = f"cannot watch {folder.path}: {exc.strerror or exc}"
        self._error(reason)
        return reason

    def _coverage_problem(self, folder: Folder) -> str | None:
        """Why the live watch of ``folder`` misses sub-folders, or None when it covers all."""
        watched = inotify_watched_inodes()
        if watched is None:
            return None  # no /proc: cannot check, trust the watch
        missing = [d for d in _walk_dirs(folder.path, self.ignore) if _inode_key(d) not in watched]
        if missing:
            # A sub-folder created this instant may not be watched *yet*: look again.
            threading.Event().wait(0.2)
            watched = inotify_watched_inodes() or set()
            missing = [d for d in missing if (k := _inode_key(d)) and k not in watched]
        if not missing:
            return None
        code = probe_inotify(missing[0])
        if code == errno.ENOSPC:
            self._report_limit(folder)
            return f"inotify watch limit reached ({len(missing)} sub-folders unwatched)"
        if code in (errno.EACCES, errno.EPERM):
            return None  # unreadable: the scanner cannot list it either and says so
        if code is None:
            return None  # watchable now: it was a race, the watch has it by now
        reason = f"cannot watch {missing[0]}: {os.strerror(code)}"
        self._error(reason)
        return reason

    def _report_limit(self, folder: Folder) -> None:
        with self._lock:
            self.last_error = "inotify watch limit reached"
        if self.limit_reported:
            return
        self.limit_reported = True
        limit = max_user_watches()
        suggest = max(524288, (limit or 0) * 4)
        self.say(
            WATCH_LIMIT_MESSAGE.format(
                folder=folder.path, poll=self.poll_s, limit=limit or "unknown", suggest=suggest
            )
        )

    def _error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
        log.warning("%s", message)

    def _watchdog_trouble(self, message: str) -> None:
        self._error(message)
        self.on_full_reconcile(message)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict:
        with self._lock:
            states = list(self.states.values())
            last_error = self.last_error
        by_mode: dict[str, list[str]] = {}
        for s in states:
            by_mode.setdefault(s.mode, []).append(s.folder.path)
        return {
            "watching": len(by_mode.get(INOTIFY, [])) + len(by_mode.get(NATIVE, [])),
            "polling": len(by_mode.get(POLLING, [])),
            "offline": len(by_mode.get(OFFLINE, [])),
            "folders": [
                {"path": s.folder.path, "mode": s.mode, "reason": s.reason} for s in states
            ],
            "poll_interval_s": self.poll_s,
            "watch_limit_reached": self.limit_reported,
            "last_error": last_error,
        }


class _WatchdogLogHook(logging.Handler):
    """watchdog reports a kernel queue overflow (events were lost) only in its log: listen
    there, so that an overflow triggers a full reconcile."""

    LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

    def __init__(self, callback: Callable[[str], None]):
        super().__init__(level=logging.WARNING)
        self.callback = callback
        self._listening = False

    # The loggers' levels are lowered to WARNING while at least one hook listens (a log
    # set quieter would hide the overflow) and set back when the last one is removed.
    _lock = threading.Lock()
    _installed = 0
    _saved_levels: dict[str, int] = {}

    def install(self) -> None:
        cls = type(self)
        with cls._lock:
            if self._listening:
                return
            self._listening = True
            if cls._installed == 0:
                for name in self.LOGGERS:
                    logger = logging.getLogger(name)
                    if logger.getEffectiveLevel() > logging.WARNING:
                        cls._saved_levels[name] = logger.level
                        logger.setLevel(logging.WARNING)
            cls._installed += 1
            for name in self.LOGGERS:
                logging.getLogger(name).addHandler(self)

    def remove(self) -> None:
        cls = type(self)
        with cls._lock:
            if not self._listening:
                return
            self._listening = False
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self)
            cls._installed -= 1
            if cls._installed == 0:
                for name, level in cls._saved_levels.items():
                    logging.getLogger(name).setLevel(level)
                cls._saved_levels.clear()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "overflow" in text.lower():
            self.callback("the kernel's event queue overflowed: events were lost")
        elif record.levelno >= logging.ERROR:
            self.callback(f"file watching failed: {text}")


# -- the kernel's view -----------------------------------------------------------------------


def _root_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _walk_dirs(root: str, ignore: list[str]):
    """Every folder under ``root`` watchdog would watch (symbolic links not followed)."""
    yield root
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and not any(_inside(path, i) for i in ignore):
                yield path


def _inode_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def inotify_watched_inodes() -> set[tuple[int, int, int]] | None:
    """``(major, minor, inode)`` of everything this process watches with inotify, read from
    ``/proc/self/fdinfo``; None where that cannot be read (not Linux)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    out: set[tuple[int, int, int]] = set()
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.startswith("inotify wd:"):
                continue
            fields = dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)
            try:
                ino, sdev = int(fields["ino"], 16), int(fields["sdev"], 16)
            except (KeyError, ValueError):
                continue
            # The kernel prints its internal dev_t: 12-bit major above a 20-bit minor.
            out.add((sdev >> 20, sdev & 0xFFFFF, ino))
    return out


def probe_inotify(path: str) -> int | None:
    """Try to add an inotify watch on ``path`` in a throw-away instance: the errno it fails
    with (ENOSPC: the user's watch limit), or None when it works."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return ctypes.get_errno()
    try:
        IN_ATTRIB = 0x4
        wd = libc.inotify_add_watch(fd, os.fsencode(path), IN_ATTRIB)
        return ctypes.get_errno() if wd < 0 else None
    finally:
        os.close(fd)


def max_user_watches() -> int | None:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None
