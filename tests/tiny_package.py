"""A writable copy of the bundled tiny CLIP, for tests that add variants to a package."""

from __future__ import annotations

import shutil

import pytest

from photofind.paths import bundled_models_dir


def tiny_copy(folder):
    """``resources/models/tiny-synthetic`` copied to ``folder`` (skips where it is not)."""
    source = bundled_models_dir() / "tiny-synthetic"
    if not (source / "model.json").is_file():
        pytest.skip("resources/models/tiny-synthetic is not there")
    shutil.copytree(source, folder)
    return folder
