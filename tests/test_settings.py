"""The library's settings: one schema with a version, migrations, one API for GUI and CLI.

``tests/data/settings-v0.json`` is a version 0 file written by the code before the settings
module (commit d95886c): ``ModelStore.use("tiny-synthetic")``, ``GuiSettings.save`` with
provider cpu, thumbnails 96, re-check every 25 minutes, no cut-off, and ``save_placement`` of
a 900×700 window at (40, 60).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from photofind import settings
from photofind.settings import MAX_BYTES, OPTIONS, VERSION

V0_FILE = Path(__file__).parent / "data" / "settings-v0.json"
V0_VALUES = {
    "model": "tiny-synthetic",
    "gui.provider": "cpu",
    "gui.thumbnail_size": 96,
    "gui.reconcile_minutes": 25,
    "gui.relevance_cutoff": False,
    "gui.window": {"x": 40, "y": 60, "width": 900, "height": 700, "maximized": False},
}
DEFAULTS = {key: option.default for key, option in OPTIONS.items()}
#: options added since version 0 without a migration (an optional key with a default needs
#: no schema step): a v0 file reads them as their defaults
SINCE_V0 = {"faces.enabled", "faces.min_faces", "precision"}
V0_READ = {**V0_VALUES, **{key: DEFAULTS[key] for key in SINCE_V0}}  # what a v0 file reads as


def _stored(lib: Path) -> dict:
    return json.loads((lib / "settings.json").read_text())


def _write(lib: Path, data) -> None:
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "settings.json").write_text(json.dumps(data))


# -- versions and migrations ---------------------------------------------------------------


def test_a_version_0_file_from_the_previous_code_is_migrated_in_place_keeping_every_value(
    tmp_path,
):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(V0_FILE, lib / "settings.json")
    before = json.loads(V0_FILE.read_text())
    # every option covered
    assert "version" not in before and set(V0_VALUES) == set(OPTIONS) - SINCE_V0

    loaded = settings.load(lib)

    assert dict(loaded) == V0_READ and loaded.version == VERSION
    assert _stored(lib) == {**before, "version": VERSION}
    # Replaced in one step: no temporary file is left beside it.
    assert sorted(p.name for p in lib.iterdir()) == ["settings.json", "settings.json.lock"]
    assert settings.load(lib) == loaded  # and a second load changes nothing


def test_the_migration_steps_run_in_order_from_the_files_version():
    ran = []
    steps = (lambda d: ran.append(0), lambda d: ran.append(1), lambda d: ran.append(2))
    data = {"version": 1, "keep": "me"}
    assert settings.migrate(data, steps) is True
    assert ran == [1, 2] and data == {"version": 3, "keep": "me"}
    assert settings.migrate(data, steps) is False and ran == [1, 2]


def test_a_version_that_is_not_a_number_reads_as_0_with_a_warning(tmp_path, caplog):
    _write(tmp_path, {"version": "two", "gui": {"thumbnail_size": 100}})
    assert settings.load(tmp_path)["gui.thumbnail_size"] == 100
    assert "version 'two' is not a schema version" in caplog.text
    assert _stored(tmp_path)["version"] == VERSION


def test_where_settings_cannot_be_written_they_are_read_migrated_and_left_as_they_are(
    tmp_path, caplog
):
    # A folder where the lock file goes fails every write the way read-only media do, and
    # does so for root too (who ignores permissions).
    lib = tmp_path / "lib"
    (lib / "settings.json.lock").mkdir(parents=True)
    shutil.copy(V0_FILE, lib / "settings.json")
    assert dict(settings.load(lib)) == V0_READ
    assert "version" not in _stored(lib)

    (lib / "settings.json").write_text("{broken")
    assert dict(settings.load(lib)) == DEFAULTS
    assert (lib / "settings.json").read_text() == "{broken"  # nowhere to set it aside
    assert "is not JSON" in caplog.text and "default settings are used" in caplog.text


# -- what this version does not know is kept ------------------------------------------------


def test_unknown_keys_and_a_newer_version_are_kept(tmp_path):
    newer = {
        "version": VERSION + 5,
        "model": "m",
        "gui": {"thumbnail_size": 100, "columns": [1, 2]},
        "saved_searches": [{"q": "a red circle"}],
    }
    _write(tmp_path, newer)
    loaded = settings.load(tmp_path)
    assert loaded["model"] == "m" and loaded["gui.thumbnail_size"] == 100
    assert _stored(tmp_path) == newer  # not migrated down

    settings.update(tmp_path, {"gui.thumbnail_size": 120, "model": None})
    expected = {**newer, "gui": {"thumbnail_size": 120, "columns": [1, 2]}}
    del expected["model"]
    assert _stored(tmp_path) == expected


@pytest.mark.parametrize(
    ("key", "stored", "used", "said"),
    [
        ("gui.thumbnail_size", "big", 160, "should be a whole number"),
        ("gui.thumbnail_size", True, 160, "should be a whole number"),
        ("gui.thumbnail_size", 400, 320, "400 is above 320; 320 is used"),
        ("gui.reconcile_minutes", 0, 1, "0 is below 1; 1 is used"),
        ("gui.provider", "tpu", "auto", "should be one of 'auto', 'cpu', 'cuda'"),
        ("gui.relevance_cutoff", "no", True, "should be true or false"),
        ("gui.window", {"x": "left"}, None, "should hold whole numbers"),
        ("gui.window", {"x": 0, "y": 0, "width": 20, "height": 20}, None, "smaller than"),
        ("model", "", None, "is not a model name"),
        ("model", 5, None, "should be text"),
    ],
)
def test_a_bad_value_gives_the_default_and_a_warning_naming_the_key(
    tmp_path, caplog, key, stored, used, said
):
    section, _, name = key.rpartition(".")
    data = {"version": VERSION, "gui": {"provider": "cpu"}}
    (data[section] if section else data)[name] = stored
    _write(tmp_path, data)

    loaded = settings.load(tmp_path)

    assert dict(loaded) == {**DEFAULTS, "gui.provider": "cpu", key: used}
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"settings.json: {key} " in line and said in line
    assert _stored(tmp_path) == data  # left for a newer app, which may accept it


def test_a_section_that_is_not_an_object_gives_defaults_and_is_replaced_on_write(tmp_path, caplog):
    _write(tmp_path, {"version": VERSION, "model": "m", "gui": 5})
    loaded = settings.load(tmp_path)
    assert dict(loaded) == {**DEFAULTS, "model": "m"}
    assert "gui should be an object" in caplog.text
    settings.update(tmp_path, {"gui.provider": "cpu"})
    assert _stored(tmp_path) == {"version": VERSION, "model": "m", "gui": {"provider": "cpu"}}


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"{broken", "is not JSON"),
        (b'{"model": "\xff"}', "is not JSON"),
        (b"[1, 2]", "should hold a JSON object"),
        (b"null", "should hold a JSON object"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"model": "' + b"x" * MAX_BYTES + b'"}', f"larger than {MAX_BYTES:,} bytes"),
    ],
    ids=["broken", "not-utf8", "a-list", "null", "deep", "huge"],
)
def test_a_file_that_is_not_settings_is_kept_aside_and_the_defaults_used(
    tmp_path, caplog, content, said
):
    (tmp_path / "settings.json.bad-1").write_bytes(b"an earlier one")
    (tmp_path / "settings.json").write_bytes(content)

    assert dict(settings.load(tmp_path)) == DEFAULTS

    kept = tmp_path / "settings.json.bad-2"
    assert kept.read_bytes() == content and not (tmp_path / "settings.json").exists()
    assert (tmp_path / "settings.json.bad-1").read_bytes() == b"an earlier one"
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said in line and str(kept) in line and "default settings are used" in line
    # The next write starts a fresh file.
    settings.update(tmp_path, {"gui.provider": "cpu"})
    assert _stored(tmp_path) == {"version": VERSION, "gui": {"provider": "cpu"}}


def test_an_update_refuses_a_value_its_option_refuses(tmp_path):
    with pytest.raises(ValueError, match="gui.thumbnail_size: 5000 is above 320"):
        settings.update(tmp_path, {"gui.thumbnail_size": 5000})
    with pytest.raises(ValueError, match="gui.relevance_cutoff: .yes. should be true or false"):
        settings.update(tmp_path, {"gui.relevance_cutoff": "yes"})
    with pytest.raises(KeyError):
        settings.update(tmp_path, {"gui.colour": "red"})
    assert not (tmp_path / "settings.json").exists()


# -- two writers ------------------------------------------------------------------------------


def test_an_update_waits_for_the_lock_and_keeps_what_was_written_meanwhile(tmp_path):
    settings.update(tmp_path, {"gui.provider": "cpu"})
    started, done = threading.Event(), threading.Event()

    def writer():
        started.set()
        settings.update(tmp_path, {"gui.thumbnail_size": 200})
        done.set()

    with settings.locked(tmp_path):
        thread = threading.Thread(target=writer)
        thread.start()
        assert started.wait(10)
        # Blocked on the lock: it has not read the file yet, so what is written now counts.
        assert not done.wait(0.5)
        data = _stored(tmp_path)
        data["model"] = "chosen-meanwhile"
        (tmp_path / "settings.json").write_text(json.dumps(data))
    thread.join(30)
    assert done.is_set()
    assert _stored(tmp_path) == {
        "version": VERSION,
        "model": "chosen-meanwhile",
        "gui": {"provider": "cpu", "thumbnail_size": 200},
    }


_WRITER = """
import sys
from pathlib import Path
from photofind import settings

lib, mine, start, rounds = Path(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:])
print("ready", flush=True)
sys.stdin.readline()
for value in range(start, start + rounds):
    settings.update(lib, {mine: value})
    # Only this process writes its key: reading anything older means the other writer put
    # back a copy of the file it read before this update (a lost update).
    back = settings.load(lib)[mine]
    assert back == value, f"{mine} went back from {value} to {back}"
"""


def test_two_processes_writing_at_once_lose_no_key(tmp_path):
    rounds = 60
    settings.update(tmp_path, {"gui.thumbnail_size": 64, "gui.reconcile_minutes": 1})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), mine, str(start), str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for mine, start in (("gui.thumbnail_size", 65), ("gui.reconcile_minutes", 2))
    ]
    try:
        for w in writers:
            assert w.stdout.readline() == "ready\n", w.stderr.read()
        for w in writers:  # both start together
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in writers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    loaded = settings.load(tmp_path)
    assert loaded["gui.thumbnail_size"] == 65 + rounds - 1
    assert loaded["gui.reconcile_minutes"] == 2 + rounds - 1


# -- the app and the CLI share the file -----------------------------------------------------


def test_the_dialog_and_models_use_read_and_write_the_same_settings(qtbot, tmp_path):
    pytest.importorskip("PySide6.QtWidgets")
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDialogButtonBox

    from photofind.cli import main
    from photofind.cli.gui import saved_provider
    from photofind.gui.settings import GuiSettings, SettingsDialog
    from photofind.paths import bundled_models_dir, models_dir

    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(V0_FILE, lib / "settings.json")  # a library of the previous version
    # A second model to choose: the bundled one under another name.
    shutil.copytree(bundled_models_dir() / "tiny-synthetic", models_dir(lib) / "tiny-copy")
    before = GuiSettings.load(lib)
    dialog = SettingsDialog(before, ["tiny-synthetic", "other"])
    qtbot.addWidget(dialog)
    # The bounds are the options'.
    assert (dialog.thumbnail.minimum(), dialog.thumbnail.maximum()) == (64, 320)
    assert (dialog.reconcile.minimum(), dialog.reconcile.maximum()) == (1, 24 * 60)
    assert dialog.thumbnail.value() == 96 and dialog.model.currentData() == "tiny-synthetic"

    # While the dialog is open, the CLI chooses another model.
    assert main(["--library", str(lib), "models", "use", "tiny-copy"]) == 0
    dialog.thumbnail.setValue(200)
    dialog.provider.setCurrentIndex(dialog.provider.findData("auto"))
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.result() == SettingsDialog.DialogCode.Accepted
    dialog.value().save(lib, since=before)  # as MainWindow.apply_settings stores it

    assert _stored(lib)["model"] == "tiny-copy"  # not the dialog's old view
    assert _stored(lib)["gui"] == {
        "provider": "auto",
        "reconcile_minutes": 25,
        "relevance_cutoff": False,
        "thumbnail_size": 200,
        "window": {"height": 700, "maximized": False, "width": 900, "x": 40, "y": 60},
    }
    again = SettingsDialog(GuiSettings.load(lib), ["tiny-synthetic", "tiny-copy"])
    qtbot.addWidget(again)
    assert again.thumbnail.value() == 200 and not again.cutoff.isChecked()
    assert again.model.currentData() == "tiny-copy"
    assert saved_provider(lib) == "auto"  # what `photofind gui` runs the model on

    # And the dialog's choice of model is the CLI's.
    again.model.setCurrentIndex(again.model.findData("tiny-synthetic"))
    again.value().save(lib, since=GuiSettings.load(lib))
    from photofind.models.store import ModelStore

    assert [m.name for m in ModelStore(lib).list() if m.active] == ["tiny-synthetic"]
