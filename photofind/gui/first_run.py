"""Getting a model: the first-run choices (download, import, or the demo library), the
install with its progress, what a failure means and the way on from it (Retry, Back to the
choices), and — while there is no model — a bar that says what is missing.

The demo is a library of its own (``<library>/demo``, :func:`photofind.demo.demo_root`),
never the user's: the dialog says where it lives and offers it again, and a demo window is
titled as one, so that ``photofind`` after ``photofind --demo`` (the user's own library,
empty, with no model yet) is plainly the other library and not the demo gone missing.
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

log = logging.getLogger(__name__)

RECOMMENDED = "ViT-B-32"  # the model store's catalogue name of OpenAI's ViT-B/32


def _home(path: Path) -> str:
    """``path`` as a person reads it (``~/…`` under the home folder), escaped for rich text."""
    home = Path.home()
    try:
        shown = "~/" + str(Path(path).relative_to(home))
    except ValueError:
        shown = str(path)
    return html.escape(shown)


class FirstRunDialog(QDialog):
    """Three ways forward; ``choice`` is "download", "import", "demo" or None.

    ``library_root``: the library this window shows (named, so the user sees which one);
    ``demo_at``: where the demo library lives or would be made.
    """

    def __init__(self, parent=None, *, library_root=None, demo_at=None, language=None):
        from photofind.clip.hf_tokenizer import system_language
        from photofind.models import facts

        super().__init__(parent)
        self.setObjectName("firstRunDialog")
        self.setWindowTitle("Welcome to photofind")
        self.choice: str | None = None
        # A desktop in another language than English is offered a model that reads it.
        language = language or system_language()
        self.multilingual = None
        if facts.base_language(language) not in ("", "en", "c", "posix"):
            entry = facts.recommended(language)
            self.multilingual = entry if entry.multilingual else None
        layout = QVBoxLayout(self)
        demo_made = demo_at is not None and _demo_made(Path(demo_at))
        where = ""
        if library_root is not None:
            where = f"<p>This is your photo library, in <tt>{_home(Path(library_root))}</tt>.</p>"
        if demo_made:
            where += (
                f"<p>The demo you tried is a separate library, in <tt>{_home(Path(demo_at))}"
                "</tt>: its generated photos and its small model stay there, apart from yours."
                "</p>"
            )
        text = QLabel(
            "<h3>photofind needs a model to understand photos</h3>"
            "<p>The model runs on this computer; your photos never leave it.</p>" + where,
            self,
        )
        text.setObjectName("firstRunText")
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        self.text = text
        layout.setContentsMargins(18, 14, 18, 14)
        layout.setSpacing(8)
        layout.addWidget(text)
        layout.addSpacing(4)  # the choices, apart from the explanation
        demo_tip = "A small model that only knows coloured shapes, to see how search works."
        if demo_at is not None:
            demo_tip += f" Its own library, in {demo_at}."
        choices = []
        if self.multilingual is not None:
            entry = self.multilingual
            choices.append(
                (
                    "download-multilingual",
                    f"Download a model that reads {facts.base_language(language)} queries "
                    f"({entry.name}, {entry.languages_text}, about "
                    f"{entry.approx_bytes / 1e9:.1f} GB)",
                    "Searches in your language as well as in English; needs an internet "
                    "connection once; its speed here is measured when it is installed.",
                )
            )
        for key, label, tip in (
            *choices,
            (
                "download",
                "Download the recommended model (CLIP ViT-B/32, English, about 600 MB)",
                "Needs an internet connection once; checked before it is used.",
            ),
            (
                "import",
                "Import a model folder…",
                "A photofind model package, for example one made by `python -m export`.",
            ),
            (
                "demo",
                "Open the demo library again (offline, generated photos)"
                if demo_made
                else "Open the demo library (offline, generated photos)",
                demo_tip,
            ),
        ):
            button = QPushButton(label, self)
            button.setObjectName(f"{key}Button")
            button.setToolTip(tip)
            button.setAccessibleName(label)
            button.clicked.connect(lambda _=False, k=key: self._choose(k))
            layout.addWidget(button)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Later")
        buttons.rejected.connect(self.reject)
        layout.addSpacing(6)
        layout.addWidget(buttons)

    def _choose(self, key: str) -> None:
        self.choice = key
        self.accept()


def _demo_made(root: Path) -> bool:
    from photofind.demo import is_demo_library

    return is_demo_library(root)


class InstallRelay(QObject):
    """Carries download progress from the worker thread to the GUI thread."""

    progress = Signal(int, int)  # bytes done, bytes total (0: unknown)


class ModelNeededBar(QFrame):
    """Above the results while there is no model: what is missing, and one click to fix it."""

    getModel = Signal()  # noqa: N815 - Qt naming

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("modelNeededBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        self.label = QLabel(self)
        self.label.setObjectName("modelNeededText")
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.button = QPushButton("Get a model…", self)
        self.button.setObjectName("getModelButton")
        self.button.clicked.connect(self.getModel)
        layout.addWidget(self.button)
        self.say(NO_MODEL)

    def say(self, text: str, *, urgent: bool = False) -> None:
        self.label.setText(f"<b>{text}</b>" if urgent else text)


NO_MODEL = (
    "photofind has no model yet: it cannot index or search your photos until it has one "
    "(download one, import a model folder, or try the demo)."
)
MISSING = {
    "search": "Searching needs a model, and photofind has none yet. Get one first: "
    "your search is kept in the box.",
    "folder": "The folder is added. Its photos are indexed as soon as photofind has a model.",
    "similar": "Finding similar photos needs a model, and photofind has none yet.",
}


class ModelSetup(QObject):
    """The window's way to a model (see the module's docstring)."""

    failed = Signal(str)  # the sentence a failed install showed
    installed = Signal(str)  # the model's name

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        central = window.centralWidget()
        self.bar = ModelNeededBar(central)
        central.layout().insertWidget(1, self.bar)  # under the search box
        self.bar.getModel.connect(self.offer)
        self.failure: QMessageBox | None = None
        window.modelChanged.connect(lambda _name: self.update())
        self._placeholder = window.search_box.placeholderText()
        self.update()
        from photofind.demo import is_demo_library

        if is_demo_library(window.library.root):
            window.setWindowTitle(f"{window.windowTitle()} — demo library (generated photos)")

    def update(self) -> None:
        from photofind.demo import DEMO_MODEL, EXAMPLE_SEARCHES

        model = self.window.model
        # The demo model knows only shapes: its examples (measured to work, tests/test_demo.py),
        # not "beach + sunset", which it cannot find.
        if model is not None and model.info.name == DEMO_MODEL:
            one, two = EXAMPLE_SEARCHES[1], EXAMPLE_SEARCHES[3]
            self.window.search_box.setPlaceholderText(
                f"Describe a photo — “{one}”, “{two}” — or drop one here"
            )
        else:
            self.window.search_box.setPlaceholderText(self._placeholder)
        if model is not None:
            self.bar.setVisible(False)
        elif self.bar.isHidden():
            self.bar.say(NO_MODEL)
            self.bar.setVisible(True)

    def missing(self, what: str) -> None:
        """The user asked for something a model does (``what``: a key of MISSING)."""
        self.bar.say(MISSING[what], urgent=True)
        self.bar.setVisible(True)

    # -- the choices ---------------------------------------------------------------------

    def ask(self, dialog: FirstRunDialog) -> int:
        """Run the dialog (modal); tests replace it to answer without one."""
        return dialog.exec()

    def offer(self) -> None:
        """The first-run dialog: download, import, or the demo library."""
        from photofind.demo import demo_root

        root = self.window.library.root
        dialog = FirstRunDialog(self.window, library_root=root, demo_at=demo_root(root))
        try:
            if self.ask(dialog) != QDialog.DialogCode.Accepted:
                return
            choice, multilingual = dialog.choice, dialog.multilingual
        finally:
            dialog.deleteLater()
        if choice == "import":
            from PySide6.QtWidgets import QFileDialog

            folder = QFileDialog.getExistingDirectory(self.window, "Import a model folder")
            if folder:
                self.install(folder)
        elif choice == "download":
            self.install(RECOMMENDED)
        elif choice == "download-multilingual" and multilingual is not None:
            self.install(multilingual.name)
        elif choice == "demo":
            self.window.open_demo()

    # -- installing -----------------------------------------------------------------------

    def install(self, source: str) -> None:
        """Install ``source`` (a catalogue name, an https URL, a folder or an archive) off
        the GUI thread, with progress; a failure says why and offers the ways on."""
        from PySide6.QtWidgets import QProgressDialog

        from photofind import settings
        from photofind.clip import load_model
        from photofind.clip.verified import user_record
        from photofind.models.store import ModelStore

        window = self.window
        progress = QProgressDialog("Getting the model…", "Hide", 0, 0, window)
        progress.setObjectName("installProgress")
        progress.setMinimumDuration(0)
        relay = InstallRelay(self)

        def show(done: int, total: int) -> None:
            progress.setMaximum(max(total // 1024, 0))
            progress.setValue(done // 1024)
            progress.setLabelText(f"Downloading the model: {done / 1e6:.0f} MB")

        relay.progress.connect(show)
        store = ModelStore(window.library.root, provider="auto")

        def work():
            report = store.install(
                source, progress=lambda p: relay.progress.emit(p.done, p.total or 0)
            )
            store.use(report.name)
            root = window.library.root
            return load_model(
                report.name,
                library=root,
                verified=user_record(),
                precision=settings.load(root)["precision"],
            )

        def done(model, error):
            progress.close()
            progress.deleteLater()
            relay.deleteLater()
            if window._closing:
                return
            if error is not None:
                self._failed(source, error, store.root)
                return

            def in_use():  # the window searches with it now (set_model returns at once)
                self.update()
                self.installed.emit(model.info.name)

            window.set_model(model, then=in_use)

        window.tasks.run(work, done, pool=window.tasks.io_pool)

    def _failed(self, source: str, error: BaseException, folder: Path) -> None:
        from photofind.models.failures import explain

        log.warning("installing the model %s failed: %s", source, error)
        fetched = not os.path.exists(source)
        sentence = explain(error, url=_url_of(source), folder=folder)
        what = "downloaded" if fetched else "imported"
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            f"The model could not be {what}",
            sentence,
            QMessageBox.StandardButton.NoButton,
            self.window,
        )
        box.setObjectName("installFailedDialog")
        box.setTextFormat(Qt.TextFormat.PlainText)  # the sentence may name a folder or URL
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowModality(Qt.WindowModality.NonModal)  # the event loop runs on
        box.setDetailedText(str(error))
        retry = box.addButton("Retry", QMessageBox.ButtonRole.AcceptRole)
        retry.setObjectName("retryInstallButton")
        back = box.addButton("Back to the choices", QMessageBox.ButtonRole.ResetRole)
        back.setObjectName("backToChoicesButton")
        box.addButton(QMessageBox.StandardButton.Close)

        def clicked(button) -> None:
            # After the box has closed: the next step may open a modal dialog.
            if button is retry:
                QTimer.singleShot(0, lambda: self.install(source))
            elif button is back:
                QTimer.singleShot(0, self.offer)

        box.buttonClicked.connect(clicked)
        self.failure = box
        box.destroyed.connect(lambda *_: self._forget(box))
        box.show()
        self.failed.emit(sentence)

    def _forget(self, box) -> None:
        if self.failure is box:
            self.failure = None


def _url_of(source: str) -> str | None:
    """The URL a source is fetched from (a proxy is chosen by it), where there is one."""
    if source.lower().startswith(("https://", "http://")):
        return source
    if os.path.exists(source):
        return None
    from photofind.models import catalogue

    entry = catalogue.find_or_immich(source)
    if entry is not None and entry.files:
        return entry.url_of(entry.files[0])
    if entry is not None and entry.repo:
        from photofind.models import hub

        return f"{hub.endpoint()}/{entry.repo}"
    return None
