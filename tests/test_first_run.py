"""The way to a model: the demo is its own library and says so; a failed download says why in
words, with Retry and a way back; without a model, what is missing is said, not swallowed."""

from __future__ import annotations

import errno
import shutil
import socket
import ssl
import tarfile
import urllib.error

import pytest

pytest.importorskip("PySide6.QtWidgets")

from images import write_photo_jpeg  # noqa: E402
from local_http import LocalServer, Served  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QPushButton  # noqa: E402

from photofind import settings  # noqa: E402
from photofind.clip.package import read_manifest  # noqa: E402
from photofind.demo import demo_root, write_demo_photos  # noqa: E402
from photofind.gui import create_window  # noqa: E402
from photofind.gui.first_run import FirstRunDialog  # noqa: E402
from photofind.models.download import (  # noqa: E402
    ALLOW_HTTP_ENV,
    ChecksumMismatch,
    DownloadError,
    DownloadInterrupted,
    download,
)
from photofind.models.failures import explain  # noqa: E402
from photofind.models.store import ModelStore  # noqa: E402


def _wrapped(cause: BaseException) -> DownloadError:
    """A DownloadError as download() raises it: the low-level error as its cause."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise DownloadError("https://example.org/m.tar.gz: cannot connect") from exc
    except DownloadError as error:
        return error


def _free_port() -> int:
    """A loopback port nobody listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the sentences -------------------------------------------------------------------------


def test_each_way_a_download_fails_gets_its_own_sentence(monkeypatch, tmp_path):
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    url = "https://huggingface.co/m.tar.gz"
    dns = _wrapped(urllib.error.URLError(socket.gaierror(-2, "Name or service not known")))
    assert "huggingface.co could not be looked up (DNS)" in explain(dns, url=url)
    offline = _wrapped(urllib.error.URLError(OSError(errno.ENETUNREACH, "Network unreachable")))
    assert "no network" in explain(offline, url=url)
    full = OSError(errno.ENOSPC, "No space left on device")
    assert explain(full, folder=tmp_path).startswith(f"The disk is full ({tmp_path})")
    assert "disk is full" in explain(_wrapped(full))
    assert "did not answer in time" in explain(_wrapped(TimeoutError("timed out")))
    refused = _wrapped(urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    assert "refused the connection" in explain(refused)
    cert = _wrapped(urllib.error.URLError(ssl.SSLCertVerificationError(1, "bad cert")))
    assert "certificate" in explain(cert)
    assert "checksum differs" in explain(ChecksumMismatch("sha256 is x, expected y"))
    assert "Retry continues" in explain(DownloadInterrupted("interrupted after 10 bytes"))
    gone = urllib.error.HTTPError(url, 404, "Not Found", {}, None)
    assert "not at its download address" in explain(_wrapped(gone))
    busy = urllib.error.HTTPError(url, 503, "Service Unavailable", {}, None)
    assert "has a problem (503)" in explain(_wrapped(busy))
    # A proxy set for https, and the connection fails: the proxy is named.
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert "proxy http://proxy.example:3128" in explain(refused, url=url)
    auth = urllib.error.HTTPError(url, 407, "Proxy Authentication Required", {}, None)
    assert "asks for a password" in explain(_wrapped(auth), url=url)


def test_a_real_refused_port_and_a_real_404_read_as_such(monkeypatch, tmp_path):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    nobody = f"http://127.0.0.1:{_free_port()}/model.tar.gz"
    with pytest.raises(DownloadError) as refused:
        download(nobody, tmp_path / "a.tar.gz", timeout=5)
    assert "refused the connection" in explain(refused.value, url=nobody)
    with LocalServer() as server, pytest.raises(DownloadError) as missing:
        download(server.url("/nothing.tar.gz"), tmp_path / "b.tar.gz", timeout=5)
    assert "not at its download address (the server answered 404)" in explain(missing.value)


# -- the window ------------------------------------------------------------------------------


@pytest.fixture
def bare(qtbot, tmp_path):
    """A window on a new library with no model, as `photofind` opens after `--demo`."""
    win = create_window(tmp_path / "lib", None)
    qtbot.addWidget(win)
    yield win
    win.shutdown()
    win.close()
    win.library.close()


def test_the_first_run_dialog_says_where_the_demo_lives_and_offers_it_again(qtbot, tmp_path):
    lib = tmp_path / "lib"
    fresh = FirstRunDialog(library_root=lib, demo_at=demo_root(lib))
    qtbot.addWidget(fresh)
    demo_button = fresh.findChild(QPushButton, "demoButton")
    assert demo_button.text() == "Open the demo library (offline, generated photos)"
    assert str(demo_root(lib)) in demo_button.toolTip()

    write_demo_photos(demo_root(lib), count=2)  # as `photofind --demo` leaves it
    again = FirstRunDialog(library_root=lib, demo_at=demo_root(lib))
    qtbot.addWidget(again)
    assert (
        again.findChild(QPushButton, "demoButton").text().startswith("Open the demo library again")
    )
    text = again.text.text()
    assert f"{lib}</tt>" in text and f"{demo_root(lib)}</tt>" in text
    assert "separate library" in text
    again.findChild(QPushButton, "demoButton").click()
    assert again.choice == "demo"


def test_a_demo_window_is_titled_as_the_demo(qtbot, tmp_path, model):
    root = demo_root(tmp_path / "lib")
    write_demo_photos(root, count=2)
    win = create_window(root, model)
    qtbot.addWidget(win)
    try:
        assert "demo library" in win.windowTitle()
    finally:
        win.shutdown()
        win.library.close()


def test_without_a_model_search_and_add_folder_say_what_is_missing(qtbot, bare, tmp_path):
    bar = bare.model_setup.bar
    assert not bar.isHidden() and "no model yet" in bar.label.text()
    bare.search_box.setText("a red circle")
    bare.run_search()
    assert "Searching needs a model" in bar.label.text()
    assert bare.search_box.text() == "a red circle"  # kept for when there is one
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo_jpeg(folder / "a.jpg", width=100, height=80, seed=1)
    bare.add_folder(str(folder))
    qtbot.waitUntil(lambda: "folder is added" in bar.label.text(), timeout=10_000)
    qtbot.waitUntil(lambda: bare.folders_panel.rows() == [(str(folder), "0", "needs a model")])
    # The bar's button leads to the choices.
    asked = []
    bare.model_setup.ask = lambda dialog: asked.append(dialog.objectName()) or 0
    bar.button.click()
    assert asked == ["firstRunDialog"]


def _archive_of(package, tmp_path) -> bytes:
    target = tmp_path / "model.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(package, arcname=read_manifest(package).name)
    return target.read_bytes()


def test_a_failed_download_says_why_retries_and_leads_back_to_the_choices(
    qtbot, bare, tmp_path, monkeypatch, random_package
):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    setup = bare.model_setup
    with LocalServer() as server:
        url = server.url("/tiny.tar.gz")
        with qtbot.waitSignal(setup.failed, timeout=30_000) as failed:
            bare._install_model(url)  # nothing served there yet: 404
        assert "not at its download address" in failed.args[0]
        box = setup.failure
        assert box.objectName() == "installFailedDialog" and box.isVisible()
        assert box.windowTitle() == "The model could not be downloaded"
        assert "404" in box.detailedText()
        assert bare.model is None

        # Back to the choices: the first-run dialog again.
        asked = []
        setup.ask = lambda dialog: asked.append(dialog.findChild(QPushButton, "demoButton")) or 0
        box.findChild(QPushButton, "backToChoicesButton").click()
        qtbot.waitUntil(lambda: len(asked) == 1)

        # Retry, once the file is there: installed, searching works.
        with qtbot.waitSignal(setup.failed, timeout=30_000):
            bare._install_model(url)
        server.files["/tiny.tar.gz"] = Served(_archive_of(random_package, tmp_path))
        with qtbot.waitSignal(setup.installed, timeout=60_000):
            setup.failure.findChild(QPushButton, "retryInstallButton").click()
    assert bare.model is not None and bare.engine is not None
    assert bare.model_setup.bar.isHidden()
    assert bare.model_label.text().startswith(read_manifest(random_package).name)


def test_a_port_nobody_listens_on_is_a_refused_connection_in_the_app(qtbot, bare, monkeypatch):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with qtbot.waitSignal(bare.model_setup.failed, timeout=30_000) as failed:
        bare._install_model(f"http://127.0.0.1:{_free_port()}/model.tar.gz")
    assert "refused the connection" in failed.args[0]
    assert bare.model_setup.failure.findChild(QPushButton, "retryInstallButton") is not None


def _settings_model(qtbot, window) -> str:
    """Open Settings, read the model it shows, cancel."""
    seen = []

    def read_and_close():
        dialog = QApplication.activeModalWidget()
        seen.append(dialog.model.currentText())
        dialog.reject()

    QTimer.singleShot(0, read_and_close)
    window.open_settings()
    qtbot.waitUntil(lambda: bool(seen))
    return seen[0]


def test_settings_shows_the_model_the_status_bar_shows(qtbot, bare, tmp_path, random_package):
    assert bare.model_label.text() == "no model"
    assert _settings_model(qtbot, bare) == "No model yet (choose one)"
    # A library whose settings.json names another model, opened with --model.
    lib = tmp_path / "other"
    store = ModelStore(lib)
    store.install(random_package)
    settings.update(lib, {"model": "tiny-synthetic"})
    win = create_window(lib, read_manifest(random_package).name, provider="cpu")
    qtbot.addWidget(win)
    try:
        name = read_manifest(random_package).name
        assert win.model_label.text().startswith(name)
        assert _settings_model(qtbot, win) == name
    finally:
        win.shutdown()
        win.library.close()
    shutil.rmtree(lib)
