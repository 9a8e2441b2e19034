"""The query language of the search box and of ``photofind search``.

A query is a sum of weighted terms; each term is a sentence or a picture::

    beach + sunset - people           two sentences added, one subtracted
    2*beach + 0.5*sunset              weights: a number and ``*`` before a term
    img:/photos/cat.jpg + in winter   a picture (its vector) plus a sentence
    photo:123 - 0.5*blue background   a photo of the library by its catalog id
    "rock - paper - scissors"         double quotes keep + and - as words

Rules:

- ``+`` and ``-`` (or the minus sign ``−``) are operators only when they stand alone,
  spaces on both sides (or at the very start: ``- people + beach``). ``t-shirt``,
  ``black-and-white`` and ``5+`` stay words of the sentence.
- A weight is a positive number followed by ``*`` at the start of a term: ``2*beach``,
  ``0.5 * sunset``, from 0.001 to 1000 (beyond that the other terms no longer count, and
  a weight of 400 nines would be an infinite one). The sign comes from the operator before
  the term.
- ``img:PATH`` (or ``image:PATH``) is a picture: a photo of the library uses its stored
  vector, any other file is encoded. Quote a path holding `` + `` or `` - ``:
  ``img:"/my photos/a - b.jpg"``. ``photo:ID`` is a library photo by id (digits 0-9, at
  most SQLite's largest integer).
- ``person:NAME`` (or ``person:"Anna Smith"``) keeps the photos of a named person
  (``photofind people``): a filter, not a term. It stands alone between spaces, anywhere
  in the query; the rest ranks that person's photos (``person:Anna beach``: photos of
  Anna, the beach ones first). Several mean photos with all of them. A query of only
  ``person:`` parts lists the person's photos.
- A query needs at least one term with a positive sign, or a ``person:``.

The search engine turns a query into one vector: the weighted sum of the terms' unit
vectors, normalised again. Subtracting moves the query away from what a term shows, which
ranks photos without it higher; it cannot guarantee they are absent.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from photofind.errors import PhotofindError

TEXT = "text"
IMAGE = "image"  # a picture file, by path
PHOTO = "photo"  # a library photo, by catalog id

_OPERATORS = {"+": 1.0, "-": -1.0, "\u2212": -1.0}
# Quoted runs, whitespace runs, and runs of anything else: operators are whole tokens.
_TOKEN = re.compile(r'"[^"]*"|\s+|[^\s"]+|"')
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*\*\s*(.*)$", re.DOTALL)
_IMAGE_PREFIXES = ("img:", "image:")
_PHOTO_PREFIX = "photo:"
_PERSON_PREFIX = "person:"

MIN_WEIGHT = 0.001
MAX_WEIGHT = 1000.0
# Catalog ids are SQLite integers; a larger number could name no photo and overflows SQLite.
MAX_PHOTO_ID = 2**63 - 1


class QueryError(PhotofindError):
    """A query that cannot be understood; the message says where and why."""


@dataclass(frozen=True)
class Term:
    """One term: ``kind`` is TEXT, IMAGE or PHOTO; ``weight`` carries the sign."""

    kind: str
    value: str | int
    weight: float = 1.0

    def __post_init__(self):
        # The engine adds weight * unit vector: a bounded finite weight keeps the sum finite
        # (no inf, no NaN scores), whichever way the query was built.
        if not (isinstance(self.weight, numbers.Real) and math.isfinite(self.weight)):
            raise QueryError(f"term {self.value!r}: weight {self.weight!r} is not a finite number")
        if abs(self.weight) > MAX_WEIGHT:
            raise QueryError(
                f"term {self.value!r}: weight {self.weight:g} is larger than {MAX_WEIGHT:g}"
            )
        if self.kind == PHOTO and not (
            isinstance(self.value, numbers.Integral) and 0 <= self.value <= MAX_PHOTO_ID
        ):
            raise QueryError(f"photo id {self.value!r} is out of range (0 to {MAX_PHOTO_ID})")

    def __str__(self) -> str:
        if self.kind == TEXT:
            body = str(self.value)
            if any(op in body.split() for op in _OPERATORS) or '"' in body:
                body = '"' + body.replace('"', "") + '"'
        elif self.kind == IMAGE:
            path = str(self.value)
            body = f'img:"{path}"' if re.search(r"\s", path) else f"img:{path}"
        else:
            body = f"photo:{self.value}"
        size = abs(self.weight)
        return body if size == 1.0 else f"{size:g}*{body}"


@dataclass(frozen=True)
class Query:
    """A parsed query: terms in the order written, and the people its photos must show.
    Build with :func:`parse_query` or the constructors (``Query.text("beach") -
    Query.text("people")``, ``2 * Query.photo(7)``, ``Query.person("Anna")``)."""

    terms: tuple[Term, ...]
    people: tuple[str, ...] = ()

    @classmethod
    def text(cls, sentence: str, weight: float = 1.0) -> Query:
        return cls((Term(TEXT, sentence, weight),))

    @classmethod
    def image(cls, path, weight: float = 1.0) -> Query:
        return cls((Term(IMAGE, str(path), weight),))

    @classmethod
    def photo(cls, photo_id: int, weight: float = 1.0) -> Query:
        return cls((Term(PHOTO, int(photo_id), weight),))

    @classmethod
    def person(cls, name: str) -> Query:
        return cls((), (_person_name(name, name),))

    def __add__(self, other: Query) -> Query:
        return Query(self.terms + other.terms, _joined(self.people, other.people))

    def __sub__(self, other: Query) -> Query:
        # "- person:X" cannot exclude a person: a person is a filter, not a direction.
        if other.people:
            raise QueryError("a person cannot be subtracted: person: keeps photos, never drops")
        return Query(self.terms + tuple(_scaled(t, -1.0) for t in other.terms), self.people)

    def __mul__(self, factor: float) -> Query:
        return Query(tuple(_scaled(t, float(factor)) for t in self.terms), self.people)

    __rmul__ = __mul__

    @property
    def is_plain_text(self) -> bool:
        """One positive sentence and nothing else: the case a fixed score floor fits."""
        return len(self.terms) == 1 and self.terms[0].kind == TEXT and self.terms[0].weight > 0

    def __str__(self) -> str:
        out = ""
        for i, term in enumerate(self.terms):
            sign = "-" if term.weight < 0 else "+"
            if i == 0:
                out = f"- {term}" if sign == "-" else str(term)
            else:
                out += f" {sign} {term}"
        people = " ".join(
            f'person:"{name}"' if re.search(r"\s", name) else f"person:{name}"
            for name in self.people
        )
        return f"{people} {out}".strip() if people else out


def _joined(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(name for name in b if name not in a)


def _person_name(raw: str, query: str) -> str:
    name = " ".join(str(raw).replace('"', "").split())
    if not name:
        raise QueryError(
            f"query {_brief(query)}: person: needs a name after it "
            '(person:Anna, person:"Anna Smith")'
        )
    return name


def _take_people(text: str) -> tuple[str, tuple[str, ...]]:
    """The query without its ``person:`` parts, and the names they give, in order.

    A part starts a whitespace-separated token (``person:Anna``, ``person:"Anna Smith"``);
    inside double quotes it is a word of a sentence."""
    tokens = [m.group() for m in _TOKEN.finditer(text)]
    kept: list[str] = []
    names: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        at_start = not kept or kept[-1].isspace()
        if at_start and token.lower().startswith(_PERSON_PREFIX) and not token.startswith('"'):
            raw = token[len(_PERSON_PREFIX) :]
            if not raw and i + 1 < len(tokens) and tokens[i + 1].startswith('"'):
                i += 1
                raw = tokens[i]
                if raw == '"':
                    break  # an unclosed quote: _split says where
            name = _person_name(raw, text)
            if name not in names:
                names.append(name)
            i += 1
            continue
        kept.append(token)
        i += 1
    else:
        return "".join(kept), tuple(names)
    return text, tuple(names)


def _brief(text: str, limit: int = 80) -> str:
    """Quoted for a message; a long text cut, so that the error stays one readable line."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def _scaled(term: Term, factor: float) -> Term:
    return Term(term.kind, term.value, term.weight * factor)


def _split(text: str) -> list[tuple[float, str]]:
    """``(sign, raw term text)`` pairs; quotes are removed from the term text."""
    parts: list[tuple[float, str]] = []
    sign, current, seen_any = 1.0, [], False
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            raise QueryError(
                f"query {_brief(text)}: a double quote at column {match.start() + 1} "
                "is never closed"
            )
        if token in _OPERATORS:
            body = "".join(current).strip()
            if body:
                parts.append((sign, body))
            elif seen_any:
                raise QueryError(
                    f"query {_brief(text)}: operator {token!r} at column {match.start() + 1} "
                    "follows another operator or nothing"
                )
            sign, current, seen_any = _OPERATORS[token], [], True
            continue
        if token.startswith('"'):
            token = token[1:-1]
        current.append(token)
    body = "".join(current).strip()
    if body:
        parts.append((sign, body))
    elif seen_any:
        raise QueryError(f"query {_brief(text)} ends with an operator: a term is missing after it")
    return parts


def _term(sign: float, raw: str, query: str) -> Term:
    weight = 1.0
    match = _WEIGHT.match(raw)
    if match:
        written = match.group(1)
        weight = float(written)
        raw = match.group(2).strip()
        if weight == 0:
            raise QueryError(f"query {_brief(query)}: weight 0 makes the term {raw!r} do nothing")
        if not raw:
            raise QueryError(f"query {_brief(query)}: the weight {written}* has no term after it")
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise QueryError(
                f"query {_brief(query)}: weight {_brief(written, 24)} is out of range; "
                f"weights go from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}"
            )
    lowered = raw.lower()
    for prefix in _IMAGE_PREFIXES:
        if lowered.startswith(prefix):
            path = raw[len(prefix) :].strip()
            if not path:
                raise QueryError(f"query {_brief(query)}: {prefix} needs a picture's path after it")
            return Term(IMAGE, path, sign * weight)
    if lowered.startswith(_PHOTO_PREFIX):
        ident = raw[len(_PHOTO_PREFIX) :].strip()
        # isdigit() alone lets "²" through, which int() refuses.
        if not (ident.isascii() and ident.isdigit()):
            raise QueryError(
                f"query {_brief(query)}: photo: needs a photo id (a whole number, digits 0-9), "
                f"got {_brief(ident, 24)}"
            )
        # Length first: int() of thousands of digits is slow, then refused by Python.
        if len(ident.lstrip("0")) > len(str(MAX_PHOTO_ID)) or int(ident) > MAX_PHOTO_ID:
            raise QueryError(
                f"query {_brief(query)}: photo id {_brief(ident, 24)} is out of range; "
                f"photo ids go up to {MAX_PHOTO_ID}"
            )
        return Term(PHOTO, int(ident), sign * weight)
    return Term(TEXT, " ".join(raw.split()), sign * weight)


def parse_query(text: str) -> Query:
    """Parse the query syntax described in this module's docstring."""
    if not text or not text.strip():
        raise QueryError("the query is empty: type what the photos show")
    rest, people = _take_people(text)
    if people and not rest.strip():
        return Query((), people)
    if people and rest.split()[-1] in _OPERATORS:
        raise QueryError(
            f"query {_brief(text)}: an operator stands next to a person: part; person: is a "
            "filter, written beside the terms with a space (person:Anna beach)"
        )
    terms = tuple(_term(sign, raw, text) for sign, raw in _split(rest))
    if not terms:
        raise QueryError(f"query {_brief(text)} has no term")
    if not any(t.weight > 0 for t in terms):
        raise QueryError(
            f"query {_brief(text)} only subtracts: add what the photos should show "
            "(for example 'beach - people')"
        )
    return Query(terms, people)
