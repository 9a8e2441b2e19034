"""How big the image encoder's batches are and how many decode threads feed it: one decision,
by where the image encoder runs.

- **CPU**: batches of :data:`CPU_BATCH` (ONNX Runtime's CPU kernels gain nothing from
  larger ones, and a batch is what a cancel or a crash can lose). An encoder whose
  intra-op threads take every core takes turns with the decode pool
  (photofind.library.decode_pool.DecodePool.hold), so the pool has a thread per core for
  its turn. One given fewer threads runs beside the pool, which then gets the cores left:
  the two never ask for more threads than there are cores.
- **GPU**: the encoder keeps no core busy (one thread waits on the device), and at
  thousands of images a second decoding is the bound: a decode thread per core, never
  held, and batches of :data:`CUDA_BATCH`, which keep the device busy between the
  host's copies (gpu_run.py measures images/s per batch size), fewer when the look-ahead
  window of decoded tensors would pass :data:`WINDOW_MAX_BYTES` (a large image size),
  but never fewer than :data:`CPU_BATCH`.

The caller's explicit batch size or thread count always wins. :attr:`Plan.takes_turns`
says what the indexer will do (``photofind doctor`` shows it); the hold itself is decided
at each batch by the analyser (photofind.library.analysers.ClipAnalyser.uses_every_core),
from the provider the sessions settled on, so a CUDA that failed to start takes turns.
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_BATCH = 32
CUDA_BATCH = 128
#: the decoded tensors waiting in the look-ahead window (batch x (1 + look-ahead)) at most
WINDOW_MAX_BYTES = 384 * 2**20


@dataclass(frozen=True)
class Plan:
    batch_size: int
    decode_workers: int
    #: the decode pool waits while the encoder runs (photofind.library.decode_pool); as
    #: planned: the indexer holds the pool by the provider the sessions settled on
    takes_turns: bool
    why: str


def _tensor_bytes(image_size: int) -> int:
    return 3 * image_size * image_size * 4  # one float32 [3, S, S] tensor


def plan(
    provider: str,
    cores: int,
    *,
    encoder_threads: int,
    image_size: int = 224,
    lookahead_batches: int = 2,
    batch_size: int | None = None,
    decode_workers: int | None = None,
) -> Plan:
    """The batch size and decode threads for an image encoder on ``provider`` ("cpu" or
    "cuda") on a machine of ``cores`` cores, the encoder keeping ``encoder_threads`` of
    them busy (photofind.clip.model.ClipModel.cpu_threads_busy: 0 on a GPU)."""
    cores = max(1, cores)
    if provider == "cuda":
        window = _tensor_bytes(image_size) * (1 + lookahead_batches)
        fits = max(CPU_BATCH, WINDOW_MAX_BYTES // window // 8 * 8)
        batch = batch_size or min(CUDA_BATCH, fits)
        workers = decode_workers or cores
        return Plan(batch, workers, False, "encoder on the GPU: decoding on every core")
    batch = batch_size or CPU_BATCH
    if encoder_threads >= cores:
        workers = decode_workers or cores
        return Plan(batch, workers, True, "encoder on every core: it and decoding take turns")
    workers = decode_workers or max(1, cores - encoder_threads)
    return Plan(
        batch,
        workers,
        False,
        f"encoder on {encoder_threads} of {cores} cores: decoding beside it on the rest",
    )


def plan_for(model, cores: int, *, lookahead_batches: int = 2, **explicit) -> Plan:
    """:func:`plan` for a loaded model (its provider: the one its sessions settled on, or
    before any opened the one they will try)."""
    info = model.info
    return plan(
        info.provider,
        cores,
        encoder_threads=getattr(model, "cpu_threads_busy", cores),
        image_size=info.image_size,
        lookahead_batches=lookahead_batches,
        **explicit,
    )
