"""Do the installed Qt bindings keep Python's reference counts right?

    python resources/installer/qt_refcount.py [--calls N]      (QT_QPA_PLATFORM=offscreen)
    photofind --bundle-selftest refcount [--calls N]            (inside the built bundle)

print one JSON report and exit 1 when a check fails. PySide6-Essentials 6.12.0 on Python 3.11
drops one reference to ``None`` on every Qt call that returns nothing (``setText``,
``QTimer.start``, ``endResetModel`` ...); the app then aborts with "none_dealloc" once the
count reaches zero, minutes into a session. So every kind of Qt call the app makes is run a
few thousand times here and ``sys.getrefcount(None)`` must come back to where it was.

Where ``None`` is immortal (CPython 3.12+, PEP 683) its count never moves and that check
cannot see anything (nor can the bug hurt); :func:`none_is_immortal` finds out by behaviour.
The second check works everywhere: the objects the app hands to Qt (the strings it shows,
the payloads it emits, the slots it connects) must keep their reference counts too.

Plain Python over PySide6 only, so the test suite (tests/test_qt_refcount.py), the build
(build.py refuses a PySide6 that fails it) and the frozen bundle run one and the same check.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
from collections.abc import Callable

#: Calls of each kind measured; the bug takes one reference per call, so thousands of them
#: tell a real loss from the odd reference a first call caches.
DEFAULT_CALLS = 2000
#: References a kind may gain or lose over all its calls (caches filled, a wrapper made).
TOLERANCE = 16
_WARM_UP_CALLS = 50
_CHUNK = 100


#: The objects every binding returns without making them: a lost reference to one of
#: them is the crash ("none_dealloc", "bool_dealloc") once its count reaches zero.
SINGLETONS = {"None": None, "True": True, "False": False}


def is_immortal(obj) -> bool:
    """Whether ``obj``'s reference count stays put when references are made (PEP 683)."""
    before = sys.getrefcount(obj)
    held = [obj] * 1000
    grew = sys.getrefcount(obj) - before
    del held
    return grew < 1000


def none_is_immortal() -> bool:
    return is_immortal(None)


def _fresh_text(tag: str) -> str:
    # Built at run time, so it is not interned and only this check holds it.
    return "".join(["photofind ", tag, " ", str(id(tag))])


class _Kinds:
    """Widgets, a model and signals like the app's, and one named call per kind of Qt call.

    Each call returns nothing to Python (the bug's path) or is a Python override that Qt
    calls (the path back). The objects passed in are kept in ``self.args`` so their counts
    can be watched too.
    """

    def __init__(self, app):
        from PySide6.QtCore import (
            QAbstractListModel,
            QModelIndex,
            QObject,
            Qt,
            QTimer,
            Signal,
        )
        from PySide6.QtGui import QAction, QPixmap
        from PySide6.QtWidgets import (
            QComboBox,
            QLabel,
            QLineEdit,
            QListView,
            QMainWindow,
            QProgressBar,
            QSlider,
            QStackedWidget,
            QVBoxLayout,
            QWidget,
        )

        self.app = app
        text = _fresh_text("text")
        payload = object()
        self.args = {"text": text, "payload": payload}

        class Rows(QAbstractListModel):
            """A real model: the view asks Python for its rows after every reset."""

            def __init__(self):
                super().__init__()
                self.rows = ["a", "b", "c"]

            def rowCount(self, parent=None):  # noqa: N802 - Qt naming
                return 0 if parent is not None and parent.isValid() else len(self.rows)

            def data(self, index, role=Qt.ItemDataRole.DisplayRole):
                if role == Qt.ItemDataRole.DisplayRole and index.isValid():
                    return self.rows[index.row()]
                return None

        class Painted(QWidget):
            """Python overrides of virtual void methods, which Qt calls (the way back)."""

            def paintEvent(self, event):  # noqa: N802
                return None

            def resizeEvent(self, event):  # noqa: N802
                return None

        class Relay(QObject):
            ping = Signal()
            carry = Signal(object)
            count = Signal(int)

        received = []

        def slot(*values):
            # Counts only: a payload kept here would show as a reference gained.
            received.append(len(values))
            if len(received) > 8:
                received.clear()

        self.args["slot"] = slot

        window = QMainWindow()
        central = QWidget(window)
        layout = QVBoxLayout(central)
        line = QLineEdit(central)
        label = QLabel(central)
        combo = QComboBox(central)
        combo.addItems(["All folders", "holiday", "garden"])
        slider = QSlider(Qt.Orientation.Horizontal, central)
        slider.setRange(64, 320)
        bar = QProgressBar(central)
        stack = QStackedWidget(central)
        view = QListView(stack)
        rows = Rows()
        view.setModel(rows)
        stack.addWidget(view)
        stack.addWidget(QLabel("empty", stack))
        painted = Painted(central)
        painted.setMinimumSize(20, 20)
        for widget in (line, label, combo, slider, bar, stack, painted):
            layout.addWidget(widget)
        window.setCentralWidget(central)
        status = window.statusBar()
        action = QAction("Find similar", window)
        timer = QTimer(window)
        timer.setInterval(10_000)
        relay = Relay()
        relay.ping.connect(slot)
        relay.carry.connect(slot)
        relay.count.connect(slot)
        window.resize(400, 300)
        window.show()
        app.processEvents()
        self._keep = (window, rows, relay, timer, action, received)
        flip = [0]

        def toggle() -> int:
            flip[0] ^= 1
            return flip[0]

        def single_shot() -> None:
            QTimer.singleShot(0, slot)
            app.processEvents()

        def reset_model() -> None:
            rows.beginResetModel()
            rows.endResetModel()

        def insert_row() -> None:
            n = len(rows.rows)
            rows.beginInsertRows(QModelIndex(), n, n)
            rows.rows.append("d")
            rows.endInsertRows()
            rows.beginRemoveRows(QModelIndex(), n, n)
            rows.rows.pop()
            rows.endRemoveRows()

        def connect_disconnect() -> None:
            relay.ping.connect(received.append)
            relay.ping.disconnect(received.append)

        self.calls: dict[str, Callable[[], object]] = {
            "QLineEdit.setText": lambda: line.setText(text),
            "QLineEdit.clear": line.clear,
            "QLineEdit.setPlaceholderText": lambda: line.setPlaceholderText(text),
            "QLabel.setText": lambda: label.setText(text),
            "QLabel.setPixmap": lambda: label.setPixmap(QPixmap()),
            "QWidget.setToolTip": lambda: label.setToolTip(text),
            "QStatusBar.showMessage": lambda: status.showMessage(text, 8000),
            "QStatusBar.clearMessage": status.clearMessage,
            "QProgressBar.setRange/setValue": lambda: (bar.setRange(0, 10), bar.setValue(5)),
            "QSlider.setValue": lambda: slider.setValue(64 + 24 * toggle()),
            "QComboBox.setCurrentIndex": lambda: combo.setCurrentIndex(toggle()),
            "QStackedWidget.setCurrentIndex": lambda: stack.setCurrentIndex(toggle()),
            "QListView.setCurrentIndex": lambda: view.setCurrentIndex(rows.index(toggle())),
            "QAction.setEnabled": lambda: action.setEnabled(bool(toggle())),
            "QTimer.start/stop": lambda: (timer.start(), timer.stop()),
            "QTimer.setInterval": lambda: timer.setInterval(10_000 + toggle()),
            "QTimer.singleShot": single_shot,
            "QAbstractItemModel.beginResetModel/endResetModel": reset_model,
            "QAbstractItemModel.beginInsertRows/endRemoveRows": insert_row,
            # A value-returning call whose value is None (a role the model does not serve).
            "QModelIndex.data (None from a Python model)": lambda: rows.index(0).data(
                Qt.ItemDataRole.ToolTipRole
            ),
            "QAbstractItemModel.dataChanged.emit": lambda: rows.dataChanged.emit(
                rows.index(0), rows.index(2)
            ),
            "Signal.emit()": relay.ping.emit,
            "Signal.emit(object)": lambda: relay.carry.emit(payload),
            "Signal.emit(int)": lambda: relay.count.emit(7),
            "Signal.connect/disconnect": connect_disconnect,
            "QWidget.show/hide": lambda: (label.hide(), label.show()),
            "QWidget.setVisible": lambda: bar.setVisible(bool(toggle())),
            "QWidget.update": window.update,
            "QWidget.repaint (Python paintEvent)": painted.repaint,
            "QWidget.resize (Python resizeEvent)": lambda: painted.resize(30 + toggle(), 30),
            "QCoreApplication.processEvents": app.processEvents,
        }

    def close(self) -> None:
        window = self._keep[0]
        window.close()
        window.deleteLater()
        self.app.processEvents()


def _measure(
    fn: Callable[[], object], calls: int, watched: dict, tolerance: int
) -> tuple[dict[str, int], int]:
    """(each watched object's drift, calls made) over ``calls`` calls of ``fn``.

    Counted in chunks, and a kind stops at the first chunk past the tolerance: the broken
    bindings lose one reference a call, and a Python 3.11 process holds only a few thousand
    references to None, so running on would abort the check before it can report. What a
    stopped kind lost is given back, so the next kinds, and the interpreter's exit, still
    run on sound counts.
    """
    before = _counts(watched)
    for _ in range(_WARM_UP_CALLS):
        fn()
    after = _counts(watched)
    for key, obj in watched.items():  # the warm-up's losses too, uncounted
        _give_back(obj, before[key] - after[key])
    gc.collect()
    # No collection while counting: freeing unrelated garbage would move None's count.
    enabled = gc.isenabled()
    gc.disable()
    done = 0
    try:
        before = _counts(watched)
        while done < calls:
            step = min(_CHUNK, calls - done)
            for _ in range(step):
                fn()
            done += step
            now = _counts(watched)
            drift = {k: now[k] - before[k] for k in watched}
            if any(abs(d) > tolerance for d in drift.values()):
                break
        for key, d in drift.items():
            _give_back(watched[key], -d)
    finally:
        if enabled:
            gc.enable()
    return drift, done


def _counts(watched: dict) -> dict[str, int]:
    # One way of counting for before and after: how a loop holds its items adds references.
    return {key: sys.getrefcount(obj) for key, obj in watched.items()}


def _give_back(obj, lost: int) -> None:
    """Restore ``lost`` references to ``obj`` that a broken call dropped (none if < 1)."""
    if lost > 0:
        incref = gain_a_reference(obj)
        for _ in range(lost):
            incref()


def check(
    calls: int = DEFAULT_CALLS,
    tolerance: int = TOLERANCE,
    extra: dict[str, Callable[[], object]] | None = None,
    watch: dict[str, object] | None = None,
) -> dict:
    """Run every kind of call ``calls`` times; returns the report (``ok``: nothing failed).

    Watched: ``None``, ``True`` and ``False`` (6.12.0 drops None on void calls and True on
    every ``Signal.emit``), unless immortal, and the objects handed to Qt. A QApplication
    is made when none exists. ``extra`` adds kinds and ``watch`` objects to watch (the tests
    inject a call known to lose a reference, to see the check fail).
    """
    import PySide6
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # A Python with an immortal None (PEP 683) made True and False immortal too. Their
    # counts can still move there, when extension code built for older Pythons counts on
    # them (seen: 6.11.3 on 3.12, True a little above the immortal value), without ever
    # getting near zero: not a finding.
    immortal = list(SINGLETONS) if none_is_immortal() else []
    kinds = _Kinds(app)
    watched = {n: o for n, o in SINGLETONS.items() if n not in immortal} | kinds.args
    watched |= watch or {}
    drift: dict[str, dict[str, int]] = {}
    made: dict[str, int] = {}
    try:
        for name, fn in {**kinds.calls, **(extra or {})}.items():
            drift[name], made[name] = _measure(fn, calls, watched, tolerance)
    finally:
        kinds.close()
    failed = [
        f"{kind}: {obj} {d:+d} after {made[kind]} calls"
        for kind, drifts in drift.items()
        for obj, d in drifts.items()
        if abs(d) > tolerance
    ]
    return {
        "ok": not failed,
        "python": sys.version.split()[0],
        "pyside6": PySide6.__version__,
        "calls_per_kind": calls,
        "tolerance": tolerance,
        "kinds": len(drift),
        "watched": sorted(watched),
        # Their counts never move (Python 3.12+): nothing to see, nor to break.
        "immortal": immortal,
        "failed": failed,
        "none_drift": {k: d.get("None", 0) for k, d in drift.items()},
        "drift": {
            k: {o: n for o, n in d.items() if n} for k, d in drift.items() if any(d.values())
        },
    }


def describe_failure(report: dict) -> str:
    """One paragraph for a test or build log: what lost references, on which versions."""
    lines = [
        f"PySide6 {report['pyside6']} on Python {report['python']} miscounts references "
        f"({report['calls_per_kind']} calls of each kind, tolerance {report['tolerance']}):"
    ]
    lines += [f"  {entry}" for entry in report["failed"]]
    lines.append("  Use a PySide6-Essentials release that passes (pyproject.toml says which).")
    return "\n".join(lines)


def lose_a_reference(obj) -> Callable[[], None]:
    """A call that drops one reference to ``obj`` as the broken bindings do (for tests);
    undo it with the same number of :func:`gain_a_reference` calls."""
    decref = ctypes.pythonapi.Py_DecRef
    decref.argtypes = [ctypes.py_object]
    decref.restype = None
    return lambda: decref(obj)


def gain_a_reference(obj) -> Callable[[], None]:
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    return lambda: incref(obj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qt_refcount", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="calls of each kind")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    report = check(args.calls)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if not report["ok"]:
        print(describe_failure(report), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
