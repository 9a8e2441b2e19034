"""A GPU image encoder for photofind's pipeline where ONNX Runtime has no CUDA provider.

The lent GPU machine's image has torch with CUDA but a CPU-only onnxruntime (the
onnxruntime-gpu wheel is too large to carry there). photofind's indexing pipeline with an
encoder on a GPU (batches of the plan's size, a decode thread per core, never held, the
writer) can still be measured: :class:`TorchStandIn` is the loaded ClipModel with its image
encoder swapped for the same architecture and weights in torch fp16 on the GPU. It is not
photofind's path (which never runs torch): gpu_run.py labels its figure so. What it
shows is the pipeline's own bound once the encoder is that fast: decoding.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np


class TorchStandIn:
    """``model`` (a ClipModel) with ``encode_pixels`` run by ``torch_model`` on ``device``
    (in fp16 on "cuda"; "cpu" runs float32, to try the stand-in on a machine without a GPU)."""

    def __init__(self, model, torch_model, device: str = "cuda"):
        self._model = model
        self._torch = torch_model
        self._device = device

    def __getattr__(self, name):
        return getattr(self._model, name)

    @property
    def info(self):
        return replace(self._model.info, provider="cuda", provider_reason="torch fp16 stand-in")

    @property
    def cpu_threads_busy(self) -> int:
        return 0

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        with torch.inference_mode():
            x = x.to(self._device)
            x = x.half() if self._device == "cuda" else x
            y = self._torch.encode_image(x).float().cpu().numpy()
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


def stand_in(model, arch: str = "ViT-B-32"):
    """The stand-in for ``model``, whose package is ``arch`` with random weights of seed 0
    (gpu_run.py's package), or None with the reason where torch sees no GPU."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "torch sees no GPU"
    from export.model import ARCHS, random_init_model

    torch_model = random_init_model(ARCHS[arch], seed=0).eval().half().cuda()
    return TorchStandIn(model, torch_model), None
