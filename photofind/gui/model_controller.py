"""Which model the window searches and indexes with, and the watcher that indexes with it.

The GUI adapter over the library's :class:`~photofind.library.model_session.ModelSession`,
which decides: everything that waits or writes (stopping the old watcher, beginning a
change, loading a model, building the demo) runs on a pool thread; this object only keeps
the GUI thread's copy of the session's models (what the window shows and searches with),
refreshed when a change was begun and when the watcher reports a swap.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject

from photofind.clip.verified import user_record
from photofind.gui.watching import WatcherJob, health_text
from photofind.library.model_session import ModelSession

log = logging.getLogger(__name__)


class ModelController(QObject):
    def __init__(self, window, model, engine, staged_model=None, session=None):
        super().__init__(window)
        self.window = window
        self.model = model
        #: the model a staged change re-indexes for; searches use self.model until the swap
        self.staged_model = staged_model
        self.engine = engine
        #: decides what the models are; its watcher's worker changes it at a swap, so the
        #: GUI thread reads model and staged_model above instead
        #: (the app's, which chose the models at the start, when it hands one in)
        self.session = session or ModelSession(
            window.library, model, staged_model, verified=user_record()
        )
        self.indexing: WatcherJob | None = None
        self._changes: list[tuple[object, object]] = []  # (model, then): set_model's queue
        self._request: object | None = None  # the newest _load_model: earlier ones lose
        self._face_analysers: list | None = None  # see _analysers

    @property
    def changing(self) -> bool:
        """A set_model is queued or running (its watcher is stopped, its change not begun)."""
        return bool(self._changes)

    def text(self) -> str:
        """The status bar's model label."""
        if self.model is None:
            return "no model"
        info = self.model.info
        text = f"{info.name} · {info.provider.upper()}"
        if self.staged_model is not None:
            text += f" (re-indexing for {self.staged_model.info.name})"
        return text

    # -- the watcher ------------------------------------------------------------------------

    def make_indexing_job(self) -> None:
        """The watcher runs only on a writable library with a model (see gui/watching.py)."""
        w = self.window
        if self.model is None or w.library.readonly:
            w.watch_label.setText(health_text(None, readonly=w.library.readonly))
            return
        self.indexing = WatcherJob(
            w.library, self.session, w.watch_options, w, analysers=self._analysers
        )
        self.indexing.modelSwapped.connect(self._on_model_swapped)
        self.indexing.message.connect(lambda text: log.info("watcher: %s", text))
        w.folders.attach(self.indexing)
        w.people.attach(self.indexing)

    def _analysers(self) -> list:
        """On the watcher's thread: the face pass after CLIP, as the settings want it.

        Kept for the window's life, not made per watcher: loading dlib's models holds the
        GIL throughout (0.3 s on a quiet core, over 1 s on a busy one; the GUI freezes
        meanwhile), so each is loaded once. Turning face recognition off or on drops them
        (:meth:`forget_analysers`).

        Faces are found in worker processes, one per core (photofind.faces.worker;
        face_analysers' default), not in this one: dlib's embedder holds the GIL for each
        face (~0.1 s on a quiet core), and the GUI waits behind it.
        tests/bench/bench_gui_faces.py, 80 photos on 2 busy cores: longest event-loop stall
        117 ms, p99 22 ms, 2.24 photos/s with two processes; 1,026 ms, p99 453 ms, 2.19
        photos/s on the decode threads in-process."""
        from photofind.people import face_analysers, face_recognition_on

        root = self.window.library.root
        if self._face_analysers is None or not face_recognition_on(root):
            self._face_analysers = face_analysers(root)
        return self._face_analysers

    def forget_analysers(self) -> None:
        """Drop the face analyser, ending its processes (no watcher may be running)."""
        analysers, self._face_analysers = self._face_analysers, None
        for analyser in analysers or ():
            analyser.close()

    def start_indexing(self) -> None:
        """Start watching (a reconcile of every folder, then indexing what is new) — unless a
        rewrite of the library is queued: the last one to finish starts it."""
        w = self.window
        if self.indexing is not None and w.folders.folders and not w.writes.busy:
            self.indexing.start()

    # -- changing the model -----------------------------------------------------------------

    def set_model(self, model, then=None) -> None:
        """Index with ``model`` from now on. A library holding the current model's vectors
        re-indexes in the background and searches with them until the swap.

        Returns at once: the old watcher is stopped and the change begun on a pool thread;
        then the window searches with the right model and ``then()`` is called; once no
        change is left, the new watcher starts and ``modelSet`` is emitted. Changes asked
        meanwhile run after it, in order.
        """
        self._changes.append((model, then))
        if len(self._changes) == 1:
            self._next_change()

    def _next_change(self) -> None:
        w = self.window
        model, then = self._changes[0]
        job, self.indexing = self.indexing, None
        # The watcher of the old model must not write any more; it is stopped (a join
        # that waits for the batch in flight) off the GUI thread, before the change.
        watcher = job.detach() if job is not None else None
        session = self.session

        def work():
            if watcher is not None:
                watcher.stop()
            session.choose(model)
            return session.active, session.staged

        def done(result, error):
            self._changes.pop(0)
            if job is not None:
                job.deleteLater()  # only now: its watcher emitted through it until stopped
            if w._closing:
                return
            if error is not None:
                w.report_error("The model could not be used", str(error))
            else:
                self._changed(*result)
                w.model_label.setText(self.text())
            if then is not None and error is None:
                then()
            if self._changes:
                self._next_change()  # its watcher is the one to start
                return
            self.make_indexing_job()
            self.start_indexing()
            w.modelSet.emit(self.model)

        w.writes.run(work, done)

    def _changed(self, active, staged) -> None:
        """The session's models after a change was begun: a library holding the active
        model's vectors keeps searching with them while the watcher re-indexes for the
        staged one (see _on_model_swapped)."""
        from photofind.search import SearchEngine

        if active is not self.model or self.engine is None:
            self.engine = SearchEngine(self.window.library, active)
        self.model, self.staged_model = active, staged

    def _on_model_swapped(self, model) -> None:
        """A staged model change completed: search with the new model from now on."""
        from photofind.search import SearchEngine

        w = self.window
        current = self.staged_model is model or (self.staged_model is None and self.model is model)
        if w._closing or not current:
            return  # from a watcher stopped since: set_model already saw the swap
        self.model, self.staged_model = model, None
        self.engine = SearchEngine(w.library, model)
        w.model_label.setText(self.text())
        w.index_label.setText(f"Re-indexed for model {model.info.name}: it is now in use")
        w.modelChanged.emit(model.info.name)
        w.search.run_again()

    def load_model(
        self, name: str, provider: str, precision: str = "fast", *, keep_variant: bool = False
    ) -> None:
        """Load the model ``name`` off the GUI thread and change to it (``precision``:
        photofind.clip.variants). ``keep_variant``: only the provider changed, so fast
        vectors the library holds stay (ModelSession.variant_kept), not re-indexed for the
        variant "fast" picks on the new provider."""
        from photofind.clip import load_model

        w = self.window
        w.index_label.setText(f"Loading the model {name}…")
        root = w.library.root
        # A later choice supersedes this one: a slower earlier load must not win (each
        # set_model of a model the library does not hold begins a re-index).
        request = self._request = object()

        def changed(model):
            if self.model is model:  # else it is re-indexed for; _on_model_swapped says when
                w.modelChanged.emit(model.info.name)

        def done(model, error):
            if w._closing or request is not self._request:
                return
            if error is not None:
                w.index_label.setText("")
                w.report_error("The model could not be loaded", str(error))
                return
            self.set_model(model, then=lambda: changed(model))

        session = self.session

        def load():
            model = load_model(
                name, provider=provider, library=root, verified=user_record(), precision=precision
            )
            return session.variant_kept(model, provider=provider) if keep_variant else model

        w.tasks.run(load, done, pool=w.tasks.io_pool)

    def open_demo(self) -> None:
        """Build (once) and open the demo library in a new window; close this one."""
        from photofind.clip import load_model
        from photofind.demo import DEMO_MODEL, build_demo_library, demo_root

        w = self.window
        root = demo_root(w.library.root)
        w.index_label.setText("Making the demo library…")
        library_root = w.library.root

        def work():
            model = load_model(
                DEMO_MODEL, provider="cpu", library=library_root, verified=user_record()
            )
            build_demo_library(root, model)
            return model

        def done(model, error):
            if error is not None:
                w.report_error("The demo could not be built", str(error))
                return
            window = w.create_window(root, model)
            window.resize(w.size())  # this one was fitted to the screen
            window.setWindowState(w.windowState())
            window.show()
            window.start_indexing()  # the watcher: without it the demo says "Not watching"
            window.search_box.setText("a red circle")
            window.run_search()
            w.demo_window = window
            w.close()

        w.tasks.run(work, done, pool=w.tasks.io_pool)
