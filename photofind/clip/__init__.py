"""The CLIP model runtime: ONNX Runtime, numpy and Pillow; never torch, never Qt."""

from photofind.clip.model import ClipModel, ModelInfo, available_models, load_model, resolve_model

__all__ = ["ClipModel", "ModelInfo", "available_models", "load_model", "resolve_model"]
