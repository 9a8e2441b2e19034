"""A staged model change: the new model's vectors collected beside the active ones.

:class:`StagedModel` is a part of :class:`photofind.library.catalog.Catalog` (it uses the
catalog's one connection, lock and write transactions); the rules are in the comment that
opens the class.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from photofind.library.catalog_rows import (
    _HAS_VECTOR,
    _PHOTO_COLUMNS,
    _STAGED,
    CLIP,
    DONE,
    FAILED,
    CatalogError,
    Photo,
    Recorded,
    _check_vectors,
    _id_vector_arrays,
    _in_time_order,
    _photo,
)


class StagedModel:
    """The staged model change methods of the catalog (see the module's docstring)."""

    # ----------------------------------------------------------------- a staged model change
    #
    # Changing the model of an indexed library takes as long as indexing it. Meanwhile the
    # active model's vectors keep serving searches, and the new model's vectors are collected
    # in ``staged_vectors``, the outcome per photo in ``analyses`` (done, or failed with the
    # reason). Every photo that is indexed or pending needs one (new photos also get the
    # active model's vector, so they are searchable at once). When none is missing,
    # :meth:`swap_staged` makes them the photos' vectors in one transaction. Removing a photo
    # removes its staged rows (foreign key cascade); a photo whose content changed loses
    # them (see ``apply_scan``) and is encoded again.

    # ------------------------------------------------------------ a shared image tower
    #
    # Two models whose image side is the same (image graph and its external data hashed,
    # and the same preprocessing: photofind.clip.model.ClipModel.image_tower_id) make the
    # same photo vectors: M-CLIP's text encoders were trained into OpenAI's ViT space, so
    # a switch between them needs no re-index. The catalog records the active model's
    # image tower in meta ``image_tower`` (absent in libraries from before it: their first
    # change re-indexes, as before).

    @property
    def image_tower(self) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = 'image_tower'")
        return (rows[0][0] or None) if rows else None

    def record_image_tower(self, model_id: str, tower: str) -> None:
        """Remember ``tower`` as the image tower of the active model ``model_id`` (nothing
        when ``model_id`` is not the active model)."""
        with self._write() as conn:
            active = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if active == model_id:
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('image_tower', ?)", (tower,)
                )

    def adopt_model(self, model_id: str, tower: str) -> bool:
        """Make ``model_id`` the active model keeping every photo vector, when its image
        tower is the active model's; False (nothing changed) otherwise. Any staged change
        is dropped: its vectors would be the same ones again."""
        if not model_id or not tower:
            raise CatalogError("model id and image tower must not be empty")
        with self._write() as conn:
            active = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            row = conn.execute("SELECT value FROM meta WHERE key = 'image_tower'").fetchone()
            if not active or active == model_id or row is None or row[0] != tower:
                return False
            self._clear_staged(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_id,))
            conn.execute("UPDATE vectors SET model_id = ? WHERE model_id = ?", (model_id, active))
            conn.execute(
                "UPDATE analyses SET model_id = ? WHERE analyser = ? AND model_id = ?",
                (model_id, CLIP, active),
            )
            self._bump_generation(conn)
            return True

    @property
    def staged_model_id(self) -> str | None:
        """The model a staged change re-indexes for; ``None`` when no change runs."""
        rows = self._query("SELECT value FROM meta WHERE key = 'staged_model_id'")
        return (rows[0][0] or None) if rows else None

    @property
    def staged_dim(self) -> int | None:
        rows = self._query("SELECT value FROM meta WHERE key = 'staged_dim'")
        return int(rows[0][0]) if rows else None

    def begin_staged_model(self, model_id: str) -> bool:
        """Start collecting ``model_id``'s vectors beside the active ones. Returns True
        when a new staged change began (a change to another model is replaced; asking for
        the model already staged keeps its vectors). Asking for the active model cancels
        any staged change and returns False."""
        if not model_id:
            raise CatalogError("model id must not be empty")
        with self._write() as conn:
            active = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            staged = self._staged_id(conn)
            if model_id == active:
                self._clear_staged(conn)
                return False
            if model_id == staged:
                return False
            self._clear_staged(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'staged_model_id'", (model_id,))
            return True

    @staticmethod
    def _staged_id(conn) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'staged_model_id'").fetchone()
        return row[0] or None

    @staticmethod
    def _clear_staged(conn, *, keep_state: bool = False) -> None:
        """Forget the staged change; ``keep_state``: its per-photo outcomes stay (they are
        the active model's at the swap)."""
        if not keep_state:
            conn.execute(
                f"DELETE FROM analyses WHERE analyser = ? AND model_id = {_STAGED}", (CLIP,)
            )
        conn.execute("DELETE FROM staged_vectors")
        conn.execute("UPDATE meta SET value = '' WHERE key = 'staged_model_id'")
        conn.execute("DELETE FROM meta WHERE key = 'staged_dim'")

    def _require_staged(self, conn, model_id: str) -> None:
        staged = self._staged_id(conn)
        if staged != model_id:
            raise CatalogError(
                f"{self.path}: vectors of {model_id!r} offered for a staged model change, but "
                + (f"the change under way is to {staged!r}" if staged else "no change runs")
                + " (it was cancelled or replaced)"
            )

    # Photos that must hold a staged outcome before the swap: those searchable now or about
    # to be. Failed photos fail for every model; offline ones cannot be read (they keep a
    # staged vector if they got one, else they go back to pending when they return).
    _STAGED_MISSING = (
        "FROM photos p WHERE p.status IN ('indexed', 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
        f"AND a.analyser = '{CLIP}' AND a.model_id = {_STAGED})"
    )

    def staged_pending(self, limit: int = 256, *, after_id: int = 0) -> list[Photo]:
        """Up to ``limit`` photos still lacking a staged vector, in id order after
        ``after_id`` (the same paging as :meth:`pending`)."""
        columns = ", ".join(f"p.{c.strip()}" for c in _PHOTO_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns} {self._STAGED_MISSING} AND p.id > ? ORDER BY p.id LIMIT ?",
            (after_id, limit),
        )
        active = self.model_id
        return [_photo(r, active) for r in rows]

    def staged_progress(self) -> tuple[int, int]:
        """``(done, total)`` of the staged change: photos holding a staged outcome, and
        those plus the ones still missing one. ``(0, 0)`` when no change runs."""
        with self._lock:
            if self.staged_model_id is None:
                return 0, 0
            done = self._query(
                f"SELECT COUNT(*) FROM analyses WHERE analyser = ? AND model_id = {_STAGED}",
                (CLIP,),
            )[0][0]
            missing = self._query(f"SELECT COUNT(*) {self._STAGED_MISSING}")[0][0]
        return done, done + missing

    def record_staged_vectors(self, model_id: str, batch) -> Recorded:
        """Store ``(item id, frames, capture date)`` of the staged model ``model_id`` in one
        transaction (same checks as :meth:`record_vectors`; a video's frames as there).
        Items removed meanwhile are skipped. Refused when ``model_id`` is not the change
        under way, so a cancelled change never leaves vectors behind."""
        batch = list(batch)
        items: list[int] = []
        vector_ids: list[int] = []
        vectors: list = []
        removed: list[int] = []
        with self._write() as conn:
            self._require_staged(conn, model_id)
            row = conn.execute("SELECT value FROM meta WHERE key = 'staged_dim'").fetchone()
            dim = _check_vectors(batch, int(row[0]) if row else None, model_id)
            if dim is not None and row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('staged_dim', ?)", (str(dim),))
            for photo_id, frames, capture_date in batch:
                cur = conn.execute(
                    "UPDATE photos SET capture_date = COALESCE(?, capture_date) WHERE id = ?",
                    (capture_date, photo_id),
                )
                if not cur.rowcount:
                    continue
                ids, old = self._store_frames(conn, "staged_vectors", model_id, photo_id, frames, 0)
                removed.extend(old)
                self._set_analysis(conn, photo_id, CLIP, model_id, DONE)
                items.append(photo_id)
                vector_ids.extend(ids)
                vectors.extend(v for _, v in _in_time_order(frames))
        stacked = np.asarray(vectors, dtype=np.float32).reshape(len(vector_ids), -1)
        return Recorded(items, vector_ids, stacked, removed, 0)

    def record_staged_failure(self, model_id: str, photo_id: int, reason: str) -> None:
        """The staged model could not read a photo: it is not retried during this change,
        and becomes ``failed`` at the swap."""
        with self._write() as conn:
            self._require_staged(conn, model_id)
            if conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone():
                conn.execute("DELETE FROM staged_vectors WHERE item_id = ?", (photo_id,))
                self._set_analysis(conn, photo_id, CLIP, model_id, FAILED, reason)

    def staged_embeddings(self, *, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` chunks of the staged vectors (to rebuild a staged index)."""
        for rows in self._pages(
            "SELECT id, embedding FROM staged_vectors WHERE id > ? ORDER BY id LIMIT ?",
            (),
            chunk,
        ):
            yield _id_vector_arrays(rows)

    def swap_staged(self, model_id: str) -> int | None:
        """Make the staged vectors the photos' vectors and ``model_id`` the library's
        model, in one transaction. Returns the new generation, or ``None`` (nothing
        changed) while some photo still lacks a staged outcome.

        Photos without a staged vector (offline ones) lose their old one and are pending
        again when they return; photos the staged model could not read become failed.
        """
        with self._write() as conn:
            self._require_staged(conn, model_id)
            if conn.execute(f"SELECT EXISTS (SELECT 1 {self._STAGED_MISSING})").fetchone()[0]:
                return None
            generation = self._bump_generation(conn)
            conn.execute(
                "UPDATE photos SET status = CASE status WHEN 'indexed' THEN 'pending' "
                f"ELSE status END WHERE {_HAS_VECTOR} "
                "AND id NOT IN (SELECT item_id FROM staged_vectors)"
            )
            conn.execute(
                "UPDATE photos SET status = 'failed', error = a.error FROM analyses a "
                "WHERE a.item_id = photos.id AND a.analyser = ? AND a.model_id = ? "
                "AND a.status = 'failed' AND photos.status IN ('indexed', 'pending')",
                (CLIP, model_id),
            )
            conn.execute(
                "UPDATE photos SET error = NULL, "
                "status = CASE status WHEN 'offline' THEN 'offline' ELSE 'indexed' END "
                "WHERE id IN (SELECT item_id FROM staged_vectors) "
                "AND status IN ('indexed', 'pending', 'offline')"
            )
            conn.execute("DELETE FROM vectors")
            conn.execute(
                "INSERT INTO vectors(id, item_id, frame_ms, model_id, embedding, gen) "
                "SELECT id, item_id, frame_ms, model_id, embedding, ? FROM staged_vectors",
                (generation,),
            )
            conn.execute(
                "DELETE FROM analyses WHERE analyser = ? AND model_id != ?", (CLIP, model_id)
            )
            conn.execute(
                "UPDATE analyses SET updated_gen = ? WHERE analyser = ? AND model_id = ?",
                (generation, CLIP, model_id),
            )
            staged_dim = conn.execute("SELECT value FROM meta WHERE key = 'staged_dim'").fetchone()
            conn.execute("DELETE FROM meta WHERE key = 'dim'")
            if staged_dim is not None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", staged_dim)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'model_id'", (model_id,))
            self._clear_staged(conn, keep_state=True)
        return generation
