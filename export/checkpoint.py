"""Load a CLIP checkpoint into a plain state dict, without running any pickled code.

Three formats are read:

- OpenAI's released ``.pt`` files, which are TorchScript archives (``torch.jit.load``; their
  state dicts carry ``input_resolution``, ``context_length`` and ``vocab_size`` entries that are
  not weights, dropped here);
- ``torch.save`` state dicts and OpenCLIP ``.bin``/``.pt`` files (``torch.load`` with
  ``weights_only=True``; a training checkpoint's ``{"state_dict": ...}`` wrapper and DDP's
  ``module.`` prefixes are removed);
- ``.safetensors`` files.

Which activation the weights were trained with cannot be read off the tensors; we guess it
from the format and the file name and say why, and the CLI lets the user override it.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from export import ExportError

# Entries of OpenAI's TorchScript state dicts that describe the model rather than weigh it.
NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    format: str  # "torchscript", "torch" or "safetensors"
    activation: str  # "quick_gelu" or "gelu": our best guess, see activation_reason
    activation_reason: str
    dropped: tuple[str, ...] = field(default=())


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips hold compiled code (``code/``, ``constants.pkl``); torch.save zips do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist()
        )


def guess_activation(path: Path, fmt: str) -> tuple[str, str]:
    name = path.name.lower().replace("_", "").replace("-", "")
    if fmt == "torchscript":
        return "quick_gelu", "OpenAI's released TorchScript checkpoints use QuickGELU"
    if "quickgelu" in name:
        return "quick_gelu", f"the file name {path.name!r} says quickgelu"
    if "openai" in name:
        return (
            "quick_gelu",
            f"the file name {path.name!r} says openai (OpenAI weights use QuickGELU)",
        )
    return "gelu", "OpenCLIP checkpoints not named quickgelu/openai use exact GELU"


def _unwrap(obj, path: Path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ExportError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ExportError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "is this a CLIP state dict?"
            )
        key = str(key)
        state[key.removeprefix("module.")] = value
    return state


def _load_torchscript(path: Path) -> tuple[dict, tuple[str, ...]]:
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated, but it is the format OpenAI published CLIP in.
            warnings.filterwarnings("ignore", r"`torch\.jit\.load`", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise ExportError(f"{path}: cannot be read as a TorchScript archive: {exc}") from exc
    state = dict(module.state_dict())
    dropped = tuple(key for key in NON_WEIGHT_KEYS if key in state)
    # The causal mask is a buffer in some scripted models; it is derived, not learned.
    dropped += tuple(key for key in state if key.endswith("attn_mask"))
    for key in dropped:
        state.pop(key)
    return _unwrap(state, path), dropped


def _unpickler_reason(exc: Exception) -> str:
    """The one useful sentence of torch's long weights_only message (not its advice to
    switch the check off)."""
    text = " ".join(str(exc).split())
    _, found, reason = text.partition("WeightsUnpickler error:")
    if not found:
        return text[:200] or "unpickling failed"
    for end in (" Please use", " Check the documentation"):
        reason = reason.split(end)[0]
    return reason.strip().rstrip(".")


def _load_torch(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything that is not tensors and plain containers.
        raise ExportError(
            f"{path}: refused to load (it is corrupt or holds more than tensors): "
            f"{_unpickler_reason(exc)}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - garbage makes torch's unpickler raise anything
        raise ExportError(
            f"{path}: not a readable torch checkpoint: {type(exc).__name__}: {exc}"
        ) from exc
    return _unwrap(obj, path)


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return _unwrap(load_file(str(path), device="cpu"), path)
    except (SafetensorError, OSError) as exc:
        raise ExportError(f"{path}: not a readable safetensors file: {exc}") from exc


def load_checkpoint(path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Return ``(state_dict, info)`` for a CLIP checkpoint file in any supported format."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint {path} does not exist or is not a file")
    dropped: tuple[str, ...] = ()
    if path.suffix == ".safetensors":
        fmt, state = "safetensors", _load_safetensors(path)
    elif is_torchscript_archive(path):
        fmt = "torchscript"
        state, dropped = _load_torchscript(path)
    else:
        fmt, state = "torch", _load_torch(path)
    # Training checkpoints may also carry NON_WEIGHT_KEYS as plain tensors.
    extra = tuple(key for key in NON_WEIGHT_KEYS if key in state)
    for key in extra:
        state.pop(key)
    activation, reason = guess_activation(path, fmt)
    info = CheckpointInfo(path, fmt, activation, reason, dropped + extra)
    return state, info
