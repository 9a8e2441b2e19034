"""The line above the grid that says what it shows, and the page shown instead of it.

A search ends in one of four ways: photos that stand out; photos with more below the
relevance cut-off; nothing (the cut-off or the filters left none); or a failure (an
``img:`` of a missing or broken file). Each is said where the user is looking, on a row
of its own above the grid (it stays whole in a narrow window, unlike a label squeezed
beside the filters), with the one click that gets past it: "Show all N" lifts the cut-off,
"Clear the filters" widens the search. The texts are made by plain functions of an
:class:`Outcome`, so the tests read them without a window.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QWidget

from photofind.gui.filters import ElidedLabel

#: hrefs of the links on the "Nothing found" page (others there are example searches)
SHOW_ALL_LINK = "photofind:show-all"
CLEAR_FILTERS_LINK = "photofind:clear-filters"
#: The most results "Show all" fetches: all of a filtered search or a small library, and
#: a grid that stays quick to fill in a library of 100,000 (the button then says so).
SHOW_ALL_MAX = 1000


@dataclass(frozen=True)
class Outcome:
    """What one search gave. ``what``: "for “a red circle”" or "like x.jpg". ``cut``:
    photos below the relevance ``threshold``, not shown; ``show_all``: the cut-off was
    lifted on request, and ``stand_out`` of the ``shown`` are above it. ``filters``: the
    active filters in words (``FilterBar.describe``). ``error``: why the search failed (then nothing is shown)."""

    what: str
    shown: int = 0
    cut: int = 0
    threshold: float | None = None
    show_all: bool = False
    stand_out: int | None = None
    filters: tuple[str, ...] = ()
    error: str | None = None


def _photos(n: int) -> str:
    return f"{n:,} photo" + ("" if n == 1 else "s")


def summary_text(outcome: Outcome) -> str:
    """The one line above the grid."""
    if outcome.error is not None:
        return f"Search failed: {outcome.error}"
    if outcome.shown:
        text = f"{_photos(outcome.shown)} {outcome.what}"
    else:
        text = f"Nothing found {outcome.what}"
    if outcome.filters:
        text += f" ({', '.join(outcome.filters)})"
    if outcome.show_all:
        text += " · relevance cut-off lifted"
        if outcome.threshold is not None and outcome.stand_out is not None:
            text += f": {outcome.stand_out:,} score {outcome.threshold:.3f} or more"
    elif outcome.cut:
        more = " more" if outcome.shown else ""
        text += f" · {outcome.cut:,}{more} below the relevance cut-off"
        if outcome.threshold is not None:
            text += f" ({outcome.threshold:.3f})"
    return text


def button_text(outcome: Outcome | None) -> str | None:
    """The header's button: "Show all N" under a cut, back to the cut after it (or none)."""
    if outcome is None or outcome.error is not None:
        return None
    if outcome.show_all:
        return "Only those that stand out"
    if outcome.cut:
        return show_all_text(outcome.shown + outcome.cut)
    return None


def show_all_text(total: int) -> str:
    return f"Show all {total:,}" if total <= SHOW_ALL_MAX else f"Show the best {SHOW_ALL_MAX:,}"


def empty_page_html(outcome: Outcome) -> str:
    """The page in place of an empty grid: the failure, or why nothing was found."""
    if outcome.error is not None:
        return (
            "<h2>The search failed</h2>"
            f"<p>{html.escape(outcome.error)}</p>"
            "<p>Nothing is shown until a search works: check the picture or the words.</p>"
        )
    parts = [f"<h2>Nothing found {html.escape(outcome.what)}</h2>"]
    if outcome.cut:
        below = f"{_photos(outcome.cut)} {'lies' if outcome.cut == 1 else 'lie'} below"
        limit = f" ({outcome.threshold:.3f})" if outcome.threshold is not None else ""
        parts.append(
            f"<p>{below} the relevance cut-off{limit}: none stands out from the library. "
            f'<a href="{SHOW_ALL_LINK}">{show_all_text(outcome.cut)}</a></p>'
        )
    if outcome.filters:
        named = html.escape(", ".join(outcome.filters))
        parts.append(
            f"<p>Only photos {named} were searched. "
            f'<a href="{CLEAR_FILTERS_LINK}">Clear the filters</a></p>'
        )
    if not outcome.cut and not outcome.filters:
        parts.append("<p>Try other words.</p>")
    return "".join(parts)


class ResultsHeader(QWidget):
    """The summary of the grid and the cut-off's button; ``showAllChanged(bool)`` asks for
    the search again with the cut-off lifted (True) or back (False)."""

    showAllChanged = Signal(bool)  # noqa: N815 - Qt naming

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("resultsHeader")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 0, 8, 2)
        # Cut at the end: the count and what it is for come first and stay.
        self.summary = ElidedLabel(self, Qt.TextElideMode.ElideRight)
        self.summary.setObjectName("resultsSummary")
        self.summary.setAccessibleName("What the results show")
        layout.addWidget(self.summary, 1)
        self.button = QPushButton(self)
        self.button.setObjectName("showAllButton")
        self.button.setAutoDefault(False)
        self.button.setVisible(False)
        self.button.clicked.connect(self._clicked)
        layout.addWidget(self.button)
        self.outcome: Outcome | None = None

    @property
    def threshold(self) -> float | None:
        return self.outcome.threshold if self.outcome is not None else None

    def set_outcome(self, outcome: Outcome | None) -> None:
        self.outcome = outcome
        self.summary.set_full_text(summary_text(outcome) if outcome is not None else "")
        label = button_text(outcome)
        self.button.setVisible(label is not None)
        if label is not None:
            self.button.setText(label)
            self.button.setAccessibleName(label)

    def clear(self) -> None:
        self.set_outcome(None)

    def _clicked(self) -> None:
        if self.outcome is not None:
            self.showAllChanged.emit(not self.outcome.show_all)
