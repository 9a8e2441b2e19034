"""First run without a model: get one (download or import) or open the demo library."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

RECOMMENDED = "ViT-B-32"  # the model store's catalogue name of OpenAI's ViT-B/32


class FirstRunDialog(QDialog):
    """Three ways forward; ``choice`` is "download", "import", "demo" or None."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("firstRunDialog")
        self.setWindowTitle("Welcome to photofind")
        self.choice: str | None = None
        layout = QVBoxLayout(self)
        text = QLabel(
            "<h3>photofind needs a model to understand photos</h3>"
            "<p>The model runs on this computer; your photos never leave it.</p>",
            self,
        )
        text.setWordWrap(True)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.setSpacing(8)
        layout.addWidget(text)
        layout.addSpacing(4)  # the choices, apart from the explanation
        for key, label, tip in (
            (
                "download",
                "Download the recommended model (CLIP ViT-B/32, about 600 MB)",
                "Needs an internet connection once; checked before it is used.",
            ),
            (
                "import",
                "Import a model folder…",
                "A photofind model package, for example one made by `python -m export`.",
            ),
            (
                "demo",
                "Open the demo library (offline, generated photos)",
                "A small model that only knows coloured shapes, to see how search works.",
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


class InstallRelay(QObject):
    """Carries download progress from the worker thread to the GUI thread."""

    progress = Signal(int, int)  # bytes done, bytes total (0: unknown)
