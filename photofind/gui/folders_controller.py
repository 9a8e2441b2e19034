"""The library's folders and how indexing them goes: adding and removing folders, the counts
the folders panel shows, and the status bar's indexing progress, pause and watch health.

Every catalog read and write runs on a pool thread: the watcher's writer may hold the
catalog's lock for a long query, and the GUI thread must never wait on it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QFileDialog

from photofind.gui.folders_panel import count_photos, folder_rows
from photofind.gui.plaintext import tooltip
from photofind.gui.watching import health_text

log = logging.getLogger(__name__)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class FoldersController(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        # Only this first read is made on the GUI thread, at start.
        self.folders = window.library.folders()
        self.counts: dict = {}  # folder id -> Counter of statuses; {} until counted
        self.watch_status: dict | None = None
        self._counting = False
        self._recount_again = False
        # Bumped when a folder is added or removed: a count read before that shows the
        # folders as they were, and is dropped (the panel would show a removed folder again,
        # whose Remove then fails).
        self._folder_changes = 0
        self.recount_timer = QTimer(self)
        self.recount_timer.setSingleShot(True)
        self.recount_timer.setInterval(1000)
        self.recount_timer.timeout.connect(self.refresh)

    def attach(self, job) -> None:
        """Show what the watcher ``job`` (a WatcherJob) does."""
        job.progress.connect(self._on_progress)
        job.finished.connect(self._on_finished)
        job.runningChanged.connect(self._on_running)
        job.health.connect(self.on_watch_health)
        self.window.watch_label.setText(
            health_text(None) if self.folders else "No folders to watch yet"
        )

    # -- adding and removing ----------------------------------------------------------------

    def choose_folder(self) -> None:
        w = self.window
        folder = QFileDialog.getExistingDirectory(w, "Add a photo folder", str(Path.home()))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        """Add a photo folder, then watch and index it. The catalog write runs on a pool
        thread: the watcher may hold the catalog for a long reconcile meanwhile."""
        w = self.window
        library = w.library

        def work():
            library.add_folder(folder)
            return library.folders()

        def done(folders, error):
            if w._closing:
                return
            self._folder_changes += 1
            if error is not None:
                w.report_error("Cannot add folder", str(error))
                return
            self.folders = folders
            self.show()
            w.search.refresh_empty_state()
            self.refresh()
            w.start_indexing()
            if w.model is None:
                w.model_setup.missing("folder")

        w.tasks.run(work, done, pool=w.tasks.io_pool)

    def ask_remove_folder(self, path: str) -> None:
        n = self.photo_count(path)
        what = f"its {n:,} photos" if n else "it"
        if self.window.confirm(
            "Remove folder",
            f"Remove {path} from the library?\n\nphotofind forgets {what}; the files on "
            "disk are not touched.",
        ):
            self.remove_folder(path)

    def photo_count(self, path: str) -> int:
        for folder in self.folders:
            if folder.path == path:
                return sum(self.counts.get(folder.id, {}).values())
        return 0

    def remove_folder(self, path: str) -> None:
        """Forget a folder. Its photos and vectors are rewritten, so the watcher is stopped
        first and started again after (one writer at a time: see gui/watching.py)."""
        w = self.window
        job = w.indexing
        watcher = job.detach() if job is not None else None
        w.index_label.setText(f"Removing {os.path.basename(path)}…")
        library, engine = w.library, w.engine

        def work():
            if watcher is not None:
                watcher.stop()
            n = library.remove_folder(path)
            if engine is not None:
                engine.refresh()  # its photo table has the folder's (it takes a search's lock)
            return n

        def done(n, error):
            if w._closing:
                return
            self._folder_changes += 1
            if error is not None:
                w.report_error("Cannot remove folder", str(error))
            else:
                w.index_label.setText(f"Removed {path} ({n:,} photos forgotten)")
                # Gone from the panel now, not when the recount below comes back.
                self.folders = [f for f in self.folders if f.path != path]
                self.show()
            self.refresh()
            w.search.refresh_empty_state()
            w.search.run_again()
            w.start_indexing()
            w.folderRemoved.emit(path)

        w.writes.run(work, done)

    # -- counting and showing ---------------------------------------------------------------

    def refresh(self) -> None:
        """Read the folders and count their photos off the GUI thread, then show them."""
        if self._counting:
            self._recount_again = True
            return
        self._counting = True
        w = self.window
        library = w.library
        changes = self._folder_changes

        def done(result, error):
            self._counting = False
            if w._closing:
                return
            if changes != self._folder_changes:
                self._recount_again = True  # read before a folder change: count again
            elif error is None:
                self.folders, self.counts = result
                self.show()
                w.search.refresh_empty_state()
            else:
                log.warning("counting the library's photos failed: %s", error)
            if self._recount_again:
                self._recount_again = False
                self.refresh()

        w.tasks.run(
            lambda: (library.folders(), count_photos(library.catalog)),
            done,
            pool=w.tasks.io_pool,
        )

    def indexed_count(self) -> int | None:
        """Photos with a vector, as last counted (None before the first count)."""
        if not self.counts:
            return None
        return sum(c["indexed"] for c in self.counts.values())

    def show(self) -> None:
        w = self.window
        job = w.indexing
        running = job is not None and job.running
        w.unreadable.set_count(sum(c["failed"] for c in self.counts.values()))
        rows = folder_rows(
            self.folders,
            self.counts,
            self.watch_status if self.watch_status is not None or job is None else {},
            job.last_progress if running else None,
            reconciling=running and job.reconciling,
            has_model=w.model is not None,
        )
        w.folders_panel.set_rows(rows)
        w.filter_bar.set_folders([r.path for r in rows])
        w.foldersShown.emit()

    # -- indexing ---------------------------------------------------------------------------

    def toggle_pause(self) -> None:
        w = self.window
        if w.indexing is None:
            return
        if w.indexing.paused:
            w.indexing.resume()
            w.pause_button.setText("Pause")
        else:
            w.indexing.pause()
            w.pause_button.setText("Resume")
            w.index_label.setText("Indexing paused")

    def _on_running(self, running: bool) -> None:
        w = self.window
        w.progress.setVisible(running)
        w.pause_button.setVisible(running)
        if running:
            w.progress.setRange(0, 0)
            w.index_label.setText("Looking for new photos…")
            self.refresh()  # the pass's photos are catalogued now: count them
        self.show()

    def on_watch_health(self, status: dict) -> None:
        w = self.window
        self.watch_status = status
        self.show()
        w.watch_label.setText(health_text(status))
        w.watch_label.setToolTip(
            tooltip(
                "\n".join(f"{f['path']}: {f['mode']}" for f in status.get("folders", []))
                + (f"\n{status['last_error']}" if status.get("last_error") else "")
            )
        )

    def _on_progress(self, p) -> None:
        w = self.window
        if not self.recount_timer.isActive():
            self.recount_timer.start()
        self.show()  # photos left, from the pass itself (the counts lag it)
        w.search.index_progressed()
        w.progress.setRange(0, max(1, p.total))
        w.progress.setValue(p.done)
        if not p.paused and getattr(p, "model", None):  # a staged model change
            w.index_label.setText(
                f"Re-indexing for model {p.model}: {p.done:,}/{p.total:,} · "
                f"{_fmt_eta(p.eta_s)} left" + (f" · {p.failed} failed" if p.failed else "")
            )
        elif not p.paused and getattr(p, "stage", ()) == ("faces",):  # the face pass only
            w.index_label.setText(
                f"Finding faces {p.done:,} / {p.total:,} · {p.images_per_s:.1f} photos/s · "
                f"{_fmt_eta(p.eta_s)} left" + (f" · {p.failed} failed" if p.failed else "")
            )
        elif not p.paused:
            w.index_label.setText(
                f"Indexing {p.done:,} / {p.total:,} · {p.images_per_s:.1f} photos/s · "
                f"{_fmt_eta(p.eta_s)} left" + (f" · {p.failed} failed" if p.failed else "")
            )

    def _on_finished(self, stats, error) -> None:
        w = self.window
        if w._closing:
            return  # the library may be closed already
        if error is not None:
            w.index_label.setText("Indexing stopped")
            w.report_error("Indexing failed", str(error))
            return
        job = w.indexing
        if job is None:
            return  # a model change replaces the watcher: the new one reports
        counts = job.last_counts  # counted on the watcher's thread
        if job.last_folder_counts is not None:
            self.counts = job.last_folder_counts
        if counts is not None:
            # (What could not be read is the status bar's button beside it: it opens the list.)
            w.index_label.setText(f"{counts['indexed']:,} photos indexed")
        w.unreadable.refresh()
        w.search.refresh_empty_state()
        self.refresh()
        w.search.live_refresh.stop()
        w.search.run_again()  # new photos may now match
