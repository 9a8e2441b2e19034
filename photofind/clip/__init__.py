"""The CLIP model runtime: ONNX Runtime, numpy and Pillow; never torch, never Qt."""
