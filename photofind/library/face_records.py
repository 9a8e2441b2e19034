"""The catalog's faces and people (schema v4): what the face analyser found, who it is.

:class:`FaceRecords` is a part of :class:`photofind.library.catalog.Catalog` (it uses the
catalog's one connection, lock and write transactions), kept in its own module so that the
faces' tables have their rules in one place:

- a face pass writes an item's faces and its ``analyses`` row in one transaction
  (:meth:`FaceRecords.record_faces`), so a killed pass leaves each item with all of its
  faces or none, and the next pass does exactly the ones without;
- the user's word is kept apart from the machine's: naming, moving and merging mark a
  face ``assigned_by = 'user'``, and only faces not so marked are moved by
  :meth:`FaceRecords.apply_grouping` (the k-NN and the clustering of
  :mod:`photofind.people`, which sits above the library);
- two people are joined only by :meth:`FaceRecords.merge_people`, never by a grouping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from photofind.library.catalog_rows import CatalogError

FACES = "faces"  # the face analyser's name in the analyses table
USER = "user"
AUTO = "auto"


@dataclass(frozen=True)
class FaceRecord:
    """A face as the analyser hands it to the catalog; the box in full-size pixels."""

    box: tuple[int, int, int, int]  # x, y, w, h
    score: float
    landmarks: np.ndarray  # (5, 2) float32
    embedding: np.ndarray  # (128,) float32
    thumb: bytes | None  # a small JPEG
    frame_ms: int | None = None


@dataclass(frozen=True)
class StoredFace:
    id: int
    item_id: int
    box: tuple[int, int, int, int]  # x, y, w, h
    score: float
    person_id: int | None
    assigned_by: str | None
    #: the time of the video frame the face is in; None in a still
    frame_ms: int | None = None


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None  # None: an unnamed group
    hidden: bool
    face_count: int
    photo_count: int
    example_face_id: int | None  # the most confident of its faces
    example_path: str | None  # the photo that face is in


@dataclass(frozen=True)
class FaceState:
    """Every face of one model as the grouping needs it, in face id order."""

    ids: np.ndarray  # int64
    embeddings: np.ndarray  # (n, 128) float32
    person_ids: list[int | None]
    assigned_by: list[str | None]
    named: dict[int, str]  # person id -> name, of the named people
    rejected: dict[int, set[int]]  # face id -> the people it is not


_PERSON_FACES = "faces f WHERE f.person_id = p.id AND f.model_id = ?"


class FaceRecords:
    """The faces and people methods of the catalog (see the module's docstring)."""

    # -- written by the face pass --------------------------------------------------------

    def record_faces(
        self,
        model_id: str,
        done: Iterable[tuple[int, Sequence[FaceRecord]]],
        failed: Iterable[tuple[int, str]] = (),
    ) -> list[int]:
        """An item's faces replace the ones it had of ``model_id`` and its face state
        becomes done (``done``) or failed with the reason (``failed``), in one
        transaction. Items removed meanwhile are skipped; returns the items written."""
        written: list[int] = []
        with self._write() as conn:
            gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            outcomes = [(i, faces, None) for i, faces in done]
            outcomes += [(i, (), reason) for i, reason in failed]
            for item_id, faces, reason in outcomes:
                if not conn.execute("SELECT 1 FROM photos WHERE id = ?", (item_id,)).fetchone():
                    continue
                conn.execute(
                    "DELETE FROM faces WHERE item_id = ? AND model_id = ?", (item_id, model_id)
                )
                for face in faces:
                    x, y, w, h = (int(v) for v in face.box)
                    conn.execute(
                        "INSERT INTO faces(item_id, frame_ms, x, y, w, h, score, landmarks, "
                        "embedding, thumb, model_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            item_id,
                            face.frame_ms,
                            x,
                            y,
                            w,
                            h,
                            float(face.score),
                            np.asarray(face.landmarks, "<f4").tobytes(),
                            np.asarray(face.embedding, "<f4").tobytes(),
                            face.thumb,
                            model_id,
                        ),
                    )
                status = "failed" if reason is not None else "done"
                self._set_analysis(conn, item_id, FACES, model_id, status, reason, None, gen)
                written.append(item_id)
        return written

    def drop_other_faces(self, model_id: str) -> int:
        """A new face model is in use: the faces of the others go (their embeddings cannot
        be compared with its). Returns how many."""
        with self._write() as conn:
            return conn.execute("DELETE FROM faces WHERE model_id != ?", (model_id,)).rowcount

    def forget_faces(self) -> int:
        """Every face, person and face analyser state, gone (face recognition turned off,
        ``photofind people forget``). Returns how many faces went.

        ``secure_delete`` makes SQLite overwrite the freed pages with zeros, and the
        checkpoint moves them out of the write-ahead log into the file: the embeddings and
        face thumbnails do not linger in free pages, where a file viewer would find them."""
        with self._lock:
            self._conn.execute("PRAGMA secure_delete = ON")
        try:
            with self._write() as conn:
                gone = conn.execute("DELETE FROM faces").rowcount
                conn.execute("DELETE FROM face_rejections")
                conn.execute("DELETE FROM people")
                conn.execute("DELETE FROM analyses WHERE analyser = ?", (FACES,))
                conn.execute("DELETE FROM meta WHERE key = ?", (f"analyser:{FACES}",))
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            with self._lock:
                self._conn.execute("PRAGMA secure_delete = OFF")
        return gone

    # -- read ---------------------------------------------------------------------------

    def _face_model(self, model_id: str | None) -> str | None:
        return model_id if model_id is not None else self.analyser_model(FACES)

    def faces(self, item_id: int | None = None, *, model_id: str | None = None) -> list:
        """The faces (of one item, or all) of the face model in use, in id order."""
        model_id = self._face_model(model_id)
        where, params = "model_id = ?", [model_id]
        if item_id is not None:
            where += " AND item_id = ?"
            params.append(item_id)
        rows = self._query(
            f"SELECT id, item_id, x, y, w, h, score, person_id, assigned_by, frame_ms FROM faces "
            f"WHERE {where} ORDER BY id",
            params,
        )
        return [StoredFace(r[0], r[1], tuple(r[2:6]), r[6], r[7], r[8], r[9]) for r in rows]

    def face(self, face_id: int) -> StoredFace | None:
        rows = self._query(
            "SELECT id, item_id, x, y, w, h, score, person_id, assigned_by FROM faces WHERE id = ?",
            (face_id,),
        )
        return (
            StoredFace(rows[0][0], rows[0][1], tuple(rows[0][2:6]), *rows[0][6:]) if rows else None
        )

    def faces_of(self, person_id: int, *, model_id: str | None = None) -> list:
        """The faces on a person, the most confident first."""
        rows = self._query(
            "SELECT id, item_id, x, y, w, h, score, person_id, assigned_by FROM faces "
            "WHERE person_id = ? AND model_id = ? ORDER BY score DESC, id",
            (person_id, self._face_model(model_id)),
        )
        return [StoredFace(r[0], r[1], tuple(r[2:6]), r[6], r[7], r[8]) for r in rows]

    def face_names(self, item_id: int) -> list[tuple[StoredFace, str | None]]:
        """An item's faces with the name of their person (None: unnamed or on none)."""
        names = dict(self._query("SELECT id, name FROM people"))
        return [(f, names.get(f.person_id)) for f in self.faces(item_id)]

    def face_thumb(self, face_id: int) -> bytes | None:
        rows = self._query("SELECT thumb FROM faces WHERE id = ?", (face_id,))
        return rows[0][0] if rows else None

    def face_state(self, model_id: str | None = None) -> FaceState:
        model_id = self._face_model(model_id)
        with self._lock:
            rows = self._query(
                "SELECT id, embedding, person_id, assigned_by FROM faces WHERE model_id = ? "
                "ORDER BY id",
                (model_id,),
            )
            named = dict(self._query("SELECT id, name FROM people WHERE name IS NOT NULL"))
            rejected: dict[int, set[int]] = {}
            for face_id, person_id in self._query(
                "SELECT r.face_id, r.person_id FROM face_rejections r "
                "JOIN faces f ON f.id = r.face_id WHERE f.model_id = ?",
                (model_id,),
            ):
                rejected.setdefault(face_id, set()).add(person_id)
        embeddings = np.stack([np.frombuffer(r[1], "<f4") for r in rows]) if rows else None
        return FaceState(
            ids=np.asarray([r[0] for r in rows], np.int64),
            embeddings=embeddings if embeddings is not None else np.zeros((0, 128), np.float32),
            person_ids=[r[2] for r in rows],
            assigned_by=[r[3] for r in rows],
            named=named,
            rejected=rejected,
        )

    def people(self, *, include_hidden: bool = False, model_id: str | None = None) -> list:
        """Every person with their counts, the most faces first (then by id)."""
        model_id = self._face_model(model_id)
        hidden = "" if include_hidden else "WHERE p.hidden = 0"
        rows = self._query(
            f"SELECT p.id, p.name, p.hidden, "
            f"(SELECT COUNT(*) FROM {_PERSON_FACES}), "
            f"(SELECT COUNT(DISTINCT f.item_id) FROM {_PERSON_FACES}), "
            f"(SELECT f.id FROM {_PERSON_FACES} ORDER BY f.score DESC, f.id LIMIT 1) "
            f"FROM people p {hidden}",
            (model_id, model_id, model_id),
        )
        examples = {}
        face_items = dict(
            self._query(
                f"SELECT id, item_id FROM faces WHERE id IN ({','.join('?' * len(rows))})",
                [r[5] for r in rows],
            )
            if rows
            else []
        )
        photos = self.photos_by_id(set(face_items.values()))
        for face_id, item_id in face_items.items():
            photo = photos.get(item_id)
            examples[face_id] = photo.path if photo else None
        people = [
            Person(r[0], r[1], bool(r[2]), r[3], r[4], r[5], examples.get(r[5])) for r in rows
        ]
        return sorted(people, key=lambda p: (-p.face_count, p.id))

    def person(self, person_id: int) -> Person | None:
        return next((p for p in self.people(include_hidden=True) if p.id == person_id), None)

    def person_by_name(self, name: str) -> Person | None:
        rows = self._query("SELECT id FROM people WHERE name = ?", (name,))
        return self.person(rows[0][0]) if rows else None

    def photos_of(self, person_id: int, *, model_id: str | None = None) -> list:
        """The photos holding a face of the person, in id order."""
        ids = [
            r[0]
            for r in self._query(
                "SELECT DISTINCT item_id FROM faces WHERE person_id = ? AND model_id = ? "
                "ORDER BY item_id",
                (person_id, self._face_model(model_id)),
            )
        ]
        found = self.photos_by_id(ids)
        return [found[i] for i in ids if i in found]

    # -- the grouping's result ------------------------------------------------------------

    def apply_grouping(
        self,
        people_of: Mapping[int, int | None],
        new_groups: Sequence[Sequence[int]] = (),
    ) -> list[int]:
        """Put the faces of ``people_of`` on their person (None: on none) and each of
        ``new_groups`` on a new unnamed person, as the machine's word, in one transaction.
        Faces the user placed meanwhile are left as they are, and none goes to a person it
        was rejected from; unnamed people left without a face are deleted. Returns the ids of the new people."""
        made: list[int] = []
        now = time.time_ns()
        with self._write() as conn:
            for face_id, person_id in people_of.items():
                # A grouping computed before the user said "not this person" (the face
                # pass runs beside the People panel's corrections) must not put it back.
                conn.execute(
                    "UPDATE faces SET person_id = ?, assigned_by = ? "
                    "WHERE id = ? AND assigned_by IS NOT 'user' AND NOT EXISTS ("
                    "SELECT 1 FROM face_rejections r WHERE r.face_id = ? AND r.person_id = ?)",
                    (person_id, None if person_id is None else AUTO, face_id, face_id, person_id),
                )
            for group in new_groups:
                person_id = conn.execute(
                    "INSERT INTO people(name, hidden, created_ns) VALUES (NULL, 0, ?)", (now,)
                ).lastrowid
                made.append(person_id)
                for face_id in group:
                    conn.execute(
                        "UPDATE faces SET person_id = ?, assigned_by = 'auto' "
                        "WHERE id = ? AND assigned_by IS NOT 'user'",
                        (person_id, face_id),
                    )
            conn.execute(
                "DELETE FROM people WHERE name IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)"
            )
        return made

    # -- the user's word ------------------------------------------------------------------

    def _require_person(self, conn, person_id: int) -> tuple:
        row = conn.execute("SELECT id, name FROM people WHERE id = ?", (person_id,)).fetchone()
        if row is None:
            raise CatalogError(f"no person with id {person_id} in {self.path}")
        return row

    def name_person(self, person_id: int, name: str) -> None:
        """Give a person a name (or another). Its faces become the user's: they are the
        examples the k-NN names new faces by. A name another person has is refused (merge
        the two instead): names find people."""
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise CatalogError("a person's name must not be empty")
        with self._write() as conn:
            self._require_person(conn, person_id)
            other = conn.execute(
                "SELECT id FROM people WHERE name = ? AND id != ?", (name, person_id)
            ).fetchone()
            if other is not None:
                raise CatalogError(
                    f"person {other[0]} is already named {name!r}; merge the two "
                    f"(photofind people merge {other[0]} {person_id}) if they are one person"
                )
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (name, person_id))
            conn.execute("UPDATE faces SET assigned_by = 'user' WHERE person_id = ?", (person_id,))

    def hide_person(self, person_id: int, hidden: bool = True) -> None:
        with self._write() as conn:
            self._require_person(conn, person_id)
            conn.execute("UPDATE people SET hidden = ? WHERE id = ?", (int(hidden), person_id))

    def merge_people(self, keep: int, other: int) -> None:
        """``other``'s faces join ``keep`` (which takes ``other``'s name when it has none),
        and ``other`` is gone; a "not ``other``" becomes a "not ``keep``". The user said
        they are one person: its faces all become the user's, which no grouping moves."""
        if keep == other:
            raise CatalogError(f"cannot merge person {keep} with itself")
        with self._write() as conn:
            _, keep_name = self._require_person(conn, keep)
            _, other_name = self._require_person(conn, other)
            conn.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (keep, other))
            conn.execute(
                "INSERT OR IGNORE INTO face_rejections(face_id, person_id) "
                "SELECT face_id, ? FROM face_rejections WHERE person_id = ?",
                (keep, other),
            )
            conn.execute("DELETE FROM people WHERE id = ?", (other,))
            if keep_name is None and other_name is not None:
                conn.execute("UPDATE people SET name = ? WHERE id = ?", (other_name, keep))
            conn.execute("UPDATE faces SET assigned_by = 'user' WHERE person_id = ?", (keep,))

    def name_face(self, face_id: int, name: str) -> int:
        """The user says the face is ``name``: its person is named so (joining the person
        who has that name already, if another), or, on none, it goes to that person (a new
        one when nobody has the name). Returns the person's id."""
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise CatalogError("a person's name must not be empty")
        with self._write() as conn:
            row = conn.execute("SELECT person_id FROM faces WHERE id = ?", (face_id,)).fetchone()
            if row is None:
                raise CatalogError(f"no face with id {face_id} in {self.path}")
            named = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            person = row[0]
            target = named[0] if named else person
        if person is not None and target != person:
            self.merge_people(target, person)
        elif person is not None:
            self.name_person(person, name)
        elif target is not None:
            self.move_face(face_id, target)
        else:
            target = self.split_faces([face_id], name)
        return target

    def split_faces(self, face_ids: Sequence[int], name: str | None = None) -> int:
        """The user says these faces are someone else: they leave their people for one new
        person (named ``name``, or unnamed), as the user's word; a "not" on each for the
        person it left keeps the k-NN from putting it back. Returns the new person's id."""
        if not face_ids:
            raise CatalogError("split: no face given")
        with self._write() as conn:
            if name is not None:
                name = name.strip()
                if not name:
                    raise CatalogError("a person's name must not be empty")
                if conn.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone():
                    raise CatalogError(f"a person is already named {name!r}")
            person_id = conn.execute(
                "INSERT INTO people(name, hidden, created_ns) VALUES (?, 0, ?)",
                (name, time.time_ns()),
            ).lastrowid
            for face_id in face_ids:
                row = conn.execute(
                    "SELECT person_id FROM faces WHERE id = ?", (face_id,)
                ).fetchone()
                if row is None:
                    raise CatalogError(f"no face with id {face_id} in {self.path}")
                if row[0] is not None:
                    conn.execute(
                        "INSERT OR IGNORE INTO face_rejections(face_id, person_id) VALUES (?, ?)",
                        (face_id, row[0]),
                    )
                conn.execute(
                    "UPDATE faces SET person_id = ?, assigned_by = 'user' WHERE id = ?",
                    (person_id, face_id),
                )
            conn.execute(
                "DELETE FROM people WHERE name IS NULL AND id != ? "
                "AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)",
                (person_id,),
            )
        return person_id

    def reject_face(self, face_id: int) -> int | None:
        """The user says "not this person": the face leaves its person, and the k-NN and the
        grouping never put it back there. Returns the person it left (None: it had none)."""
        with self._write() as conn:
            row = conn.execute("SELECT person_id FROM faces WHERE id = ?", (face_id,)).fetchone()
            if row is None:
                raise CatalogError(f"no face with id {face_id} in {self.path}")
            person_id = row[0]
            if person_id is None:
                return None
            conn.execute(
                "INSERT OR IGNORE INTO face_rejections(face_id, person_id) VALUES (?, ?)",
                (face_id, person_id),
            )
            conn.execute(
                "UPDATE faces SET person_id = NULL, assigned_by = NULL WHERE id = ?", (face_id,)
            )
            return person_id

    def move_face(self, face_id: int, person_id: int) -> None:
        """The user puts a face on a person (undoing a "not this person" there)."""
        with self._write() as conn:
            self._require_person(conn, person_id)
            cur = conn.execute(
                "UPDATE faces SET person_id = ?, assigned_by = 'user' WHERE id = ?",
                (person_id, face_id),
            )
            if cur.rowcount != 1:
                raise CatalogError(f"no face with id {face_id} in {self.path}")
            conn.execute(
                "DELETE FROM face_rejections WHERE face_id = ? AND person_id = ?",
                (face_id, person_id),
            )
