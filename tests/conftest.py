"""Shared fixtures.

The second model most tests need beside the bundled ``tiny-synthetic`` (``random_package``,
``model``) is written without torch (tests/onnx_package.py): only the tests of ``export/``
and of layouts exported from torch models build packages through ``export/`` (torch ->
ONNX, ``torch_package``), and they skip where torch is not installed: the app itself must
work without torch, and so must the rest of the test suite.

``PHOTOFIND_TESTS_WITHOUT_TORCH=1`` makes ``import torch`` fail in the test process, to
show which tests need torch: they skip (the processes tests start run photofind, which never
imports torch: the import contract in pyproject.toml).
"""

from __future__ import annotations

import os
import sys

import pytest

if os.environ.get("PHOTOFIND_TESTS_WITHOUT_TORCH") == "1":
    # None in sys.modules makes every `import torch` raise ImportError.
    for _name in ("torch", "torchvision", "open_clip", "transformers"):
        sys.modules[_name] = None  # type: ignore[assignment]


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
    """Folder of a package with random weights (``tiny-test-random-seed0``: 32-d vectors of
    32 px pictures), written without torch (tests/onnx_package.py)."""
    from onnx_package import write_random_package

    return write_random_package(tmp_path_factory.mktemp("tiny-test-package"))


@pytest.fixture(scope="session")
def torch_package(tmp_path_factory):
    """Folder of the tiny-test CLIP exported from torch with random weights (seed 0), for
    the tests that compare with other exports of that same torch model; about a second."""
    return _build_random_package(tmp_path_factory.mktemp("tiny-test-torch"), "tiny-test")


@pytest.fixture(scope="session")
def vitb32_package(tmp_path_factory):
    """Folder of a full ViT-B/32 package with random weights (seed 0): ~600 MB, ~10 s.

    Only for tests marked slow.
    """
    return _build_random_package(tmp_path_factory.mktemp("vit-b-32-package"), "ViT-B-32")


@pytest.fixture(scope="session")
def model(random_package):
    """The random-weight package (``random_package``) loaded on the CPU provider."""
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
