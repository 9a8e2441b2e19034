"""GUI soak: the real window on the demo library through thousands of user actions.

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_soak.py [--actions 10000] [--seed 13]
        [--photos 300] [--interval-ms 2] [--workdir DIR] [--timeout-s 3600]

prints ONE JSON object. The soak runs in a child process, so an abort (the "none_dealloc"
of issue 13, a segfault) is counted as a crash instead of ending the benchmark; the child
writes its figures to a file every few hundred actions, so a crash still says how far it got.

The child builds the demo library (photofind.demo, the bundled tiny-synthetic model), opens
the real main window (1280x800) with its watcher running and drives it with actions chosen
by a seeded RNG: typing queries (real key events through QTest, so the debounce fires),
Enter, Esc, the empty state's example links, keyboard moves in the grid, Find similar,
preview open / navigate / close (Space, arrows, Home/End, Esc), the folder, type, date and
sort filters, zoom (slider, Ctrl+wheel), scrolling, window resizes, adding and removing a
folder (Remove in the folders panel, answering the real confirmation box), Settings (the
real modal dialog, filled in and closed from a timer) and photos written to and deleted
from a watched folder.

Reported: actions done per kind, crashes (must be 0), unhandled exceptions and error
dialogs (must be 0), ``sys.getrefcount(None)`` at start and end (its drift; the bug class
of issue 13 loses one per Qt call), RSS at start, half-way and end, the longest event-loop
stall (the lateness of a 10 ms QTimer heartbeat, as bench_gui measures it) and the action
it happened in, and the slowest action of each kind (its time on the GUI thread).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]

#: Relative weights of the actions: a person types and looks far more than they add folders.
WEIGHTS = {
    "type_query": 12,
    "type_more": 8,
    "backspace": 4,
    "enter": 10,
    "esc": 4,
    "example": 2,
    "move_in_grid": 8,
    "find_similar": 6,
    "preview_open": 6,
    "preview_navigate": 8,
    "preview_close": 4,
    "filter_folder": 3,
    "filter_type": 3,
    "filter_date": 3,
    "sort": 3,
    "zoom": 4,
    "scroll": 3,
    "resize": 1,
    "folder_add": 1,
    "folder_remove": 1,
    "settings": 1,
    "photo_write": 2,
    "photo_delete": 1,
}
CHECKPOINT_EVERY = 250  # actions between the child's progress files
WAIT_S = {"search": 5.0, "preview": 5.0, "folder": 20.0}


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1e6, 1)


# -- the parent --------------------------------------------------------------------------


def run_soak(
    actions: int,
    *,
    seed: int = 13,
    photos: int = 300,
    interval_ms: int = 2,
    workdir: Path | None = None,
    timeout_s: float = 3600.0,
) -> dict:
    """Run the soak in a child process; its figures plus crashes (0 or 1) and exit status."""
    work = Path(workdir or tempfile.mkdtemp(prefix="bench-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    out = work / "soak.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(HERE),
        "--child",
        f"--out={out}",
        f"--actions={actions}",
        f"--seed={seed}",
        f"--photos={photos}",
        f"--interval-ms={interval_ms}",
        f"--workdir={work}",
    ]
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    # The child's own home: its settings and logs stay out of the user's.
    env["PHOTOFIND_HOME"] = str(work / "home")
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=REPO
        )
        status, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        status = "timeout"
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
    try:
        result = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = {"actions_done": 0}
    finished = bool(result.get("finished"))
    crashed = status != 0 or not finished
    result["crashes"] = int(crashed)
    result["exit_status"] = status
    result["wall_s"] = round(time.monotonic() - started, 1)
    if crashed:
        lines = stderr.strip().splitlines()
        result["crashed_during"] = "exit" if finished else "actions"
        result["fatal_error"] = next((x for x in lines if x.startswith("Fatal Python")), None)
        result["stderr_tail"] = lines[-25:]
    return result


# -- the child ---------------------------------------------------------------------------


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _queries(rng: random.Random) -> str:
    from photofind.synthetic import BACKGROUND_KINDS, COLOURS, SHAPES, SIZES

    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    kind = rng.randrange(6)
    if kind == 0:
        return f"a {rng.choice(SIZES)} {colour} {shape}"
    if kind == 1:
        return f"a {colour} {shape} on a {rng.choice(BACKGROUND_KINDS)} background"
    if kind == 2:
        return f"a {colour} {shape} - {rng.choice(list(COLOURS))} background"
    if kind == 3:
        return f"2*a {colour} {shape} + {rng.choice(BACKGROUND_KINDS)} background"
    return f"a {colour} {shape}"


class Soak:
    """The window, the RNG and one method per action; ticks of a QTimer run them."""

    def __init__(self, app, window, args, extra: Path, scratch: Path):
        from PySide6.QtCore import QTimer

        self.app, self.window, self.args = app, window, args
        self.rng = random.Random(args.seed)
        self.extra, self.scratch = extra, scratch
        self.kinds = list(WEIGHTS)
        self.weights = [WEIGHTS[k] for k in self.kinds]
        self.done: Counter = Counter()
        self.skipped: Counter = Counter()  # chosen but not possible then (no rows, no preview)
        self.slowest_ms: dict[str, float] = {}
        self.waits_timed_out: Counter = Counter()
        self.waited_s: Counter = Counter()  # the user waiting for results, by what
        # Where None's count moved: during each kind of action (its GUI-thread part) and
        # between actions (results and thumbnails arriving, the watcher's signals).
        self.none_by_kind: Counter = Counter()
        self._none_after_last = sys.getrefcount(None)
        self.dialogs: Counter = Counter()
        self.error_dialogs: list[str] = []
        self.exceptions: list[str] = []
        self.search_failures: list[str] = []
        self.none_series: list[tuple[int, int]] = []
        self.rss_half: int | None = None
        self.none_start: int | None = None  # set when the actions begin
        self.rss_start: int | None = None
        self.current = "setup"
        self._wait: tuple | None = None  # (condition, deadline, name, since)
        self._busy = False
        self._written = 0
        self._searches = 0
        self._previews = 0
        self._removed = 0
        # The folders the soak added and the library has (their add finished, no removal
        # since): the only ones Remove may pick. The panel alone is not the library's word.
        self.added: set[str] = set()
        window.searchFinished.connect(self._count_search)
        window.previewShown.connect(self._count_preview)
        window.folderRemoved.connect(self._count_removed)
        window.statusBar().messageChanged.connect(self._status_message)
        # The heartbeat: a 10 ms timer's lateness is how long the event loop was away.
        self.gaps: list[float] = []
        self.gap_kinds: list[str] = []
        self._last_beat = time.perf_counter()
        self.heartbeat = QTimer()
        self.heartbeat.setInterval(10)
        self.heartbeat.timeout.connect(self._beat)
        # Modal dialogs run their own event loop: this timer answers them from inside it.
        self.closer = QTimer()
        self.closer.setInterval(20)
        self.closer.timeout.connect(self._answer_dialogs)
        self.driver = QTimer()
        self.driver.setInterval(args.interval_ms)
        self.driver.timeout.connect(self._tick)

    # signals ------------------------------------------------------------------------

    def _count_search(self, _n) -> None:
        self._searches += 1

    def _count_preview(self, _path) -> None:
        self._previews += 1

    def _count_removed(self, path) -> None:
        self._removed += 1
        self.added.discard(path)

    def _status_message(self, text: str) -> None:
        if "failed" in text.lower() and len(self.search_failures) < 20:
            self.search_failures.append(text)

    def _beat(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last_beat)
        self.gap_kinds.append(self.current)
        self._last_beat = now

    # the loop -----------------------------------------------------------------------

    def start(self) -> None:
        self._last_beat = time.perf_counter()
        self.heartbeat.start()
        self.closer.start()
        self.driver.start()

    def stop(self) -> None:
        for timer in (self.driver, self.closer, self.heartbeat):
            timer.stop()

    def actions_done(self) -> int:
        return sum(self.done.values())

    def finished(self) -> bool:
        return self.actions_done() >= self.args.actions

    def _tick(self) -> None:
        from PySide6.QtWidgets import QApplication

        if self._busy or QApplication.activeModalWidget() is not None or self.finished():
            return  # a modal dialog is up (nobody can reach the window), or we are done
        if self._wait is not None:
            condition, deadline, name, since = self._wait
            if not condition():
                if time.monotonic() < deadline:
                    return
                self.waits_timed_out[name] += 1
            self.waited_s[name] += time.monotonic() - since
            self._wait = None
        kind = self.rng.choices(self.kinds, self.weights)[0]
        self._busy = True
        self.current = kind
        none_before = sys.getrefcount(None)
        self.none_by_kind["between actions"] += none_before - self._none_after_last
        started = time.perf_counter()
        try:
            did = getattr(self, f"do_{kind}")()
        except Exception:  # noqa: BLE001 - the soak's own fault must not pass for the app's
            self.exceptions.append(f"in the soak's {kind}: {traceback.format_exc()}")
            did = False
        finally:
            self._busy = False
        ms = (time.perf_counter() - started) * 1e3
        self._none_after_last = sys.getrefcount(None)
        self.none_by_kind[kind] += self._none_after_last - none_before
        if did is False:
            self.skipped[kind] += 1
        else:
            self.done[kind] += 1
            self.slowest_ms[kind] = max(self.slowest_ms.get(kind, 0.0), ms)
        self.current = "between actions"
        n = self.actions_done()
        if did is not False and n % CHECKPOINT_EVERY == 0:
            self.none_series.append((n, sys.getrefcount(None)))
            if n >= self.args.actions // 2 and self.rss_half is None:
                self.rss_half = rss_bytes()
            self.checkpoint()

    def wait_for(self, condition, seconds: float, name: str) -> None:
        now = time.monotonic()
        self._wait = (condition, now + seconds, name, now)

    def checkpoint(self, **extra) -> None:
        _write(self.args.out, {**self.report(), **extra})

    # dialogs ------------------------------------------------------------------------

    def _answer_dialogs(self) -> None:
        from PySide6.QtWidgets import QApplication, QMessageBox

        for widget in QApplication.topLevelWidgets():
            if widget.objectName() == "errorDialog" and widget.isVisible():
                self.error_dialogs.append(f"{widget.windowTitle()}: {widget.text()}")
                widget.close()
        modal = QApplication.activeModalWidget()
        if modal is None:
            return
        name = modal.objectName() or type(modal).__name__
        self.dialogs[name] += 1
        if name == "settingsDialog":
            self._fill_in_settings(modal)
        elif isinstance(modal, QMessageBox):
            yes = modal.button(QMessageBox.StandardButton.Yes)
            (yes or modal.defaultButton() or modal.escapeButton()).click()
        else:
            self.dialogs[f"unexpected {name}"] += 1
            modal.reject()

    def _fill_in_settings(self, dialog) -> None:
        rng = self.rng
        # The model and provider stay: changing them re-indexes the library (another
        # benchmark's subject), which would swamp every other action here.
        dialog.thumbnail.setValue(rng.randrange(64, 321, 8))
        dialog.reconcile.setValue(rng.randrange(1, 61))
        if rng.random() < 0.3:
            dialog.cutoff.setChecked(not dialog.cutoff.isChecked())
        if rng.random() < 0.75:
            dialog.accept()
        else:
            dialog.reject()

    # actions: each returns False when it could not be done now ---------------------

    def _key(self, widget, key, modifier=None) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        QTest.keyClick(widget, key, modifier or Qt.KeyboardModifier.NoModifier)

    def _searched(self) -> None:
        box = self.window.search_box
        if self.rng.random() < 0.3:  # now and then the user waits for the results
            before = self._searches
            # (An empty box clears the grid instead: nothing to wait for.)
            self.wait_for(
                lambda: self._searches > before or not box.text().strip(),
                WAIT_S["search"],
                "search",
            )

    def do_type_query(self):
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        box = self.window.search_box
        self._key(box, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        QTest.keyClicks(box, _queries(self.rng))
        self._searched()  # the debounce runs it

    def do_type_more(self):
        from PySide6.QtTest import QTest

        from photofind.synthetic import BACKGROUND_KINDS, COLOURS

        words = [*COLOURS, *BACKGROUND_KINDS, "background", "+", "-"]
        box = self.window.search_box
        if len(box.text()) > 60:
            box.selectAll()
        QTest.keyClicks(box, " " + self.rng.choice(words))

    def do_backspace(self):
        from PySide6.QtCore import Qt

        for _ in range(self.rng.randrange(1, 6)):
            self._key(self.window.search_box, Qt.Key.Key_Backspace)

    def do_enter(self):
        from PySide6.QtCore import Qt

        self._key(self.window.search_box, Qt.Key.Key_Return)
        self._searched()

    def do_esc(self):
        from PySide6.QtCore import Qt

        self._key(self.window.search_box, Qt.Key.Key_Escape)

    def do_example(self):
        from photofind.demo import EXAMPLE_SEARCHES

        window = self.window
        if window.stack.currentWidget() is not window.empty or window._last_query != "":
            return False
        # A click on one of the example links of the first screen.
        window.empty_label.linkActivated.emit(self.rng.choice(EXAMPLE_SEARCHES[:3]))
        self._searched()

    def _rows(self) -> int:
        return self.window.results.rowCount()

    def _select_random(self) -> bool:
        n = self._rows()
        if not n:
            return False
        view = self.window.view
        view.setCurrentIndex(view.model().index(self.rng.randrange(n), 0))
        return True

    def do_move_in_grid(self):
        from PySide6.QtCore import Qt

        if not self._rows():
            return False
        key = self.rng.choice(
            [Qt.Key.Key_Right, Qt.Key.Key_Left, Qt.Key.Key_Down, Qt.Key.Key_Up, Qt.Key.Key_End]
        )
        self._key(self.window.view, key)

    def do_find_similar(self):
        if not self._select_random():
            return False
        self.window.find_similar_action.trigger()
        self._searched()

    def do_preview_open(self):
        from PySide6.QtCore import Qt

        if not self._select_random():
            return False
        before = self._previews
        self._key(self.window.view, Qt.Key.Key_Space)
        self.wait_for(lambda: self._previews > before, WAIT_S["preview"], "preview")

    def _preview(self):
        preview = self.window.preview
        return preview if preview is not None and preview.isVisible() else None

    def do_preview_navigate(self):
        from PySide6.QtCore import Qt

        preview = self._preview()
        if preview is None:
            return False
        keys = [
            Qt.Key.Key_Right,
            Qt.Key.Key_Right,
            Qt.Key.Key_Left,
            Qt.Key.Key_Home,
            Qt.Key.Key_End,
        ]
        self._key(preview, self.rng.choice(keys))

    def do_preview_close(self):
        from PySide6.QtCore import Qt

        preview = self._preview()
        if preview is None:
            return False
        self._key(preview, self.rng.choice([Qt.Key.Key_Escape, Qt.Key.Key_Space]))

    def _pick(self, combo) -> None:
        combo.setCurrentIndex(self.rng.randrange(combo.count()))

    def do_filter_folder(self):
        self._pick(self.window.filter_bar.folder)

    def do_filter_type(self):
        self._pick(self.window.filter_bar.type)

    def do_filter_date(self):
        from PySide6.QtCore import QDate

        bar = self.window.filter_bar
        edit = self.rng.choice([bar.after, bar.before])
        if self.rng.random() < 0.4:
            edit.setDate(edit.minimumDate())  # cleared: "any"
        else:
            edit.setDate(QDate(2019, 1, 1).addDays(self.rng.randrange(6 * 365)))

    def do_sort(self):
        self._pick(self.window.filter_bar.sort)

    def do_zoom(self):
        from PySide6.QtCore import QPoint, QPointF, Qt
        from PySide6.QtGui import QWheelEvent
        from PySide6.QtWidgets import QApplication

        window = self.window
        if self.rng.random() < 0.5:
            window.zoom.setValue(self.rng.randrange(64, 321))
            return
        viewport = window.view.viewport()
        centre = QPointF(viewport.rect().center())
        step = self.rng.choice([120, -120])
        event = QWheelEvent(
            centre,
            QPointF(viewport.mapToGlobal(centre.toPoint())),
            QPoint(0, 0),
            QPoint(0, step),
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.ControlModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(viewport, event)

    def do_scroll(self):
        bar = self.window.view.verticalScrollBar()
        if bar.maximum() <= 0:
            return False
        bar.setValue(self.rng.choice([0, bar.maximum(), self.rng.randrange(bar.maximum())]))

    def do_resize(self):
        self.window.resize(self.rng.randrange(900, 1400), self.rng.randrange(600, 900))

    def _folders(self) -> list[str]:
        return [path for path, _, _ in self.window.folders_panel.rows()]

    def do_folder_add(self):
        extra = str(self.extra)
        if extra in self.added or extra in self._folders():
            return False
        self.window.add_folder(extra)

        def added() -> bool:
            # The panel shows the folder once the library's add is done (the controller
            # drops counts read before a folder change, which would show an old list).
            if extra in self._folders():
                self.added.add(extra)
                return True
            return False

        self.wait_for(added, WAIT_S["folder"], "folder added")

    def do_folder_remove(self):
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        panel = self.window.folders_panel
        shown = set(self._folders())
        candidates = sorted(self.added & shown)  # sorted: the seed decides which
        if not candidates:
            return False
        panel.select(self.rng.choice(candidates))
        before = self._removed
        # Remove, then Yes in the confirmation box (answered by the closer timer).
        QTest.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
        self.wait_for(lambda: self._removed > before, WAIT_S["folder"], "folder removed")

    def do_settings(self):
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        # Blocks in the dialog's own event loop until the closer timer answers it.
        QTest.mouseClick(self.window.settings_button, Qt.MouseButton.LeftButton)

    def do_photo_write(self):
        from photofind.synthetic import STREAM_PUBLIC, encode, generate

        if len(list(self.scratch.iterdir())) >= 20:
            return False
        scene, image, _ = generate(self.args.seed + 1, self._written, STREAM_PUBLIC)
        target = self.scratch / f"new_{self._written:05d}.{scene.format}"
        tmp = target.with_name("." + target.name + ".part")
        tmp.write_bytes(encode(image, scene.format))
        os.replace(tmp, target)  # the watcher sees a whole file appear
        self._written += 1

    def do_photo_delete(self):
        files = sorted(p for p in self.scratch.iterdir() if not p.name.startswith("."))
        if not files:
            return False
        self.rng.choice(files).unlink()

    # figures ------------------------------------------------------------------------

    def report(self) -> dict:
        import PySide6

        gaps_ms = [g * 1e3 for g in self.gaps]
        longest = max(range(len(gaps_ms)), key=gaps_ms.__getitem__) if gaps_ms else None
        ordered = sorted(gaps_ms)
        return {
            "python": sys.version.split()[0],
            "pyside6": PySide6.__version__,
            "actions_done": self.actions_done(),
            "actions": dict(sorted(self.done.items())),
            "skipped_not_possible_then": dict(sorted(self.skipped.items())),
            "searches_finished": self._searches,
            "previews_shown": self._previews,
            "dialogs_answered": dict(sorted(self.dialogs.items())),
            "waits_timed_out": dict(self.waits_timed_out),
            "waited_s": {k: round(v, 1) for k, v in sorted(self.waited_s.items())},
            "exceptions": self.exceptions[:10],
            "exceptions_count": len(self.exceptions),
            "error_dialogs": self.error_dialogs[:10],
            "search_failures": self.search_failures,
            "none_refcount_start": self.none_start,
            "none_refcount_series": self.none_series,
            "none_refcount_change_by_action": dict(self.none_by_kind.most_common()),
            "longest_stall_ms": round(gaps_ms[longest], 1) if longest is not None else None,
            "longest_stall_during": self.gap_kinds[longest] if longest is not None else None,
            "p99_heartbeat_gap_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1)
            if ordered
            else None,
            "heartbeat_gaps_over_100ms": sum(g > 100 for g in gaps_ms),
            "slowest_action_ms": {k: round(v, 1) for k, v in sorted(self.slowest_ms.items())},
            "rss_start_mb": _mb(self.rss_start),
            "rss_half_mb": _mb(self.rss_half),
        }


def wait_until(app, condition, timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop, QTimer

    if condition():
        return True
    loop = QEventLoop()
    met = [False]

    def check():
        if condition():
            met[0] = True
            loop.quit()

    tick = QTimer()
    tick.timeout.connect(check)
    tick.start(5)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    tick.stop()
    return met[0]


def _idle(window) -> bool:
    pools = (window.tasks.search_pool, window.tasks.io_pool)
    return all(p.activeThreadCount() == 0 for p in pools)


def child(args) -> int:
    sys.path[:0] = [str(REPO), str(HERE.parents[1])]
    from gui_support import FAST
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QKeySequence
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from photofind.clip import load_model
    from photofind.demo import DEMO_MODEL, PHOTOS_DIR, build_demo_library
    from photofind.gui import create_window
    from photofind.gui.errors import ErrorReporter
    from photofind.synthetic import STREAM_PUBLIC, encode, generate

    t0 = time.perf_counter()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    model = load_model(DEMO_MODEL, provider="cpu")
    root = args.workdir / "demo"
    build_demo_library(root, model, count=args.photos)
    scratch = root / PHOTOS_DIR / "scratch"  # the watcher sees photos come and go here
    scratch.mkdir(exist_ok=True)
    for stale in scratch.iterdir():
        stale.unlink()
    extra = args.workdir / "more photos"  # the folder the soak adds and removes
    extra.mkdir(exist_ok=True)
    for i in range(8):
        scene, image, _ = generate(args.seed + 2, i, STREAM_PUBLIC)
        target = extra / f"more_{i}.{scene.format}"
        if not target.exists():
            target.write_bytes(encode(image, scene.format))

    window = create_window(root, model, watch_options=FAST)
    window.resize(1280, 800)
    window.show()
    soak = Soak(app, window, args, extra, scratch)
    # As the app does (photofind.gui.app.run): uncaught exceptions anywhere are reported.
    reporter = ErrorReporter(
        lambda: window, show=lambda title, text, details: soak.exceptions.append(details)
    ).install()
    window.start_indexing()
    # The watcher's first round (the demo was indexed by build_demo_library) and a count.
    ready = wait_until(
        app,
        lambda: window._indexed_count() is not None and not window.indexing.indexing,
        60,
    )
    QTest.keyClicks(window.search_box, "a red circle")
    QTest.keyClick(window.search_box, Qt.Key.Key_Return)
    wait_until(app, lambda: window.results.rowCount() > 0, 30)
    gc.collect()
    none_start = soak.none_start = sys.getrefcount(None)
    rss_start = soak.rss_start = rss_bytes()
    setup_s = time.perf_counter() - t0

    started = time.perf_counter()
    soak.start()
    wait_until(app, soak.finished, args.timeout_s)
    soak.stop()
    actions_s = time.perf_counter() - started
    soak.current = "settling"
    t = time.perf_counter()
    # Let what the last actions started finish (searches, a folder removal, indexing).
    settled = wait_until(app, lambda: _idle(window), 30)
    settle_s = time.perf_counter() - t
    gc.collect()
    none_end = sys.getrefcount(None)
    rss_end = rss_bytes()
    result = {
        **soak.report(),
        "seed": args.seed,
        "photos": args.photos,
        "watcher_ready_before_start": ready,
        "settled": settled,
        "settle_s": round(settle_s, 1),
        "setup_s": round(setup_s, 1),
        "actions_s": round(actions_s, 1),
        "actions_per_s": round(soak.actions_done() / actions_s, 1),
        "none_refcount_start": none_start,
        "none_refcount_end": none_end,
        "none_refcount_drift": none_end - none_start,
        "rss_start_mb": _mb(rss_start),
        "rss_half_mb": _mb(soak.rss_half or rss_end),
        "rss_end_mb": _mb(rss_end),
    }
    soak.checkpoint(**result)
    # Quit as the user does (the second crash of issue 13 came here): the Quit shortcut
    # where the platform binds one (Ctrl+Q on X11 and Wayland desktops; the offscreen
    # platform binds none), else close() as that shortcut would.
    quit_keys = QKeySequence(QKeySequence.StandardKey.Quit)
    window.activateWindow()
    if not quit_keys.isEmpty() and QTest.qWaitForWindowActive(window, 5000):
        QTest.keySequence(window.windowHandle(), quit_keys)
        result["quit_by"] = quit_keys.toString()
    else:
        window.close()
        result["quit_by"] = "close() (no Quit key on this platform)"
    result["window_closed"] = wait_until(app, lambda: not window.isVisible(), 30)
    reporter.uninstall()
    app.processEvents()
    result["exceptions_count"] = len(soak.exceptions)
    result["exceptions"] = soak.exceptions[:10]
    result["finished"] = True
    _write(args.out, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--photos", type=int, default=300, help="photos in the demo library")
    parser.add_argument("--interval-ms", type=int, default=2, help="between two actions")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.child:
        return child(args)
    result = run_soak(
        args.actions,
        seed=args.seed,
        photos=args.photos,
        interval_ms=args.interval_ms,
        workdir=args.workdir,
        timeout_s=args.timeout_s,
    )
    print(json.dumps(result, indent=2), flush=True)
    return 0 if result["crashes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
