"""A library's settings: declared options, a schema version with migrations, one file.

Every choice that outlives a session lives in ``<library>/settings.json``, one file per
library (a demo library and a real one keep their own), read and written only through
:func:`load` and :func:`update` — by ``photofind models use``, ``photofind gui`` and the
app's Settings dialog and window placement alike.

- **Declared options** (:data:`OPTIONS`, after Picard's option registry): each has a dotted
  key (``gui.thumbnail_size`` is ``data["gui"]["thumbnail_size"]``), a type, a default and,
  where it has them, bounds or choices. Code asks for a key and gets a checked value.
- **A schema version** (the ``version`` key) with one migration step per version (after
  napari's settings migrators and the catalog's steps). Version 0 is the unversioned file
  written before this module; a file of an older version is migrated in place, atomically,
  the first time it is loaded.
- **Nothing is destroyed that this version does not understand**: keys it does not know
  (a newer app's) are kept as they are; a value of the wrong type or out of bounds is left
  in the file (a newer app may accept it) and the default, or the nearest bound, is used
  with a warning naming the key. A file newer than :data:`VERSION` is read, never migrated
  down. A file that is not a JSON object, or is larger than :data:`MAX_BYTES`, is renamed
  ``settings.json.bad-N`` beside it and the defaults are used, with a warning saying where it
  went.
- **Writes are atomic and serialised, last writer wins per key**: :func:`update` takes an
  exclusive lock on ``settings.json.lock``, re-reads the file, changes only the keys it was
  given and replaces the file in one step (:mod:`photofind.atomic`). Two processes changing
  different keys at the same moment both keep their change; a reader never needs the lock,
  since it sees the old file or the new one, never half of either.

Warnings go to the ``photofind.settings`` logger: the CLI prints them on stderr, the app
writes them to its log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photofind import jsonfile
from photofind.atomic import atomic_write_text
from photofind.errors import PhotofindError

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
LOCK_SUFFIX = ".lock"
#: Settings are a few hundred bytes; a file past this is not one this app wrote.
MAX_BYTES = 1 << 20
#: The schema version this app writes.
VERSION = 1


class BadValue(ValueError):
    """A stored value this version cannot use; the message says why."""


# -- declared options ----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting: where it lives in the file, its type, default and bounds."""

    key: str
    kind: type
    default: Any
    help: str
    low: int | None = None
    high: int | None = None
    choices: tuple = ()
    # For structured values: returns the value to use, or raises BadValue.
    check: Callable[[Any], Any] | None = None

    def parse(self, value: Any) -> tuple[Any, str | None]:
        """The value to use for stored ``value``, and why it differs when it does."""
        # bool is an int to Python but never a number of pixels.
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise BadValue(f"should be {_KIND_NAMES.get(self.kind, self.kind.__name__)}")
        if self.choices and value not in self.choices:
            raise BadValue(f"should be one of {', '.join(map(repr, self.choices))}")
        if self.low is not None and value < self.low:
            return self.low, f"{value} is below {self.low}"
        if self.high is not None and value > self.high:
            return self.high, f"{value} is above {self.high}"
        if self.check is not None:
            return self.check(value), None
        return value, None


_KIND_NAMES = {bool: "true or false", int: "a whole number", str: "text", dict: "an object"}


def _model_name(value: str) -> str:
    # A model is named by its package name or by its folder, so any path is allowed.
    if not value or len(value) > 4096 or "\x00" in value:
        raise BadValue("is not a model name or folder")
    return value


WINDOW_MIN = 100


def _window(value: dict) -> dict:
    """The main window's last geometry: ``x``, ``y``, ``width``, ``height``, ``maximized``."""
    sides = ("x", "y", "width", "height")
    if not all(isinstance(value.get(k), int) and not isinstance(value[k], bool) for k in sides):
        raise BadValue(f"should hold whole numbers {', '.join(sides)}")
    if value["width"] < WINDOW_MIN or value["height"] < WINDOW_MIN:
        raise BadValue(f"is smaller than {WINDOW_MIN}×{WINDOW_MIN}")
    return {**{k: value[k] for k in sides}, "maximized": value.get("maximized") is True}


PROVIDERS = ("auto", "cpu", "cuda")
#: photofind.clip.variants.PRECISIONS (settings sit below clip in the layers, so repeated)
PRECISIONS = ("fast", "exact")

OPTIONS: dict[str, Option] = {
    o.key: o
    for o in (
        Option(
            "model",
            str,
            None,
            "the library's model: `photofind models use NAME` or the Settings dialog",
            check=_model_name,
        ),
        # A key a version 1 file may lack (its default then applies) and an older photofind
        # keeps untouched: no schema step is needed.
        Option(
            "precision",
            str,
            "fast",
            "fast: the model's int8 encoders on a CPU, its fp16 ones on a GPU, where their "
            "check against fp32 passed; "
            "exact: always fp32 (a change re-indexes the library)",
            choices=PRECISIONS,
        ),
        Option(
            "gui.provider",
            str,
            "auto",
            "where the app runs the model",
            choices=PROVIDERS,
        ),
        Option("gui.thumbnail_size", int, 160, "thumbnail size in pixels", low=64, high=320),
        Option(
            "gui.reconcile_minutes",
            int,
            10,
            "minutes between full re-checks of every watched folder",
            low=1,
            high=24 * 60,
        ),
        Option("gui.relevance_cutoff", bool, True, "hide results that do not stand out"),
        Option("gui.window", dict, None, "the main window's last place", check=_window),
        Option(
            "faces.enabled",
            bool,
            True,
            "find and recognise faces (off: every face, embedding and face thumbnail is "
            "deleted, and the face pass does not run)",
        ),
        Option(
            "faces.min_faces",
            int,
            3,
            "faces an unnamed group needs before it is shown as a person",
            low=1,
            high=1000,
        ),
    )
}


# -- migrations ----------------------------------------------------------------------------


def _v0_to_v1(data: dict) -> None:
    """Version 0 (photofind before settings had a version) wrote ``model`` at the top and the
    app's keys under ``gui``; version 1 keeps that layout, so an older photofind still reads
    a version 1 file, and adds only ``version``."""


#: ``MIGRATIONS[n]`` turns a version ``n`` file into version ``n + 1``, in place.
MIGRATIONS: tuple[Callable[[dict], None], ...] = (_v0_to_v1,)
assert len(MIGRATIONS) == VERSION, "one migration step per version"


def file_version(data: Mapping) -> int:
    """The schema version of ``data``; a missing or unusable one reads as 0."""
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return 0
    return version


def migrate(data: dict, steps=MIGRATIONS) -> bool:
    """Bring ``data`` up to ``len(steps)`` in place; True when anything ran."""
    version = file_version(data)
    if version >= len(steps):
        return False
    for step in steps[version:]:
        step(data)
        version += 1
        data["version"] = version
    return True


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings(Mapping):
    """The checked value of every declared option, as one file held them."""

    values: dict[str, Any]
    version: int = VERSION

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def settings_path(library: Path) -> Path:
    return Path(library) / SETTINGS_FILE


def _lookup(data: Mapping, key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _checked(data: Mapping, path: Path, report: bool) -> Settings:
    values = {}
    for key, option in OPTIONS.items():
        found, stored = _lookup(data, key)
        if not found or stored is None:
            values[key] = option.default
            continue
        try:
            values[key], note = option.parse(stored)
        except BadValue as exc:
            values[key], note = option.default, f"{exc}; the default {option.default!r} is used"
        else:
            if note is not None:
                note = f"{note}; {values[key]!r} is used"
        if note is not None and report:
            log.warning("%s: %s %s", path, key, note)
    if report:
        for parent in {key.partition(".")[0] for key in OPTIONS if "." in key}:
            if parent in data and not isinstance(data[parent], Mapping):
                log.warning("%s: %s should be an object; its defaults are used", path, parent)
    return Settings(values, file_version(data))


class _Unusable(Exception):
    """The file is not a settings file: its reason."""


def _read(path: Path) -> dict | None:
    """The file's object; None when there is no file. _Unusable when it is not settings;
    PhotofindError when it exists but cannot be read (then it must not be replaced)."""
    try:
        return jsonfile.read_json_object(path, MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PhotofindError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except jsonfile.JsonObjectError as exc:
        reason = {
            jsonfile.TOO_LARGE: f"is larger than {MAX_BYTES:,} bytes",
            jsonfile.NOT_JSON: f"is not JSON ({exc.detail})",
            jsonfile.TOO_DEEP: "is JSON nested too deeply",
            jsonfile.NOT_OBJECT: "should hold a JSON object",
        }[exc.problem]
        raise _Unusable(reason) from None


def _set_aside(path: Path, reason: str) -> None:
    """Rename the unusable file out of the way, keeping it for the user to look at."""
    n = 1
    while path.with_name(f"{path.name}.bad-{n}").exists():
        n += 1
    kept = path.with_name(f"{path.name}.bad-{n}")
    os.rename(path, kept)
    log.warning("%s %s; it is kept as %s and the default settings are used", path, reason, kept)


@contextlib.contextmanager
def locked(library: Path) -> Iterator[None]:
    """Hold the library's settings lock: one read-modify-write at a time, across processes
    and threads (each holder opens the lock file itself, and ``flock`` locks belong to an
    open file, so two threads of one process exclude each other too)."""
    lock_path = Path(library) / (SETTINGS_FILE + LOCK_SUFFIX)
    with open(lock_path, "a+b") as fh:
        if os.name == "nt":
            import msvcrt

            fh.seek(0)
            # Waits up to ~10 s, then OSError: a holder is only ever a few writes long.
            msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _current(path: Path) -> dict:
    """Under the lock: the file's object at the current version (an unusable file set aside)."""
    try:
        data = _read(path)
    except _Unusable as exc:
        _set_aside(path, str(exc))
        data = None
    data = {} if data is None else data
    migrate(data)
    return data


def _write(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load(library: Path) -> Settings:
    """The library's settings. Never raises over the file's content: a missing, unreadable
    or unusable file gives the defaults, with a warning when something was wrong. An older
    version is migrated on disk here (where the library is writable)."""
    path = settings_path(library)
    try:
        data = _read(path)
    except PhotofindError as exc:
        log.warning("%s; the default settings are used", exc)
        return _checked({}, path, report=False)
    except _Unusable as exc:
        try:
            with locked(library):
                # Sets it aside, unless another process replaced it meanwhile.
                return _checked(_current(path), path, report=True)
        except OSError as err:  # read-only media: the file stays, the defaults are used
            log.warning("%s %s; the default settings are used (%s)", path, exc, err)
        return _checked({}, path, report=False)
    if data is None:
        return _checked({}, path, report=False)
    stored = data.get("version", 0)
    if file_version(data) != stored:
        log.warning("%s: version %r is not a schema version; read as version 0", path, stored)
    elif stored > VERSION:
        log.info(
            "%s is version %s, from a newer photofind; read as version %s", path, stored, VERSION
        )
    if file_version(data) < VERSION:
        migrated = dict(data)
        migrate(migrated)
        try:
            with locked(library):
                current = _current(path)
                _write(path, current)
            data = current
        except (OSError, PhotofindError) as exc:
            # A read-only library is read as migrated and left as it is.
            log.info("%s: kept at version %s on disk (%s)", path, file_version(data), exc)
            data = migrated
    return _checked(data, path, report=True)


def update(library: Path, changes: Mapping[str, Any]) -> Settings:
    """Store ``changes`` (declared key → value; None removes the key, so its default applies)
    and return the settings as written. Only those keys change; the rest of the file, as it
    is on disk at that moment, is kept. Raises ValueError for a value the option refuses
    (a caller's mistake), PhotofindError or OSError when the file cannot be written."""
    for key, value in changes.items():
        option = OPTIONS[key]  # KeyError: not a declared option
        if value is not None:
            try:
                _, note = option.parse(value)
            except BadValue as exc:
                raise BadValue(f"{key}: {value!r} {exc}") from None
            if note is not None:
                raise BadValue(f"{key}: {note}")
    library = Path(library)
    library.mkdir(parents=True, exist_ok=True)
    path = settings_path(library)
    with locked(library):
        data = _current(path)
        for key, value in changes.items():
            *parents, last = key.split(".")
            node = data
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}  # a non-object here was already warned about and unusable
                node = node[part]
            if value is None:
                node.pop(last, None)
            else:
                node[last] = value
        _write(path, data)
    return _checked(data, path, report=False)
