"""Shared fixtures.

Model packages are built for real through ``export/`` (torch -> ONNX), once per session. Where
torch is not installed the tests that need a package are skipped, not failed: the app itself
must work without torch, and so must the rest of the test suite.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _user_cache_in_a_temporary_folder(tmp_path_factory):
    """The record of verified model files (platformdirs' user cache) stays out of $HOME;
    set in the environment so subprocesses of the tests use it too."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


def _build_random_package(folder, arch: str, seed: int = 0):
    pytest.importorskip("torch", reason="building a model package needs torch (export extra)")
    from export.model import arch_config, random_init_model
    from export.onnx_export import export_package
    from export.vocab import find_clip_vocab

    config = arch_config(arch)
    return export_package(
        random_init_model(config, seed=seed),
        config,
        folder,
        name=f"{arch}-random-seed{seed}",
        vocab_path=find_clip_vocab(),
        description=f"{arch} with random weights (seed {seed}), for tests",
        source="random init",
        arch=arch,
    )


@pytest.fixture(scope="session")
def random_package(tmp_path_factory):
    """Folder of a tiny-test CLIP package with random weights (seed 0); about a second."""
    return _build_random_package(tmp_path_factory.mktemp("tiny-test-package"), "tiny-test")


@pytest.fixture(scope="session")
def vitb32_package(tmp_path_factory):
    """Folder of a full ViT-B/32 package with random weights (seed 0): ~600 MB, ~10 s.

    Only for tests marked slow.
    """
    return _build_random_package(tmp_path_factory.mktemp("vit-b-32-package"), "ViT-B-32")


@pytest.fixture(scope="session")
def model(random_package):
    """The random-weight tiny-test package loaded on the CPU provider."""
    from photofind.clip import load_model

    return load_model(random_package, provider="cpu")


@pytest.fixture
def window(qtbot, tmp_path, model):
    """A main window on an empty library in ``tmp_path / "lib"``, not shown; afterwards no
    worker thread of it may be left running."""
    import threading

    from gui_support import FAST

    from photofind.gui import create_window

    threads_before = threading.active_count()
    win = create_window(tmp_path / "lib", model, watch_options=FAST)
    win.relevance_cutoff = False  # random weights: no score means anything
    qtbot.addWidget(win)
    yield win
    win.shutdown()
    win.close()
    qtbot.waitUntil(lambda: threading.active_count() <= threads_before + 1, timeout=10_000)
