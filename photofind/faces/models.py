"""Where dlib's face models are, checked before dlib reads them.

The weights come from the ``face-recognition-models`` package (MIT; Davis King's dlib models,
packaged by Adam Geitgey). Its ``__init__`` imports ``pkg_resources``, which recent setuptools
no longer ships, so the folder is found from the import spec without running that module.
Only three of its four files are used: the 5-point landmark model, the ResNet embedder and
(optionally) the CNN detector; the 100 MB 68-point model is not needed and stays out of the
bundle. The HOG detector is built into dlib itself and needs no file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from photofind.errors import ModelError
from photofind.paths import resources_dir

PACKAGE = "face_recognition_models"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"

# What the catalog will record as the face analyser's model: a different embedder means
# embeddings that cannot be compared with these, so a re-run, never a mix.
MODEL_ID = "dlib-resnet-v1"
EMBED_DIM = 128


#: Where the desktop bundle carries the three files (resources/installer/bundle_plan.py).
BUNDLED_FOLDER = "face-models"


def models_folder() -> Path:
    """The ``models/`` folder of the installed face-recognition-models package, or the
    bundle's copy of the files photofind uses."""
    if getattr(sys, "frozen", False):
        return resources_dir() / BUNDLED_FOLDER
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the face models are not installed: no Python package {PACKAGE!r} "
            "(pip install face-recognition-models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_file(name: str, folder: Path | None = None) -> Path:
    """The path of one model file; a :class:`ModelError` naming it if it is missing or empty."""
    path = (folder if folder is not None else models_folder()) / name
    if not path.is_file():
        raise ModelError(f"{path}: face model file missing")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: face model file is empty")
    return path
