"""Choosing an ONNX Runtime execution provider: CUDA when it really works, else the CPU.

onnxruntime-gpu does not fail when CUDA is unusable: it logs an error and quietly runs
on the CPU. So we never trust the request; we look at what the session actually got,
and we say why CUDA was not used in words a user can act on.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass

import onnxruntime as ort

from photofind.errors import ModelError, ProviderError

log = logging.getLogger(__name__)

# photofind/__init__.py switched ONNX Runtime's telemetry off before this import, which is
# what stops it. Should a host program have loaded onnxruntime before photofind, that switch
# came too late; this documented call then at least suppresses the non-essential events.
ort.disable_telemetry_events()

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")

# Why CUDA failed to start in this process (None: it did not fail yet). A driver without
# matching CUDA/cuDNN libraries passes the checks planned_provider can make without a
# session; once a session told, the later loads of this process plan for the CPU (and
# choose the CPU's variant: int8, not the fp16 graphs that only CUDA makes faster).
_cuda_failed: str | None = None


def _remember_cuda_failed(reason: str) -> None:
    global _cuda_failed
    _cuda_failed = reason


@dataclass(frozen=True)
class ProviderChoice:
    name: str  # "cuda" or "cpu": what the sessions really run on
    reason: str  # why, for `photofind doctor` and the status bar


def cpu_threads() -> int:
    """Cores this process may use (cgroup/affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _driver_missing_reason() -> str | None:
    """Why CUDA cannot work on this machine, or None when a driver library is present."""
    if sys.platform == "darwin":
        return "CUDA does not exist on macOS"
    if CUDA not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no CUDA provider"
    lib = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(lib)
    except OSError:
        return f"no NVIDIA driver found ({lib} cannot be loaded)"
    return None


def _session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or cpu_threads()
    opts.inter_op_num_threads = 1
    # Spinning workers would burn the cores that the decode threads need between batches
    # (and a desktop app's idle CPU); the cost is a few percent on back-to-back batches.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Errors reach the user through our exceptions; ORT's own console chatter does not help.
    opts.log_severity_level = 3
    return opts


def return_freed_memory() -> None:
    """Give the C heap's free memory back to the OS (glibc's ``malloc_trim``; elsewhere
    nothing).

    Opening a session parses the whole graph, weights included, then frees that copy once
    the session holds its own; glibc keeps such freed heap for reuse, so the process stays
    that much larger for good: ViT-B/32's image session measured 579 MiB resident, 341
    after a trim (bench_index --memory)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl)
        return
    trim(0)


def _open(path, providers, threads) -> ort.InferenceSession:
    try:
        session = ort.InferenceSession(
            str(path), sess_options=_session_options(threads), providers=providers
        )
        return_freed_memory()
        return session
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        if CUDA in providers and not isinstance(exc, (OSError, MemoryError)):
            # Distinguish "CUDA broke" from "the file is bad": retry on the CPU.
            try:
                ort.InferenceSession(
                    str(path), sess_options=_session_options(threads), providers=[CPU]
                )
            except Exception:
                pass
            else:
                raise ProviderError(f"CUDA could not load {path}: {exc}") from exc
        raise ModelError(f"{path} is not a valid ONNX model: {exc}") from exc


def planned_provider(provider: str = "auto") -> ProviderChoice:
    """The provider a model's sessions will try, decided without opening one: refuses an
    unknown provider, and CUDA asked for where no driver can run it (as
    :func:`open_sessions` would). Where CUDA may work, only opening a session tells."""
    if provider not in PROVIDER_CHOICES:
        raise ProviderError(
            f"unknown provider {provider!r}: choose one of {', '.join(PROVIDER_CHOICES)}"
        )
    if provider == "cpu":
        return ProviderChoice("cpu", "CPU requested")
    missing = _driver_missing_reason()
    if missing:
        if provider == "cuda":
            raise ProviderError(f"CUDA was requested but cannot be used: {missing}")
        return ProviderChoice("cpu", missing)
    if provider == "auto" and _cuda_failed is not None:
        return ProviderChoice("cpu", _cuda_failed)
    return ProviderChoice("cuda", "CUDA provider chosen; its first session has not opened yet")


def open_sessions(
    paths: list, provider: str = "auto", threads: int | None = None
) -> tuple[list[ort.InferenceSession], ProviderChoice]:
    """Open one session per path, all on the same provider."""
    if provider not in PROVIDER_CHOICES:
        raise ProviderError(
            f"unknown provider {provider!r}: choose one of {', '.join(PROVIDER_CHOICES)}"
        )
    if provider == "cpu":
        sessions = [_open(p, [CPU], threads) for p in paths]
        return sessions, ProviderChoice("cpu", "CPU requested")

    missing = _driver_missing_reason()
    if missing:
        if provider == "cuda":
            raise ProviderError(f"CUDA was requested but cannot be used: {missing}")
        log.info("using the CPU: %s", missing)
        sessions = [_open(p, [CPU], threads) for p in paths]
        return sessions, ProviderChoice("cpu", missing)

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # Lets pip-installed nvidia-* CUDA/cuDNN wheels be found; harmless when absent.
        try:
            preload()
        except Exception as exc:  # noqa: BLE001 - only a hint for the failure below
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    try:
        sessions = [_open(p, [CUDA, CPU], threads) for p in paths]
    except ProviderError as exc:
        if provider == "cuda":
            raise
        log.warning("falling back to the CPU: %s", exc)
        _remember_cuda_failed(str(exc))
        return [_open(p, [CPU], threads) for p in paths], ProviderChoice("cpu", str(exc))
    if all(s.get_providers()[0] == CUDA for s in sessions):
        return sessions, ProviderChoice("cuda", "CUDA provider active")
    reason = (
        "onnxruntime could not start its CUDA provider (CUDA or cuDNN libraries missing or "
        "not matching this onnxruntime-gpu; run with -v for details)"
    )
    if provider == "cuda":
        raise ProviderError(f"CUDA was requested but cannot be used: {reason}")
    log.info("using the CPU: %s", reason)
    _remember_cuda_failed(reason)
    return sessions, ProviderChoice("cpu", reason)
