"""A loaded CLIP model: photos and sentences in, comparable unit vectors out."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofind.clip.package import ModelSpec, read_manifest, verify_files
from photofind.clip.preprocess import DEFAULT_MAX_PIXELS, load_and_preprocess
from photofind.clip.providers import ProviderChoice, cpu_threads, open_sessions, planned_provider
from photofind.clip.tokenizer import ClipTokenizer
from photofind.clip.variants import FP32, check_single_file, choose_variant, roles_of
from photofind.clip.verified import RECORD_NAME, VerifiedFiles
from photofind.errors import ModelError
from photofind.paths import bundled_models_dir, cache_dir, models_dir

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int
    image_size: int
    context_length: int
    provider: str  # "cpu" or "cuda"
    provider_reason: str
    path: Path
    description: str = ""


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _static_dims(value_info) -> list:
    return [d if isinstance(d, int) else None for d in value_info.shape]


def check_batch_axes(path: Path, got_in: list, got_out: list) -> None:
    """The batch axes a graph declares: the input's any size or 1, the output's following it.

    A graph may declare (and then compute) an output of millions of rows from one input
    (16 GiB in the audit); ONNX Runtime allocates what the graph computes, so the
    declaration is checked before the first run.
    """
    if got_in and got_in[0] not in (None, 1):
        raise ModelError(
            f"{path}: input batch fixed at {got_in[0]:,}; photofind runs batches of any size "
            "or of exactly 1"
        )
    if got_out and got_out[0] not in (None, 1, got_in[0] if got_in else None):
        raise ModelError(
            f"{path}: output declares {got_out[0]:,} rows for a batch of "
            f"{got_in[0] if got_in and got_in[0] else 'N'}; refused"
        )


def _check_io(session, path: Path, want_in: list, in_type: str, dim: int) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise ModelError(
            f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}"
        )
    got_in = _static_dims(inputs[0])
    if len(got_in) != len(want_in) or any(
        w is not None and g is not None and g != w for g, w in zip(got_in, want_in)
    ):
        raise ModelError(
            f"{path}: input shape {inputs[0].shape} does not match model.json (expected "
            f"{['N' if w is None else w for w in want_in]})"
        )
    if inputs[0].type != in_type:
        raise ModelError(f"{path}: input type {inputs[0].type}, expected {in_type}")
    got_out = _static_dims(outputs[0])
    if len(got_out) != 2 or (got_out[1] is not None and got_out[1] != dim):
        raise ModelError(
            f"{path}: output shape {outputs[0].shape} does not match embed_dim {dim} in model.json"
        )
    check_batch_axes(path, got_in, got_out)


def _run(session, name: str, batch: np.ndarray, fixed: int | None, path: str) -> np.ndarray:
    """One session run, or one per row for a graph exported with a fixed batch of 1."""
    try:
        if fixed != 1 or batch.shape[0] == 1:
            return session.run(None, {name: batch})[0]
        return np.concatenate(
            [session.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))]
        )
    except MemoryError:
        raise ModelError(f"{path}: running the graph needs more memory than there is") from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: ONNX Runtime failed to run the graph: {exc}") from exc


class ClipModel:
    """Runs a verified model package with ONNX Runtime."""

    def __init__(
        self,
        folder: Path,
        spec: ModelSpec,
        provider: str = "auto",
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        verified: VerifiedFiles | None = None,
        variant: str = FP32,
    ):
        files = verify_files(folder, spec, verified)
        #: "fp32" or "int8" (photofind.clip.variants): which graphs the towers run
        self.variant = variant
        roles = roles_of(variant)
        for tower, role in roles.items():
            if role not in files:
                raise ModelError(f"{folder}/model.json lists no {role} file ({variant} variant)")
            if role != tower:
                check_single_file(files[role])
        self._roles = roles
        self.spec = spec
        self.max_pixels = max_pixels
        self.tokenizer = ClipTokenizer(
            files["vocab"], context_length=spec.context_length, vocab_size=spec.vocab_size
        )
        # Packages adapted from other exporters (photofind.models.adapters) may take int32
        # ids and a batch fixed at 1; model.json's extra says so.
        extra = spec.extra or {}
        text_type = extra.get("textual_input_type", "int64")
        if text_type not in ("int32", "int64"):
            raise ModelError(f"{folder}/model.json: textual_input_type {text_type!r} unsupported")
        self._text_type = text_type
        self._text_dtype = np.int32 if text_type == "int32" else np.int64
        self._visual_batch = extra.get("visual_batch")
        self._textual_batch = extra.get("textual_batch")
        # Each tower's graph, of the chosen variant.
        self._files = {**files, **{tower: files[role] for tower, role in roles.items()}}
        self._threads = threads
        # The provider is settled by the first session opened (a CUDA that fails falls back
        # to the CPU there); the second tower then opens on the same one. Asking for an
        # unknown provider, or for CUDA without a driver, is refused here, before any use.
        self._provider = provider
        self._choice: ProviderChoice = planned_provider(provider)
        self._chosen = False
        # Sessions open on first use, each tower on its own (Immich's lazy load): a text
        # search never builds the image encoder, an indexing run never the text encoder.
        self._sessions: dict[str, object] = {}
        self._session_lock = threading.Lock()
        self._folder = Path(folder)
        self._decode_threads = max(1, min(8, cpu_threads()))

    @property
    def info(self) -> ModelInfo:
        """What the model is and where it runs (the provider: the one its first session
        opened on, or before any is open the one it will try)."""
        spec = self.spec
        return ModelInfo(
            name=spec.name,
            dim=spec.embed_dim,
            image_size=spec.image_size,
            context_length=spec.context_length,
            provider=self._choice.name,
            provider_reason=self._choice.reason,
            path=self._folder,
            description=spec.description,
        )

    @property
    def cpu_threads_busy(self) -> int:
        """CPU threads an encoder run keeps busy: ONNX Runtime's intra-op threads on the
        CPU, none to speak of on a GPU."""
        return (self._threads or cpu_threads()) if self._choice.name == "cpu" else 0

    @property
    def visual_role(self) -> str:
        """The file role of the image graph this model runs (its sha256 names the vectors)."""
        return self._roles["visual"]

    # -- sessions -------------------------------------------------------------------------

    def _session(self, tower: str):
        """The ONNX session of ``tower`` ("visual" or "textual"), opened and checked on its
        first use; thread-safe (two threads asking at once open it once)."""
        session = self._sessions.get(tower)
        if session is not None:
            return session
        with self._session_lock:
            session = self._sessions.get(tower)
            if session is None:
                session = self._open_tower(tower)
                self._sessions[tower] = session
        return session

    def _open_tower(self, tower: str):
        provider = self._choice.name if self._chosen else self._provider
        (session,), choice = open_sessions(
            [self._files[tower]], provider=provider, threads=self._threads
        )
        spec, path = self.spec, self._files[tower]
        first = _static_dims(session.get_inputs()[0])
        if tower == "visual":
            s = spec.image_size
            _check_io(session, path, [None, 3, s, s], "tensor(float)", spec.embed_dim)
            # A graph whose own input says batch 1 runs one row at a time, whatever extra says.
            if first[:1] == [1]:
                self._visual_batch = 1
        else:
            _check_io(
                session,
                path,
                [None, spec.context_length],
                f"tensor({self._text_type})",
                spec.embed_dim,
            )
            if first[:1] == [1]:
                self._textual_batch = 1
        if not self._chosen:
            self._choice, self._chosen = choice, True
            log.info("model %s on %s (%s)", spec.name, choice.name, choice.reason)
        return session

    def check(self) -> ClipModel:
        """Open and check both encoders now (what a model check or an install needs to
        know); a broken graph raises :class:`ModelError` naming its file."""
        self._session("visual")
        self._session("textual")
        return self

    @property
    def sessions_open(self) -> frozenset[str]:
        """The towers whose session exists ("visual", "textual")."""
        return frozenset(self._sessions)

    # -- images ---------------------------------------------------------------------------

    def preprocess(self, item, *, fast: bool = True) -> np.ndarray:
        """One photo (path or PIL image) as the float32 [3,S,S] tensor the encoder takes."""
        return load_and_preprocess(
            item,
            self.spec.image_size,
            self.spec.mean,
            self.spec.std,
            fast=fast,
            max_pixels=self.max_pixels,
        )

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed tensors [N,3,S,S] -> unit vectors [N,D]."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if pixels.ndim != 4 or pixels.shape[0] == 0:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        session = self._session("visual")
        out = _run(
            session,
            session.get_inputs()[0].name,
            pixels,
            self._visual_batch,
            self.spec.files[self._roles["visual"]].path,
        )
        return self._checked(out, pixels.shape[0], "visual")

    def encode_images(
        self, items: Iterable, *, batch_size: int = DEFAULT_BATCH, fast: bool = True
    ) -> np.ndarray:
        """Photos (paths or PIL images) -> unit vectors [N,D].

        A photo that cannot be read raises :class:`photofind.errors.ImageError` naming it;
        the indexing pipeline, which must skip bad photos, preprocesses one by one instead.
        """
        items = list(items)
        chunks = []
        with ThreadPoolExecutor(self._decode_threads) as pool:
            for start in range(0, len(items), batch_size):
                part = items[start : start + batch_size]
                tensors = list(pool.map(lambda it: self.preprocess(it, fast=fast), part))
                chunks.append(self.encode_pixels(np.stack(tensors)))
        if not chunks:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return np.concatenate(chunks)

    # -- text -----------------------------------------------------------------------------

    @property
    def cuts_text_ids(self) -> bool:
        """Whether text ids run cut after the last end-of-text token (not all 77).

        Our exporter's text graphs take ids cut after the last end-of-text token (same
        vectors, the mask is causal; ViT-B/32 encodes a short query in 7.8 ms, not 37.5
        with all 77 tokens: bench_query). Others, and any graph whose token axis is fixed
        after all, get the full context.
        """
        session = self._session("textual")
        return (self.spec.extra or {}).get("textual_dynamic_length") is True and _static_dims(
            session.get_inputs()[0]
        )[1] is None

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        return self.tokenizer(texts)

    def encode_texts(self, texts: str | Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Sentences -> unit vectors [N,D]."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        chunks = []
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        session = self._session("textual")
        cut = self.cuts_text_ids
        for start in range(0, len(texts), batch_size):
            ids = self.tokenizer(texts[start : start + batch_size]).astype(self._text_dtype)
            if cut:
                # EOT has the largest id of the vocabulary, so argmax finds it in each row.
                ids = np.ascontiguousarray(ids[:, : int(ids.argmax(axis=1).max()) + 1])
            out = _run(
                session,
                session.get_inputs()[0].name,
                ids,
                self._textual_batch,
                self.spec.files[self._roles["textual"]].path,
            )
            chunks.append(self._checked(out, ids.shape[0], "textual"))
        if not chunks:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return np.concatenate(chunks)

    def _checked(self, out: np.ndarray, n: int, tower: str) -> np.ndarray:
        if out.shape != (n, self.info.dim):
            raise ModelError(
                f"{self.spec.files[self._roles[tower]].path} returned shape {tuple(out.shape)}, "
                f"model.json promises ({n}, {self.info.dim})"
            )
        return _l2_normalise(out)

    def __repr__(self) -> str:
        return f"<ClipModel {self.info.name} dim={self.info.dim} on {self.info.provider}>"


def available_models(library: Path | None = None) -> dict[str, Path]:
    """Installed and bundled model packages by name (installed ones win)."""
    found: dict[str, Path] = {}
    for root in (bundled_models_dir(), models_dir(library)):
        if root.is_dir():
            for child in sorted(root.iterdir()):
                if (child / "model.json").is_file():
                    found[child.name] = child
    return found


def resolve_model(name_or_dir: str | os.PathLike, library: Path | None = None) -> Path:
    """A model folder from a path or from the name of an installed or bundled package."""
    text = os.fspath(name_or_dir)
    candidate = Path(text).expanduser()
    if candidate.is_dir() or os.sep in text or (os.altsep and os.altsep in text):
        return candidate
    models = available_models(library)
    if text in models:
        return models[text]
    names = ", ".join(sorted(models)) or "none"
    raise ModelError(f"no model named {text!r} (installed or bundled models: {names})")


def load_model(
    path: str | os.PathLike,
    provider: str = "auto",
    *,
    threads: int | None = None,
    library: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check: bool = False,
    precision: str = "fast",
) -> ClipModel:
    """Open a model package (a folder, or a model's name) after checking what it claims
    (files unchanged since their last check are not hashed again: see clip/verified.py).

    Its encoders' ONNX sessions open on first use; with ``check`` both open (and their
    graphs are checked) now. ``precision`` "fast" runs the package's int8 graphs where
    their check passed, "exact" always the fp32 ones (photofind.clip.variants).
    """
    folder = resolve_model(path, library)
    spec = read_manifest(folder)
    model = ClipModel(
        folder,
        spec,
        provider=provider,
        threads=threads,
        max_pixels=max_pixels,
        verified=VerifiedFiles(cache_dir() / RECORD_NAME),
        variant=choose_variant(spec, precision),
    )
    return model.check() if check else model
