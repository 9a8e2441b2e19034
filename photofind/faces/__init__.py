"""The face runtime: dlib's detector, landmarks and embedder; never Qt, never storage."""

from photofind.faces.detector import MIN_FACE, Face, FaceModel, as_rgb
from photofind.faces.models import EMBED_DIM, MODEL_ID, model_file, models_folder

__all__ = [
    "EMBED_DIM",
    "MIN_FACE",
    "MODEL_ID",
    "Face",
    "FaceModel",
    "as_rgb",
    "model_file",
    "models_folder",
]
