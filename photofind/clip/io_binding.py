"""Running an encoder through ONNX Runtime's I/O binding: the path for a GPU.

A plain ``session.run`` on the CUDA provider hands ONNX Runtime host arrays and gets host
arrays back, and leaves it to place each copy. With I/O binding the batch is copied to
the device once, as one :class:`onnxruntime.OrtValue`, before the run, and the output is
written straight into a host array we allocated for it (``[N, D]``, the shape the
encoder's check promised), so nothing is allocated or copied again after the run.

The same code runs on the CPU provider, with the ``OrtValue`` on ``"cpu"`` (a view of the
numpy array, no copy): that is how the tests check this path on machines without a GPU.
On the CPU it is not the default: the plain run copies nothing either there, and the two
measured the same (ViT-B/32 fp32 on 2 cores, the best of 6 alternating runs: 3.34 s bound
and 3.38 s plain for a batch of 32, 0.840 s and 0.837 s for 8; within the machine's
noise), so :func:`binds_by_default` says which providers use it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

#: ONNX Runtime's device name for each of photofind's providers (photofind.clip.providers)
DEVICES = {"cpu": "cpu", "cuda": "cuda"}


def binds_by_default(provider: str) -> bool:
    """Whether encoders on ``provider`` ("cpu" or "cuda") run through I/O binding unless
    told otherwise: on a GPU yes (the batch crosses to the device once), on the CPU no
    (no faster there; see the module docstring)."""
    return provider == "cuda"


def device_id(session) -> int:
    """The CUDA device the session's provider runs on (its ``device_id`` option; 0)."""
    options = session.get_provider_options().get("CUDAExecutionProvider", {})
    try:
        return int(options.get("device_id", 0))
    except (TypeError, ValueError):
        return 0


def run_bound(session, feeds: dict, rows: int, dim: int, provider: str) -> np.ndarray:
    """One run of ``session`` on ``feeds`` through I/O binding; the first output as a host
    float32 array ``[rows, dim]``.

    ``provider``: where the session runs ("cpu" or "cuda"); the inputs are placed there.
    The graph's other outputs, if it has any, are bound to host memory that ONNX Runtime
    allocates (a run must produce every output), and dropped.
    """
    device = DEVICES[provider]
    index = device_id(session) if device == "cuda" else 0
    binding = session.io_binding()
    # Kept referenced until the run ends: the binding points at their memory.
    values = {
        name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, index)
        for name, array in feeds.items()
    }
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    outputs = session.get_outputs()
    first = outputs[0]
    out = None
    if first.type == "tensor(float)":
        out = np.empty((rows, dim), dtype=np.float32)
        binding.bind_output(first.name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    else:  # an adapted graph's float16 output: ONNX Runtime allocates it, we widen it
        binding.bind_output(first.name, "cpu")
    for extra in outputs[1:]:
        binding.bind_output(extra.name, "cpu")
    session.run_with_iobinding(binding)
    if out is None:
        out = binding.copy_outputs_to_cpu()[0].astype(np.float32)
    return out
