"""The Settings dialog: a view over the library's settings (:mod:`photofind.settings`).

The settings module owns the file, the types, defaults and bounds; this shows the options a
user changes here with those bounds, and stores only the ones changed, so a choice made
meanwhile elsewhere (``photofind models use`` in a terminal) is not overwritten with the
value this window read at start.

Applied without restart: thumbnail size, relevance cut-off, reconcile interval (from the
watcher's next round), face recognition (off deletes every face record), and model, provider
and precision (the model is reloaded off the GUI thread; a different model, or precision,
re-indexes the library, as it must).

The installed models are listed from their ``model.json`` files, which may be many, large or
on a slow disk: the window reads them on a pool thread (:func:`installed_choices`) and the
dialog, open meanwhile with only the current model, shows the list when it comes
(:meth:`SettingsDialog.show_models`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
)

from photofind import settings
from photofind.settings import OPTIONS

_LABELS = {"auto": "Automatic (GPU when it works)", "cpu": "CPU", "cuda": "CUDA (GPU)"}
PROVIDERS = tuple((_LABELS[key], key) for key in OPTIONS["gui.provider"].choices)
_PRECISION_LABELS = {
    "fast": "Fast (int8 encoders on a CPU, fp16 on a GPU, where checked against exact)",
    "exact": "Exact (fp32 encoders)",
}
PRECISIONS = tuple((_PRECISION_LABELS[key], key) for key in OPTIONS["precision"].choices)

#: The dialog's fields and the settings they show.
KEYS = {
    "model": "model",
    "provider": "gui.provider",
    "precision": "precision",
    "thumbnail_size": "gui.thumbnail_size",
    "reconcile_minutes": "gui.reconcile_minutes",
    "relevance_cutoff": "gui.relevance_cutoff",
    "faces_enabled": "faces.enabled",
}


@dataclass
class GuiSettings:
    """What the window uses of the settings; the defaults are the settings module's."""

    model: str | None = OPTIONS["model"].default  # the library's model (shared with the CLI)
    provider: str = OPTIONS["gui.provider"].default
    precision: str = OPTIONS["precision"].default  # shared with the CLI
    thumbnail_size: int = OPTIONS["gui.thumbnail_size"].default
    reconcile_minutes: int = OPTIONS["gui.reconcile_minutes"].default
    relevance_cutoff: bool = OPTIONS["gui.relevance_cutoff"].default
    faces_enabled: bool = OPTIONS["faces.enabled"].default

    @classmethod
    def load(cls, library: Path) -> GuiSettings:
        stored = settings.load(library)
        return cls(**{name: stored[key] for name, key in KEYS.items()})

    def changes(self, since: GuiSettings | None = None) -> dict:
        """The settings to store: those that differ from ``since`` (all without it). No
        model is stored as none: the library keeps its choice until another is made."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if since is not None and value == getattr(since, f.name):
                continue
            if f.name == "model" and not value:
                continue
            out[KEYS[f.name]] = value
        return out

    def save(self, library: Path, since: GuiSettings | None = None) -> None:
        """Store the values that differ from ``since`` (all without it)."""
        changes = self.changes(since)
        if changes:
            settings.update(library, changes)


def _bounded(box: QSpinBox, key: str) -> None:
    box.setRange(OPTIONS[key].low, OPTIONS[key].high)


def installed_choices(library: Path) -> tuple[list[str], dict[str, str]]:
    """The usable models of ``library`` and each one's facts (languages, size, speed), read
    from their packages' manifests: run it on a pool thread, never the GUI's."""
    from photofind.models.facts import installed_facts
    from photofind.models.store import ModelStore

    store = ModelStore(library)
    names = [m.name for m in store.list() if m.problem is None]
    details = {name: f.text() for name, f in installed_facts(store).items()}
    return names, details


class SettingsDialog(QDialog):
    """Edits a copy of the settings; ``value()`` gives the result after ``accept``.

    ``models`` None: the list is being read (:func:`installed_choices`); the model box shows
    the current model alone, disabled, until :meth:`show_models` fills it."""

    modelsShown = Signal()  # noqa: N815 - the model list is filled in

    def __init__(
        self,
        settings: GuiSettings,
        models: list[str] | None,
        parent=None,
        details: dict[str, str] | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self._current = settings.model
        self._details: dict[str, str] = {}
        layout = QVBoxLayout(self)
        form = QFormLayout()

        self.model = QComboBox(self)
        self.model.setObjectName("modelSetting")
        self.model.setAccessibleName("Model")
        form.addRow("Model", self.model)
        # The chosen model's languages, size and speed here, under its name.
        self.model_facts = QLabel(self)
        self.model_facts.setObjectName("modelFacts")
        self.model_facts.setWordWrap(True)
        self.model_facts.setTextFormat(Qt.TextFormat.PlainText)
        form.addRow("", self.model_facts)
        self.model.currentIndexChanged.connect(self._show_facts)
        if models is None:
            self._fill([])
            self.model.setEnabled(False)
            self.model_facts.setText("Reading the installed models…")
        else:
            self.show_models(models, details or {})

        self.provider = QComboBox(self)
        self.provider.setObjectName("providerSetting")
        self.provider.setAccessibleName("Run the model on")
        for label, key in PROVIDERS:
            self.provider.addItem(label, key)
        self.provider.setCurrentIndex(self.provider.findData(settings.provider))
        form.addRow("Run on", self.provider)

        self.precision = QComboBox(self)
        self.precision.setObjectName("precisionSetting")
        self.precision.setAccessibleName("Precision of the model")
        for label, key in PRECISIONS:
            self.precision.addItem(label, key)
        self.precision.setCurrentIndex(self.precision.findData(settings.precision))
        self.precision.setToolTip(
            "Fast runs a model's int8 encoders on a CPU (about twice as fast) and its fp16 "
            "encoders on a GPU, where photofind checked them against the exact ones; changing "
            "it re-indexes the library."
        )
        form.addRow("Precision", self.precision)

        self.thumbnail = QSpinBox(self)
        self.thumbnail.setObjectName("thumbnailSetting")
        self.thumbnail.setAccessibleName("Thumbnail size in pixels")
        _bounded(self.thumbnail, "gui.thumbnail_size")
        self.thumbnail.setSingleStep(8)
        self.thumbnail.setSuffix(" px")
        self.thumbnail.setValue(settings.thumbnail_size)
        form.addRow("Thumbnail size", self.thumbnail)

        self.reconcile = QSpinBox(self)
        self.reconcile.setObjectName("reconcileSetting")
        self.reconcile.setAccessibleName("Full re-check of every folder, in minutes")
        _bounded(self.reconcile, "gui.reconcile_minutes")
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

        self.faces = QCheckBox("Find and recognise faces", self)
        self.faces.setObjectName("facesSetting")
        self.faces.setAccessibleName("Face recognition")
        self.faces.setChecked(settings.faces_enabled)
        self.faces.setToolTip(
            "Faces are found and grouped on this computer only. Off deletes every face, "
            "person, face embedding and face thumbnail of the library."
        )
        form.addRow("People", self.faces)

        layout.addLayout(form)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def show_models(self, models: list[str], details: dict[str, str]) -> None:
        """Offer ``models`` (``details``: each one's facts), the current one chosen."""
        self._details = details
        self._fill(models)
        self.model.setEnabled(True)
        self._show_facts()
        self.modelsShown.emit()

    def show_models_failed(self, reason: str) -> None:
        """The list could not be read: the current model stays the only choice."""
        self.model.setEnabled(True)
        self.model_facts.setText(f"The installed models could not be read: {reason}")
        self.modelsShown.emit()

    def _fill(self, models: list[str]) -> None:
        self.model.blockSignals(True)
        self.model.clear()
        current = self._current
        if current is None:
            # As the status bar says: no model. Not the first of the list, which OK would load.
            self.model.addItem("No model yet (choose one)", None)
        for name in models:
            # Languages, size and speed here (photofind.models.facts), as a choice needs.
            about = self._details.get(name)
            self.model.addItem(name, name)
            if about:
                self.model.setItemData(self.model.count() - 1, about, Qt.ItemDataRole.ToolTipRole)
        if current and self.model.findData(current) < 0:
            self.model.addItem(current, current)
        self.model.setCurrentIndex(max(0, self.model.findData(current)))
        self.model.blockSignals(False)

    def _show_facts(self) -> None:
        self.model_facts.setText(self._details.get(self.model.currentData() or "", ""))

    def value(self) -> GuiSettings:
        return GuiSettings(
            model=self.model.currentData() or None,
            provider=self.provider.currentData(),
            precision=self.precision.currentData(),
            thumbnail_size=self.thumbnail.value(),
            reconcile_minutes=self.reconcile.value(),
            relevance_cutoff=self.cutoff.isChecked(),
            faces_enabled=self.faces.isChecked(),
        )
