"""The app's settings and their dialog.

Stored in the library's ``settings.json`` (:func:`photofind.models.store.read_settings`),
beside the active model that ``photofind models use`` writes: one file per library, so a
demo library and a real one keep their own choices, and the CLI sees the same model. The
app's own keys live under ``"gui"``; unknown keys are kept untouched.

Applied without restart: thumbnail size, relevance cut-off, reconcile interval (from the
watcher's next round), and model and provider (the model is reloaded off the GUI thread; a
different model re-indexes the library, as it must).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QSpinBox,
    QVBoxLayout,
)

from photofind.models.store import read_settings, write_settings

PROVIDERS = (("Automatic (GPU when it works)", "auto"), ("CPU", "cpu"), ("CUDA (GPU)", "cuda"))


@dataclass
class GuiSettings:
    model: str | None = None  # the library's active model (shared with the CLI)
    provider: str = "auto"
    thumbnail_size: int = 160
    reconcile_minutes: int = 10
    relevance_cutoff: bool = True

    @classmethod
    def load(cls, library: Path) -> GuiSettings:
        data = read_settings(library)
        gui = data.get("gui") if isinstance(data.get("gui"), dict) else {}
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in gui.items() if k in known and k != "model"}
        model = data.get("model")
        try:
            out = cls(model=model if isinstance(model, str) and model else None, **values)
        except TypeError:
            out = cls(model=model if isinstance(model, str) else None)
        out.thumbnail_size = int(max(64, min(320, out.thumbnail_size)))
        out.reconcile_minutes = int(max(1, min(24 * 60, out.reconcile_minutes)))
        if out.provider not in {p for _, p in PROVIDERS}:
            out.provider = "auto"
        return out

    def save(self, library: Path) -> None:
        data = read_settings(library)
        gui = asdict(self)
        model = gui.pop("model")
        if model:
            data["model"] = model
        data["gui"] = {**(data.get("gui") if isinstance(data.get("gui"), dict) else {}), **gui}
        write_settings(library, data)


class SettingsDialog(QDialog):
    """Edits a copy of the settings; ``value()`` gives the result after ``accept``."""

    def __init__(self, settings: GuiSettings, models: list[str], parent=None):
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        layout = QVBoxLayout(self)
        form = QFormLayout()

        self.model = QComboBox(self)
        self.model.setObjectName("modelSetting")
        self.model.setAccessibleName("Model")
        if settings.model is None:
            # As the status bar says: no model. Not the first of the list, which OK would load.
            self.model.addItem("No model yet (choose one)", None)
        for name in models:
            self.model.addItem(name, name)
        if settings.model and self.model.findData(settings.model) < 0:
            self.model.addItem(settings.model, settings.model)
        self.model.setCurrentIndex(max(0, self.model.findData(settings.model)))
        form.addRow("Model", self.model)

        self.provider = QComboBox(self)
        self.provider.setObjectName("providerSetting")
        self.provider.setAccessibleName("Run the model on")
        for label, key in PROVIDERS:
            self.provider.addItem(label, key)
        self.provider.setCurrentIndex(self.provider.findData(settings.provider))
        form.addRow("Run on", self.provider)

        self.thumbnail = QSpinBox(self)
        self.thumbnail.setObjectName("thumbnailSetting")
        self.thumbnail.setAccessibleName("Thumbnail size in pixels")
        self.thumbnail.setRange(64, 320)
        self.thumbnail.setSingleStep(8)
        self.thumbnail.setSuffix(" px")
        self.thumbnail.setValue(settings.thumbnail_size)
        form.addRow("Thumbnail size", self.thumbnail)

        self.reconcile = QSpinBox(self)
        self.reconcile.setObjectName("reconcileSetting")
        self.reconcile.setAccessibleName("Full re-check of every folder, in minutes")
        self.reconcile.setRange(1, 24 * 60)
        self.reconcile.setSuffix(" min")
        self.reconcile.setValue(settings.reconcile_minutes)
        self.reconcile.setToolTip(
            "Changes are seen as they happen; this full re-check catches what a watch missed."
        )
        form.addRow("Re-check folders every", self.reconcile)

        self.cutoff = QCheckBox("Hide results that do not stand out", self)
        self.cutoff.setObjectName("cutoffSetting")
        self.cutoff.setAccessibleName("Relevance cut-off")
        self.cutoff.setChecked(settings.relevance_cutoff)
        form.addRow("Relevance cut-off", self.cutoff)

        layout.addLayout(form)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def value(self) -> GuiSettings:
        return GuiSettings(
            model=self.model.currentData() or None,
            provider=self.provider.currentData(),
            thumbnail_size=self.thumbnail.value(),
            reconcile_minutes=self.reconcile.value(),
            relevance_cutoff=self.cutoff.isChecked(),
        )
