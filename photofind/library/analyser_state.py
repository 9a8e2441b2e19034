"""Each analyser's per-item state in the catalog: pending, done or failed with the reason.

:class:`AnalyserState` is a part of :class:`photofind.library.catalog.Catalog` (it uses the
catalog's one connection, lock and write transactions); the rules are in the comment that
opens the class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from photofind.library.catalog_rows import (
    _PHOTO_COLUMNS,
    CLIP,
    DONE,
    FAILED,
    PENDING,
    CatalogError,
    Photo,
    _photo,
)


class AnalyserState:
    """The analyser state methods of the catalog (see the module's docstring)."""

    # ----------------------------------------------------------------- analysers
    #
    # Each analyser's outcome per item is a row of ``analyses`` keyed by (item, analyser,
    # model): done (with its small results in ``data``) or failed (with the reason); no row
    # is pending. An analyser's results in use are those of its *active* model (meta key
    # ``analyser:<name>``). A run with another model collects its rows beside them, and
    # :meth:`settle_analyser` swaps them in, in one transaction, once no item lacks one: the
    # staged model change, for every analyser. The CLIP embedding keeps its own methods
    # above (its vectors and the items' status live beside its rows).

    _ANALYSABLE = "p.status IN ('indexed', 'pending')"

    def analyser_model(self, analyser: str) -> str | None:
        """The model whose results of ``analyser`` are in use (None: it never ran)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (f"analyser:{analyser}",))
        return rows[0][0] if rows else None

    def begin_analyser(self, analyser: str, model_id: str) -> None:
        """An analyser is about to run with ``model_id``: with no results in use yet, they
        are this model's from now on (nothing would stay searchable by waiting)."""
        if not model_id:
            raise CatalogError(f"analyser {analyser!r}: model id must not be empty")
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                (f"analyser:{analyser}", model_id),
            )

    def analysis_pending(
        self, analyser: str, model_id: str, limit: int = 256, *, after_id: int = 0
    ) -> list[Photo]:
        """Up to ``limit`` items (indexed or pending) lacking an outcome of ``analyser``
        with ``model_id``, in id order after ``after_id``."""
        columns = ", ".join(f"p.{c.strip()}" for c in _PHOTO_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns} FROM photos p WHERE {self._ANALYSABLE} AND p.id > ? "
            "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
            "AND a.analyser = ? AND a.model_id = ?) ORDER BY p.id LIMIT ?",
            (after_id, analyser, model_id, limit),
        )
        active = self.model_id
        return [_photo(r, active) for r in rows]

    def analysis_pending_among(self, analyser: str, model_id: str, ids: Sequence[int]) -> set:
        """Which of ``ids`` lack an outcome of ``analyser`` with ``model_id``."""
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            out.update(
                r[0]
                for r in self._query(
                    f"SELECT p.id FROM photos p WHERE p.id IN ({marks}) AND {self._ANALYSABLE} "
                    "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
                    "AND a.analyser = ? AND a.model_id = ?)",
                    (*part, analyser, model_id),
                )
            )
        return out

    def pending_among(self, ids: Sequence[int], *, staged: bool = False) -> set:
        """Which of ``ids`` wait for their CLIP vector (``staged``: their staged one)."""
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            sql = (
                f"SELECT p.id {self._STAGED_MISSING} AND p.id IN ({marks})"
                if staged
                else f"SELECT id FROM photos WHERE status = 'pending' AND id IN ({marks})"
            )
            out.update(r[0] for r in self._query(sql, part))
        return out

    def record_analyses(
        self,
        analyser: str,
        model_id: str,
        rows: Iterable[tuple[int, str, str | None, bytes | None]],
    ) -> list[int]:
        """Store ``(item id, 'done' or 'failed', error, data)`` outcomes of ``analyser``
        with ``model_id`` in one transaction; items removed meanwhile are skipped. Returns
        the items written."""
        written: list[int] = []
        with self._write() as conn:
            generation = int(
                conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
            )
            for item_id, status, error, data in rows:
                if status not in (DONE, FAILED):
                    raise CatalogError(f"analyser {analyser!r}: unknown outcome {status!r}")
                if not conn.execute("SELECT 1 FROM photos WHERE id = ?", (item_id,)).fetchone():
                    continue
                self._set_analysis(
                    conn, item_id, analyser, model_id, status, error, data, generation
                )
                written.append(item_id)
        return written

    def settle_analyser(self, analyser: str, model_id: str) -> bool:
        """Make ``model_id``'s results of ``analyser`` the ones in use, dropping the other
        models', in one transaction, when no item lacks one. Returns whether they are."""
        with self._write() as conn:
            key = f"analyser:{analyser}"
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row and row[0] == model_id:
                return True
            missing = conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM photos p WHERE {self._ANALYSABLE} "
                "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
                "AND a.analyser = ? AND a.model_id = ?))",
                (analyser, model_id),
            ).fetchone()[0]
            if missing:
                return False
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, model_id))
            conn.execute(
                "DELETE FROM analyses WHERE analyser = ? AND model_id != ?", (analyser, model_id)
            )
            return True

    def analysis(self, item_id: int, analyser: str) -> tuple[str, str | None, bytes | None] | None:
        """``(status, error, data)`` of ``analyser`` on an item, from the model in use;
        None when it has not run there."""
        model_id = self.analyser_model(analyser) if analyser != CLIP else self.model_id
        rows = self._query(
            "SELECT status, error, data FROM analyses WHERE item_id = ? AND analyser = ? "
            "AND model_id = ?",
            (item_id, analyser, model_id),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def analysis_counts(self, analyser: str, model_id: str | None = None) -> dict[str, int]:
        """Items done, failed and pending for ``analyser`` (with ``model_id``, default the
        one in use)."""
        if model_id is None:
            model_id = self.analyser_model(analyser) if analyser != CLIP else self.model_id
        out = {DONE: 0, FAILED: 0, PENDING: 0}
        with self._lock:
            for status, n in self._query(
                "SELECT status, COUNT(*) FROM analyses WHERE analyser = ? AND model_id = ? "
                "GROUP BY status",
                (analyser, model_id),
            ):
                out[status] = n
            out[PENDING] = self._query(
                f"SELECT COUNT(*) FROM photos p WHERE {self._ANALYSABLE} "
                "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.item_id = p.id "
                "AND a.analyser = ? AND a.model_id = ?)",
                (analyser, model_id),
            )[0][0]
        return out
