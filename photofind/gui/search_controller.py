"""What the grid shows: the searches (text, similar, by image), run off the GUI thread, and
the page in its place when it shows nothing (first screen, no folders, why a search is empty).

The controller owns the query state; the widgets it drives belong to the window.
"""

from __future__ import annotations

import html
import logging
import os

from PySide6.QtCore import QObject, QTimer

from photofind.gui.filters import photo_date, sort_rows
from photofind.gui.results_header import (
    CLEAR_FILTERS_LINK,
    SHOW_ALL_LINK,
    SHOW_ALL_MAX,
    Outcome,
    empty_page_html,
)
from photofind.gui.results_model import Row

log = logging.getLogger(__name__)

DEFAULT_RESULTS = 200
TYPE_DEBOUNCE_MS = 300
# While indexing, the shown search is re-run this often so new photos join it.
LIVE_REFRESH_MS = 1500


class SearchController(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.serial = 0
        self.last_query = ""
        # The search on screen, and whether its relevance cut-off was lifted ("Show all");
        # a new search (another key) starts with the cut-off again.
        self.key: tuple | None = None
        self.show_all = False
        # The cut-off last seen for a query key: "Show all" runs without one and still says
        # how many of its results stand out (the cut-off does not depend on the filters).
        self._seen_threshold: tuple[tuple | None, float | None] = (None, None)
        self.rerun = None  # re-runs the search on screen (live refresh, filters)
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(TYPE_DEBOUNCE_MS)
        self.debounce.timeout.connect(self.run_search)
        self.live_refresh = QTimer(self)
        self.live_refresh.setSingleShot(True)
        self.live_refresh.setInterval(LIVE_REFRESH_MS)
        self.live_refresh.timeout.connect(self._refresh_live)

    def connect_widgets(self) -> None:
        w = self.window
        w.search_box.returnPressed.connect(self.run_search)
        w.search_box.textEdited.connect(lambda _text: self.debounce.start())
        w.search_box.escapePressed.connect(self.clear_search)
        w.filter_bar.changed.connect(self.run_again)
        w.header.showAllChanged.connect(self.set_show_all)
        w.empty_label.linkActivated.connect(self._on_empty_link)

    def stop(self) -> None:
        self.debounce.stop()
        self.live_refresh.stop()

    def run_again(self) -> None:
        """The search on screen once more (new photos, filters, another model)."""
        if self.rerun is not None:
            self.rerun()

    def index_progressed(self) -> None:
        """Photos were indexed: the search on screen runs again soon, so they join it."""
        if self.rerun is not None and not self.live_refresh.isActive():
            self.live_refresh.start()

    def _refresh_live(self) -> None:
        """Re-run the search on screen so photos indexed meanwhile join it — only while
        the user looks at the top of the list, so the grid never jumps under them."""
        if self.rerun is not None and self.window.view.verticalScrollBar().value() == 0:
            self.rerun()

    def warm_up(self) -> None:
        """Pay the first query's one-off costs now, on an I/O thread, while the user reads
        the window: the text encoder's first run (ONNX Runtime sets itself up), the
        cut-off's background sample, the index's first walk. The first Enter then runs on
        the search thread as fast as any other; it never waits for this (the engine's own
        lock is held only while the sample is drawn, a few milliseconds)."""
        w = self.window
        engine = w.engine
        if engine is None or w._closing:
            return
        cutoff = w.relevance_cutoff

        def work():
            vector = engine.text_vector("a photo")
            if cutoff:
                engine.threshold(vector, plain_text=True)
            engine.library.index.query(vector, 1)

        w.tasks.run(work, pool=w.tasks.io_pool)

    # -- the searches ---------------------------------------------------------------------

    def clear_search(self) -> None:
        w = self.window
        self.debounce.stop()
        w.search_box.clear()
        self.last_query = ""
        self.rerun = None
        self.key = None
        w.results.set_rows([])
        w.header.clear()
        self.refresh_empty_state()

    def run_search(self) -> None:
        w = self.window
        self.debounce.stop()
        text = w.search_box.text().strip()
        if not text:
            self.clear_search()
            return
        if w.engine is None:
            w.model_setup.missing("search")
            return
        self.last_query = text
        self.rerun = self.run_search
        cutoff = self._cutoff_for(("text", text))
        k = self._result_count()
        flt = w.filter_bar.search_filter()
        self._submit(
            lambda engine: engine.search(text, k=k, cutoff=cutoff, filter=flt), f"for “{text}”"
        )

    def find_similar(self, photo_id: int | None, path: str) -> None:
        w = self.window
        if w.engine is None:
            w.model_setup.missing("similar")
            return
        w.search_box.setText("")
        self.last_query = ""
        self.rerun = lambda: self.find_similar(photo_id, path)
        cutoff = self._cutoff_for(("similar", photo_id, path))
        k = self._result_count()
        flt = w.filter_bar.search_filter()
        which = photo_id if photo_id is not None else path
        self._submit(
            lambda engine: engine.similar(which, k=k, filter=flt, cutoff=cutoff),
            f"like {os.path.basename(path)}",
        )

    def search_by_image(self, path: str) -> None:
        w = self.window
        if w.engine is None:
            w.model_setup.missing("similar")
            return
        self.rerun = lambda: self.search_by_image(path)
        cutoff = self._cutoff_for(("image", path))
        k = self._result_count()
        flt = w.filter_bar.search_filter()
        self._submit(
            lambda engine: engine.similar(path, k=k, filter=flt, cutoff=cutoff),
            f"like {os.path.basename(path)}",
        )

    def try_example(self, text: str) -> None:
        self.window.search_box.setText(text)
        self.run_search()

    def _cutoff_for(self, key: tuple) -> bool:
        """Whether the search ``key`` runs with the relevance cut-off; a new one always does
        (when the setting is on), the one on screen not after "Show all"."""
        if key != self.key:
            self.key = key
            self.show_all = False
        return self.window.relevance_cutoff and not self.show_all

    def _result_count(self) -> int:
        """Results fetched: a screenful and more, or after "Show all" up to its most."""
        return SHOW_ALL_MAX if self.show_all else DEFAULT_RESULTS

    def set_show_all(self, show_all: bool) -> None:
        """The header's button: the search on screen again, with or without its cut-off."""
        self.show_all = show_all
        self.run_again()

    def _on_empty_link(self, href: str) -> None:
        if href == SHOW_ALL_LINK:
            self.set_show_all(True)
        elif href == CLEAR_FILTERS_LINK:
            self.window.filter_bar.clear()  # its changed signal re-runs the search
        else:
            self.try_example(href)

    def _submit(self, fn, what: str) -> None:
        """Run a search off the GUI thread; only the newest one's results are shown."""
        w = self.window
        self.serial += 1
        serial = self.serial
        order = w.filter_bar.sort_order()
        catalog = w.library.catalog
        engine = w.engine  # the one asked now: a model swap meanwhile opens another
        key, show_all = self.key, self.show_all
        filters = tuple(w.filter_bar.describe())

        def work():
            found = fn(engine)
            rows = [Row(r.path, float(r.score), r.photo_id, r.companions) for r in found]
            if order != "relevance":
                ids = (r.photo_id for r in rows if r.photo_id is not None)
                photos = catalog.photos_by_id(ids)
                dates = {
                    row.path: photo_date(photos[row.photo_id]) if row.photo_id in photos else ""
                    for row in rows
                }
                rows = sort_rows(rows, order, lambda row: dates[row.path])
            return rows, found.threshold, found.below

        def done(result, error):
            if serial != self.serial:
                return  # a newer query was typed meanwhile
            if error is not None:
                self._show_failure(what, error)
                return
            rows, threshold, cut = result
            if threshold is not None:
                self._seen_threshold = (key, threshold)
            if show_all:
                seen_key, seen = self._seen_threshold
                threshold = seen if seen_key == key else None
            stand_out = None
            if show_all and threshold is not None:
                stand_out = sum(row.score >= threshold for row in rows)
            w.header.set_outcome(
                Outcome(what, len(rows), cut, threshold, show_all, stand_out, filters)
            )
            w.results.set_threshold(threshold)
            if rows != w.results.rows():
                # (A live refresh mostly finds the same photos: no reset, no repaint then.)
                current = w.photo_actions.current()
                w.results.set_rows(rows)
                if current is not None and current.path in w.results.paths():
                    w.view.setCurrentIndex(w.results.index_of(current.path))
            self.refresh_empty_state()
            w.searchFinished.emit(len(rows))

        w.tasks.run(work, done)

    def _show_failure(self, what: str, error: BaseException) -> None:
        """A search that failed: the reason replaces the results (an old grid under a
        passing status message looked like the answer)."""
        from photofind.errors import PhotofindError

        if isinstance(error, PhotofindError):
            log.warning("search %s failed: %s", what, error)  # a clear message: no traceback
        else:
            log.error("search %s failed", what, exc_info=error)
        w = self.window
        w.results.set_rows([])
        w.header.set_outcome(Outcome(what, error=str(error) or type(error).__name__))
        self.refresh_empty_state()
        w.searchFinished.emit(0)

    # -- the page when the grid is empty ----------------------------------------------------

    def refresh_empty_state(self) -> None:
        w = self.window
        if w.results.rowCount() > 0:
            w.stack.setCurrentWidget(w.view)
            return
        outcome = w.header.outcome
        if outcome is not None and outcome.error is not None:
            w.empty_label.setText(empty_page_html(outcome))
            w.empty_button.setVisible(False)
        elif not w.folders.folders:
            w.empty_label.setText(
                "<h2>No photo folders yet</h2>"
                "<p>Add a folder of photos. photofind looks at each photo once, on this "
                "computer, and then finds them by what they show.</p>"
            )
            w.empty_button.setVisible(True)
        elif outcome is not None:  # a search ran: why it shows nothing
            w.empty_label.setText(empty_page_html(outcome))
            w.empty_button.setVisible(False)
        else:
            n = w.folders.indexed_count()  # counted off the GUI thread; None until then
            what = f"{n:,} photos" if n is not None else "your photos"
            tries = " · ".join(
                f'<a href="{html.escape(q)}">{html.escape(q)}</a>' for q in self.examples()
            )
            w.empty_label.setText(
                f"<h2>Search {what}</h2><p>Describe what you are looking for, or drop "
                f"a photo here to find the ones like it.</p><p>Try {tries}</p>"
            )
            w.empty_button.setVisible(False)
        w.stack.setCurrentWidget(w.empty)

    def examples(self) -> tuple[str, ...]:
        """Searches to click on the first screen: the demo model knows only its shapes."""
        from photofind.demo import DEMO_MODEL, FIRST_SCREEN_EXAMPLES

        model = self.window.model
        if model is not None and model.info.name == DEMO_MODEL:
            return FIRST_SCREEN_EXAMPLES
        return ("a dog on a beach", "a birthday cake", "snow in the mountains")
