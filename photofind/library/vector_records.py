"""The catalog's vectors: writing an item's vectors of the library's model, reading them back.

:class:`VectorRecords` is a part of :class:`photofind.library.catalog.Catalog` (it uses the
catalog's one connection, lock and write transactions). Vector ids: a still's vector has its
item's id; a frame beyond an item's first, and every new item, draw their ids from one
sequence (:meth:`VectorRecords._next_id`), so no vector id is ever another item's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from photofind.library.catalog_rows import (
    _LIVE_VECTORS,
    CLIP,
    DONE,
    FAILED,
    CatalogError,
    Recorded,
    _check_vectors,
    _id_vector_arrays,
    _in_time_order,
    _stills,
)


class VectorRecords:
    """The vectors methods of the catalog (see the module's docstring)."""

    @staticmethod
    def _next_id(conn) -> int:
        """The next id of the sequence items and extra frame vectors share."""
        return (
            conn.execute(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM photos), 0), "
                "COALESCE((SELECT MAX(id) FROM vectors), 0), "
                "COALESCE((SELECT MAX(id) FROM staged_vectors), 0))"
            ).fetchone()[0]
            + 1
        )

    def _store_frames(self, conn, table: str, model_id: str, item_id: int, frames, gen) -> tuple:
        """Replace the item's vectors in ``table`` by ``frames``; ``(new ids, replaced ids)``.
        The first frame (a still's only one) takes the item's id, the others the sequence's."""
        old = [
            r[0]
            for r in conn.execute(f"DELETE FROM {table} WHERE item_id = ? RETURNING id", (item_id,))
        ]
        frames = _in_time_order(frames)
        ids = []
        for n, (frame_ms, vector) in enumerate(frames):
            vector_id = item_id if n == 0 else self._next_id(conn)
            blob = np.asarray(vector, dtype="<f4").tobytes()
            if table == "vectors":
                conn.execute(
                    "INSERT INTO vectors(id, item_id, frame_ms, model_id, embedding, gen) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (vector_id, item_id, frame_ms, model_id, blob, gen),
                )
            else:
                conn.execute(
                    "INSERT INTO staged_vectors(id, item_id, frame_ms, model_id, embedding) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (vector_id, item_id, frame_ms, model_id, blob),
                )
            ids.append(vector_id)
        return ids, [i for i in old if i not in ids]

    @staticmethod
    def _set_analysis(conn, item_id, analyser, model_id, status, error=None, data=None, gen=0):
        conn.execute(
            "INSERT OR REPLACE INTO analyses(item_id, analyser, model_id, status, error, data, "
            "updated_gen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item_id, analyser, model_id, status, error, data, gen),
        )

    def record_vectors(self, batch: Iterable[tuple[int, Sequence, str | None]]) -> Recorded:
        """Store ``(item id, frames, capture date)`` in one transaction, ``frames`` being
        ``(frame time in ms or None for a still, vector)``: the item's vectors of the
        library's model (replacing any it had), its CLIP state done, the item indexed.

        Vectors must be 1-D, of the model's dimension, L2-normalised float32 (checked: one
        wrong vector aborts the whole batch). Items removed meanwhile are skipped.
        """
        batch = list(batch)
        items: list[int] = []
        vector_ids: list[int] = []
        vectors: list = []
        removed: list[int] = []
        with self._write() as conn:
            model_id = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if not model_id:
                raise CatalogError(f"{self.path}: set_model() before recording embeddings")
            row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
            dim = _check_vectors(batch, int(row[0]) if row else None, model_id)
            if dim is not None and row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))
            generation = self._bump_generation(conn)
            for item_id, frames, capture_date in batch:
                cur = conn.execute(
                    "UPDATE photos SET capture_date = ?, status = 'indexed', error = NULL "
                    "WHERE id = ?",
                    (capture_date, item_id),
                )
                if not cur.rowcount:
                    continue
                ids, old = self._store_frames(
                    conn, "vectors", model_id, item_id, frames, generation
                )
                self._set_analysis(conn, item_id, CLIP, model_id, DONE, gen=generation)
                items.append(item_id)
                vector_ids.extend(ids)
                vectors.extend(v for _, v in _in_time_order(frames))
                removed.extend(old)
        stacked = np.asarray(vectors, dtype=np.float32).reshape(len(vector_ids), -1)
        return Recorded(items, vector_ids, stacked, removed, generation)

    def record_embeddings(
        self, batch: Iterable[tuple[int, np.ndarray, str | None]]
    ) -> tuple[list[int], int]:
        """Store a batch of ``(photo_id, vector, capture_date)`` of stills (see
        :meth:`record_vectors`). Returns ``(ids written, new generation)``: a still's
        vector id is its photo id, so the ids go into the vector index as they are, and the
        generation into its sidecar."""
        recorded = self.record_vectors(_stills(batch))
        return recorded.items, recorded.generation

    def record_durations(self, durations: dict[int, int]) -> None:
        """Store how long each video of ``{item id: ms}`` runs (items removed: skipped)."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE photos SET duration_ms = ? WHERE id = ?",
                [(int(ms), int(item_id)) for item_id, ms in durations.items()],
            )

    def frames_of(self, item_id: int) -> list[tuple[int, int | None, np.ndarray]]:
        """``(vector id, frame time in ms or None, vector)`` of the item, in time order: a
        video's sampled frames (a still: its one vector)."""
        rows = self._query(
            "SELECT id, frame_ms, embedding FROM vectors WHERE item_id = ? "
            "ORDER BY frame_ms IS NOT NULL, frame_ms",
            (item_id,),
        )
        return [
            (vid, ms, np.frombuffer(blob, dtype="<f4").astype(np.float32)) for vid, ms, blob in rows
        ]

    def frame_scores(self, item_id: int, vector) -> list[tuple[float | None, float]]:
        """``(time in s or None, cosine with vector)`` of each of the item's frames, best
        first."""
        frames = self.frames_of(item_id)
        if not frames:
            return []
        scores = np.stack([v for *_, v in frames]) @ np.asarray(vector, dtype=np.float32)
        out = [
            (None if ms is None else ms / 1000.0, float(score))
            for (_, ms, _), score in zip(frames, scores.tolist(), strict=True)
        ]
        return sorted(out, key=lambda f: -f[1])

    def frame_vector(self, item_id: int, ms: int) -> np.ndarray | None:
        """The vector of the item's sampled frame nearest ``ms`` (a still: its vector)."""
        rows = self._query(
            "SELECT embedding FROM vectors WHERE item_id = ? "
            "ORDER BY ABS(COALESCE(frame_ms, 0) - ?) LIMIT 1",
            (item_id, int(ms)),
        )
        if not rows:
            return None
        return np.frombuffer(rows[0][0], dtype="<f4").astype(np.float32)

    def record_failure(self, photo_id: int, reason: str) -> None:
        """Mark a photo failed with a readable reason; it is not retried until it changes."""
        with self._write() as conn:
            conn.execute(
                "UPDATE photos SET status = 'failed', error = ? WHERE id = ?", (reason, photo_id)
            )
            model_id = conn.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
            if (
                model_id
                and conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone()
            ):
                self._set_analysis(conn, photo_id, CLIP, model_id, FAILED, reason)

    # ----------------------------------------------------------------- reading vectors

    def vectors_of(
        self, photo_ids: Iterable[int], *, chunk: int = 500
    ) -> list[tuple[int, int, str, str, np.ndarray, str | None]]:
        """``(id, size, phash, model id, vector, capture date)`` of those of ``photo_ids``
        that have a still's vector and a partial hash: what a reconcile keeps of the photos
        it is about to remove, to recognise them if they turn up again."""
        ids = list(photo_ids)
        out = []
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            rows = self._query(
                "SELECT p.id, p.size, p.phash, v.model_id, v.embedding, p.capture_date "
                "FROM photos p JOIN vectors v ON v.item_id = p.id "
                f"WHERE p.id IN ({','.join('?' * len(part))}) "
                "AND v.frame_ms IS NULL AND p.phash IS NOT NULL",
                part,
            )
            for photo_id, size, phash, mid, blob, date in rows:
                vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                out.append((photo_id, size, phash, mid, vector, date))
        return out

    def max_vector_id(self) -> int:
        """The largest id a vector may hold now: of the sequence items and frames share."""
        return self._query(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM photos), 0), "
            "COALESCE((SELECT MAX(id) FROM vectors), 0))"
        )[0][0]

    def embedding_count(self) -> int:
        """Vectors of the library's model (what the vector index must hold)."""
        return self._query(f"SELECT COUNT(*) FROM {_LIVE_VECTORS}")[0][0]

    def embedding_ids(self) -> np.ndarray:
        """Ids of every vector of the library's model, sorted (a photo's is its own id)."""
        rows = self._query(f"SELECT v.id FROM {_LIVE_VECTORS} ORDER BY v.id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def embeddings(
        self, *, chunk: int = 4096, since_generation: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(vector ids int64 [n], vectors float32 [n, D])`` chunks of stored vectors.

        With ``since_generation`` only those written after that generation: what a vector
        index saved at that generation is missing.
        """
        for rows in self._pages(
            f"SELECT v.id, v.embedding FROM {_LIVE_VECTORS} WHERE v.gen > ? AND v.id > ? "
            "ORDER BY v.id LIMIT ?",
            (since_generation,),
            chunk,
        ):
            yield _id_vector_arrays(rows)

    def embedding(self, photo_id: int) -> np.ndarray | None:
        """The photo's vector (an item of many frames: its first frame's)."""
        rows = self._query(
            "SELECT embedding FROM vectors WHERE item_id = ? "
            "ORDER BY frame_ms IS NOT NULL, frame_ms LIMIT 1",
            (photo_id,),
        )
        if not rows:
            return None
        return np.frombuffer(rows[0][0], dtype="<f4").astype(np.float32)

    def vectors_by_id(
        self, vector_ids, model_id: str | None = None, *, chunk: int = 900
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(vector ids, vectors float32 [n, D])`` of those of ``vector_ids`` that exist
        (of ``model_id`` only, when given), in increasing id order.

        What an exact search over a filtered set reads: the same float32 values the vector
        index holds, about 6x faster than hnswlib's ``get_items`` (which builds a Python
        float of every component: 1,000 vectors of 512 took 31 ms there, 5 ms here).
        """
        ids = sorted({int(i) for i in vector_ids})
        chunks = []
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            sql = f"SELECT id, embedding FROM vectors WHERE id IN ({','.join('?' * len(part))})"
            if model_id is not None:
                sql += " AND model_id = ?"
                part = [*part, model_id]
            rows = self._query(sql + " ORDER BY id", part)
            if rows:
                chunks.append(_id_vector_arrays(rows))
        if not chunks:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])

    def vector_places(self, vector_ids: Iterable[int], *, chunk: int = 500) -> dict:
        """``{vector id: (item id, frame time in ms or None)}`` of the vectors that exist."""
        ids = list(dict.fromkeys(int(i) for i in vector_ids))
        found: dict[int, tuple[int, int | None]] = {}
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            marks = ",".join("?" * len(part))
            for vid, item, frame in self._query(
                f"SELECT id, item_id, frame_ms FROM vectors WHERE id IN ({marks})", part
            ):
                found[vid] = (item, frame)
        return found

    def vector_items(self, *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """``(vector ids, their item ids)`` of every vector, as int64 arrays.

        Read from the (item, id) index alone, ``chunk`` item ids at a time (a range of
        items holds all of each item's vectors): reading the vector rows themselves, a
        page per 512-d vector, took 256 ms at 100,000 photos where the index takes 70.
        """
        vids: list[int] = []
        items: list[int] = []
        top = self.max_vector_id()
        for low in range(0, top + 1, chunk):
            for vid, item in self._query(
                "SELECT v.id, v.item_id FROM vectors v INDEXED BY vectors_item "
                "JOIN photos p ON p.id = v.item_id WHERE v.item_id >= ? AND v.item_id < ?",
                (low, low + chunk),
            ):
                vids.append(vid)
                items.append(item)
        return np.asarray(vids, dtype=np.int64), np.asarray(items, dtype=np.int64)
