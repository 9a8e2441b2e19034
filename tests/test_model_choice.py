"""Choosing a model for a language: facts shown (languages, size, speed measured here), a
multilingual model offered first when the desktop's language is not English."""

from __future__ import annotations

import shutil

import pytest

from photofind.models import facts
from photofind.models.store import ModelStore
from photofind.paths import bundled_models_dir

pytest.importorskip("PySide6.QtWidgets")


@pytest.mark.parametrize(
    "language, expected",
    [
        (None, "ViT-B-32__openai"),
        ("en_GB.UTF-8", "ViT-B-32__openai"),
        ("vi_VN.UTF-8", "nllb-clip-base-siglip__v1"),
        ("pt-BR", "nllb-clip-base-siglip__v1"),
    ],
)
def test_the_model_offered_first_speaks_the_language(language, expected):
    entry = facts.recommended(language)
    assert entry.name == expected and entry.speaks(language)


def test_an_install_measures_the_speed_here(tmp_path):
    store = ModelStore(tmp_path / "lib")
    source = tmp_path / "tiny-copy"
    shutil.copytree(bundled_models_dir() / "tiny-synthetic", source)
    report = store.install(source, name="tiny-copy")
    assert report.speed is not None and report.speed.images_per_s > 0
    found = facts.installed_facts(store)["tiny-copy"]
    assert found.speed == report.speed and found.size_bytes > 1_000_000
    assert found.languages == "languages unknown"  # not a catalogue model
    assert "photos/s" in found.text() and "MB" in found.text()
    # A package never probed here has no speed: none is made up.
    assert facts.speed_of("never-installed", report.spec) is None
    assert "speed not measured yet" in facts.ModelFacts("en", None, None).text()


def test_the_first_run_dialog_offers_a_model_for_the_language(qtbot):
    from PySide6.QtWidgets import QPushButton

    from photofind.gui.first_run import FirstRunDialog

    vietnamese = FirstRunDialog(language="vi_VN.UTF-8")
    qtbot.addWidget(vietnamese)
    button = vietnamese.findChild(QPushButton, "download-multilingualButton")
    assert button is not None and "vi queries" in button.text()
    assert "nllb-clip-base-siglip__v1" in button.text() and "~201" in button.text()
    button.click()
    assert vietnamese.choice == "download-multilingual"
    assert vietnamese.multilingual.name == "nllb-clip-base-siglip__v1"

    english = FirstRunDialog(language="en_US.UTF-8")
    qtbot.addWidget(english)
    assert english.findChild(QPushButton, "download-multilingualButton") is None
    assert "English" in english.findChild(QPushButton, "downloadButton").text()


def test_settings_show_each_models_facts(qtbot):
    from PySide6.QtCore import Qt

    from photofind.gui.settings import GuiSettings, SettingsDialog

    about = "multilingual (~201) · 2.0 GB · 31 photos/s, query 12 ms here"
    dialog = SettingsDialog(
        GuiSettings(model="nllb"), ["tiny-synthetic", "nllb"], details={"nllb": about}
    )
    qtbot.addWidget(dialog)
    index = dialog.model.findData("nllb")
    assert dialog.model.itemData(index, Qt.ItemDataRole.ToolTipRole) == about
    assert dialog.model_facts.text() == about
    dialog.model.setCurrentIndex(dialog.model.findData("tiny-synthetic"))
    assert dialog.model_facts.text() == ""  # nothing known, nothing said
    dialog.model.setCurrentIndex(index)
    assert dialog.value().model == "nllb" and dialog.model_facts.text() == about
