"""Which photos a search may return: folders, capture dates, file types and people.

:class:`SearchFilter` says it; :class:`PhotoTable` turns it into the allowed item ids, from
columns of every catalogued photo read once per catalog generation (people are read at every
query: naming and merging change them without a new generation). Used by
:mod:`photofind.search`, which re-exports what callers use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np

from photofind.errors import PhotofindError
from photofind.formats.kinds import type_extensions
from photofind.library.companions import companions


class SearchError(PhotofindError):
    """A search that cannot run as asked (model mismatch, unknown photo, bad filter)."""


def _period(value, *, end: bool) -> str:
    """The start (or the exclusive end) of a date given as text, date or datetime, as an
    ISO string comparable with the catalog's capture dates."""
    if isinstance(value, datetime):
        moment = value + timedelta(seconds=1) if end else value
        return moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if isinstance(value, date):
        day = value + timedelta(days=1) if end else value
        return datetime(day.year, day.month, day.day).isoformat(timespec="seconds")
    text = str(value).strip()
    try:
        if len(text) == 4 and text.isdigit():  # a year
            year = int(text) + (1 if end else 0)
            return datetime(year, 1, 1).isoformat(timespec="seconds")
        if len(text) == 7 and text[4] == "-":  # a month
            year, month = int(text[:4]), int(text[5:])
            if end:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            return datetime(year, month, 1).isoformat(timespec="seconds")
        if len(text) == 10:
            return _period(date.fromisoformat(text), end=end)
        return _period(datetime.fromisoformat(text), end=end)
    except ValueError:
        raise SearchError(
            f"date {text!r} not understood: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None


@dataclass(frozen=True)
class SearchFilter:
    """Which photos a search may return.

    ``folders``: photos inside any of these folders (subfolders included). ``after`` /
    ``before``: capture date bounds, inclusive, at the precision given (``before="2023"``
    keeps all of 2023); a photo without an EXIF date is dated by its file's modification
    time. ``types``: file extensions or type names (``jpg`` also matches ``jpeg``, ``raw``
    every camera RAW extension, ``video`` every video:
    :func:`photofind.formats.kinds.type_extensions`). ``people``: names (or
    ids) of people of :mod:`photofind.people`; a photo must show every one of them.
    """

    folders: tuple[str, ...] = ()
    after: str | date | None = None
    before: str | date | None = None
    types: tuple[str, ...] = ()
    people: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.folders, (str, os.PathLike)):
            object.__setattr__(self, "folders", (self.folders,))
        if isinstance(self.types, str):
            object.__setattr__(self, "types", tuple(self.types.split(",")))
        if isinstance(self.people, str):
            object.__setattr__(self, "people", (self.people,))
        # Check the dates now so that a typo fails before any searching.
        if self.after is not None:
            _period(self.after, end=False)
        if self.before is not None:
            _period(self.before, end=True)

    @property
    def is_empty(self) -> bool:
        return (
            not self.folders
            and self.after is None
            and self.before is None
            and not self.types
            and not self.people
        )

    def with_people(self, people: Sequence[str]) -> SearchFilter:
        """This filter, also keeping only photos of ``people`` (a query's ``person:``)."""
        more = tuple(p for p in people if p not in self.people)
        return replace(self, people=self.people + more) if more else self

    def extensions(self) -> set[str]:
        out: set[str] = set()
        for t in self.types:
            out.update(type_extensions(t))
        return out


class PhotoTable:
    """Columns of every catalogued photo that filters look at, as numpy arrays."""

    def __init__(self, catalog):
        ids, paths, dates, exts = [], [], [], []
        for photo in catalog.photos():
            ids.append(photo.id)
            paths.append(photo.path)
            if photo.capture_date:
                dates.append(photo.capture_date[:19])
            else:
                moment = datetime.fromtimestamp(photo.mtime_ns / 1e9)
                dates.append(moment.isoformat(timespec="seconds"))
            exts.append(os.path.splitext(photo.path)[1][1:].lower())
        self.ids = np.asarray(ids, dtype=np.int64)
        self.paths = np.asarray(paths, dtype=str)
        self.dates = np.asarray(dates, dtype=str)
        self.exts = np.asarray(exts, dtype=str)
        self.vector_ids, self.vector_items = catalog.vector_items()
        # A RAW (or Live Photo clip) beside its JPEG/HEIC is shown through that one.
        groups = companions(paths)
        id_of = dict(zip(paths, ids))
        #: lead item id -> its companions' paths; companion item id -> its lead's id
        self.companions = {id_of[lead]: found for lead, found in groups.items()}
        self.lead_of = {id_of[c]: id_of[lead] for lead, found in groups.items() for c in found}
        # The answers for the last few filters and item sets: a user runs query after query
        # with one filter (a folder, a year), and the columns do not change within a table.
        self._lock = threading.Lock()
        self._items: dict[SearchFilter, np.ndarray] = {}
        self._vectors: dict[bytes, np.ndarray] = {}

    def hidden(self, allowed: np.ndarray | None) -> frozenset[int]:
        """The companions shown through their lead, among the items a filter ``allowed``
        (None: all); a companion whose lead the filter leaves out (``--type raw``) shows
        by itself."""
        if allowed is None:
            return frozenset(self.lead_of)
        leads = set(allowed.tolist())
        return frozenset(c for c, lead in self.lead_of.items() if lead in leads)

    def vectors_of(self, items: np.ndarray) -> np.ndarray:
        """The vector ids of ``items`` (what the vector index filters on)."""
        key = np.asarray(items, dtype=np.int64).tobytes()
        with self._lock:
            found = self._vectors.get(key)
        if found is None:
            found = self.vector_ids[np.isin(self.vector_items, items)]
            self._remember(self._vectors, key, found)
        return found

    def allowed(self, f: SearchFilter, catalog) -> np.ndarray:
        """The item ids ``f`` allows; ``catalog`` answers who is in which photo (faces change
        without a new catalog generation, so they are read at every query, not cached)."""
        columns = replace(f, people=())
        try:
            hash(columns)
        except TypeError:  # a caller's list of folders: worked out each time
            columns = None
        with self._lock:
            ids = self._items.get(columns) if columns is not None else None
        if ids is None:
            ids = self.ids[self._columns_keep(f)]
            if columns is not None:
                self._remember(self._items, columns, ids)
        for name in f.people:
            ids = ids[np.isin(ids, person_photos(catalog, name))]
        return ids

    def _remember(self, cache: dict, key, value, most: int = 8) -> None:
        value.setflags(write=False)  # handed to every later caller
        with self._lock:
            cache[key] = value
            while len(cache) > most:
                cache.pop(next(iter(cache)))

    def _columns_keep(self, f: SearchFilter) -> np.ndarray:
        """Which rows the folders, dates and types of ``f`` keep."""
        keep = np.ones(self.ids.size, dtype=bool)
        if f.folders:
            inside = np.zeros(self.ids.size, dtype=bool)
            for folder in f.folders:
                prefix = os.path.join(os.path.abspath(os.fspath(folder)), "")
                inside |= np.char.startswith(self.paths, prefix)
            keep &= inside
        if f.after is not None:
            keep &= self.dates >= _period(f.after, end=False)
        if f.before is not None:
            keep &= self.dates < _period(f.before, end=True)
        if f.types:
            keep &= np.isin(self.exts, sorted(f.extensions()))
        return keep


def find_person(catalog, name: str):
    """The person called ``name`` (exactly, else ignoring case), or numbered so."""
    person = catalog.person_by_name(name)
    if person is None:
        folded = name.casefold()
        matches = [
            p
            for p in catalog.people(include_hidden=True)
            if p.name is not None and p.name.casefold() == folded
        ]
        person = matches[0] if len(matches) == 1 else None
    if person is None and name.isascii() and name.isdigit() and len(name) < 19:
        person = catalog.person(int(name))
    if person is None:
        known = sorted(p.name for p in catalog.people(include_hidden=True) if p.name)
        listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "") or "none yet"
        raise SearchError(
            f"no person named {name!r} in the library (named people: {listed}; "
            "`photofind people list` shows them all)"
        )
    return person


def person_photos(catalog, name: str) -> np.ndarray:
    """The ids of the photos showing the person ``name`` (:func:`find_person`)."""
    person = find_person(catalog, name)
    return np.asarray([p.id for p in catalog.photos_of(person.id)], dtype=np.int64)
