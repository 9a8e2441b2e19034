"""A loaded CLIP model: photos and sentences in, comparable unit vectors out."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofind.clip.hf_tokenizer import system_language, text_tokenizer
from photofind.clip.io_binding import binds_by_default, run_bound
from photofind.clip.package import ModelSpec, read_manifest, verify_files
from photofind.clip.pipeline_plan import plan_for
from photofind.clip.preprocess import DEFAULT_MAX_PIXELS
from photofind.clip.providers import ProviderChoice, cpu_threads, open_sessions, planned_provider
from photofind.clip.resize import preprocess_for
from photofind.clip.variants import (
    FP16,
    FP32,
    check_single_file,
    choose_variant,
    roles_of,
    variant_faithful,
)
from photofind.clip.verified import VerifiedFiles
from photofind.errors import ModelError
from photofind.paths import bundled_models_dir, models_dir

log = logging.getLogger(__name__)

#: ONNX Runtime intra-op threads of the text tower unless ``threads`` says (None: every
#: core, as the image tower). A query's ~8 tokens are bound by reading the ~38 MB of int8
#: weights from memory, and two threads read faster than one on a quiet machine
#: (tests/bench/bench_query.py side by side, ViT-B/32 fused int8: 6.5 ms p50 on two, 7.9
#: on one); on a machine another program keeps busy one thread was faster (2.9 against
#: 3.1 ms back to back), but photofind's own indexing takes turns with nothing a search
#: runs, and the quiet case is the common one.
TEXT_TOWER_THREADS: int | None = None


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


_INT_TYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}


def text_inputs(session, path: Path, named: dict[str, str]) -> dict[str, tuple[str, type]]:
    """Which input of a text graph gets the ids and which the mask, with the integer type
    each one declares: {"ids": (name, dtype), "mask": (name, dtype)} (no mask for a graph
    of one input). ``named``: model.json's tokenizer.inputs (graph input -> part)."""
    inputs = session.get_inputs()
    if not 1 <= len(inputs) <= 2:
        raise ModelError(
            f"{path}: expected the token ids and at most an attention mask as inputs, found "
            f"{[i.name for i in inputs]}"
        )
    parts: dict[str, tuple[str, type]] = {}
    for item in inputs:
        part = named.get(item.name)
        if part is None:
            part = "mask" if len(inputs) == 2 and "mask" in item.name.lower() else "ids"
        if part in parts:
            raise ModelError(
                f"{path}: cannot tell the ids from the mask among the inputs "
                f"{[i.name for i in inputs]}; model.json's tokenizer.inputs should say"
            )
        if item.type not in _INT_TYPES:
            raise ModelError(f"{path}: input {item.name} is {item.type}, expected int32/int64")
        parts[part] = (item.name, _INT_TYPES[item.type])
    if "ids" not in parts:
        raise ModelError(f"{path}: no input takes the token ids")
    return parts


def _check_io(session, path: Path, want_in: list, in_type: str | None, dim: int) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(outputs) < 1 or (in_type is not None and len(inputs) != 1):
        raise ModelError(
            f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}"
        )
    for item in inputs:
        got_in = _static_dims(item)
        if len(got_in) != len(want_in) or any(
            w is not None and g is not None and g != w for g, w in zip(got_in, want_in)
        ):
            raise ModelError(
                f"{path}: input shape {item.shape} does not match model.json (expected "
                f"{['N' if w is None else w for w in want_in]})"
            )
        if in_type is not None and item.type != in_type:
            raise ModelError(f"{path}: input type {item.type}, expected {in_type}")
    got_in = _static_dims(inputs[0])
    got_out = _static_dims(outputs[0])
    if len(got_out) != 2 or (got_out[1] is not None and got_out[1] != dim):
        raise ModelError(
            f"{path}: output shape {outputs[0].shape} does not match embed_dim {dim} in model.json"
        )
    check_batch_axes(path, got_in, got_out)


def _run(session, feeds: dict, fixed: int | None, path: str, runner=None) -> np.ndarray:
    """One session run, or one per row for a graph exported with a fixed batch of 1.
    ``runner(feeds) -> first output`` runs it another way (I/O binding: photofind.clip.io_binding)."""
    rows = next(iter(feeds.values())).shape[0]
    run = runner or (lambda f: session.run(None, f)[0])
    try:
        if fixed != 1 or rows == 1:
            return run(feeds)
        return np.concatenate(
            [run({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(rows)]
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
        io_binding: bool | None = None,
    ):
        files = verify_files(folder, spec, verified)
        # Whether the encoders run through ONNX Runtime's I/O binding (None: where the
        # sessions run decides, photofind.clip.io_binding.binds_by_default).
        self._io_binding = io_binding
        #: "fp32", "int8" or "fp16" (photofind.clip.variants): which graphs the towers run
        self.variant = variant
        #: the precision setting that chose ``variant`` (load_model sets it; None: asked for)
        self.precision: str | None = None
        roles = roles_of(variant)
        for tower, role in roles.items():
            if role not in files:
                raise ModelError(f"{folder}/model.json lists no {role} file ({variant} variant)")
            if role != tower:
                check_single_file(files[role])
        self._roles = roles
        self.spec = spec
        self.max_pixels = max_pixels
        self.tokenizer = text_tokenizer(spec, files)
        # The language a query is written in, for models that take a language token (NLLB);
        # None: the system's language.
        self.language: str | None = None
        # Packages adapted from other exporters (photofind.models.adapters) may take int32
        # ids, a mask, and a batch fixed at 1: read from each graph when it opens (model.json's
        # extra may say so too, for the batch).
        extra = spec.extra or {}
        self._text_parts: dict[str, tuple[str, type]] = {}
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

    @functools.cached_property
    def image_tower_id(self) -> str:
        """What the photo vectors depend on, hashed: the image graph and its external data
        (their sha256, checked at load) and the preprocessing. Two packages with the same
        id make the same photo vectors (an M-CLIP text encoder beside OpenAI's image tower)."""
        from photofind.clip.onnx_external import external_locations

        # The image graph this model runs (an int8 variant makes other vectors).
        role = self.visual_role
        spec, graph = self.spec, self._files[role]
        by_path = {os.path.normpath(p.absolute()): r for r, p in self._files.items()}
        data = sorted(
            spec.files[by_path[os.path.normpath((graph.parent / loc).absolute())]].sha256
            for loc in external_locations(graph)
        )
        described = {
            "visual": spec.files[role].sha256,
            "data": data,
            "size": spec.image_size,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "resize": spec.resize,
            "interpolation": spec.interpolation,
            "fill": spec.fill,
            "embed_dim": spec.embed_dim,
        }
        if spec.resize == "squash-then-crop":
            # Only here, so that the ids of every other package (kept in libraries) stay.
            described["resize_size"] = spec.resize_size
        text = json.dumps(described, sort_keys=True).encode("utf-8")
        return hashlib.sha256(text).hexdigest()[:32]

    @property
    def cpu_threads_busy(self) -> int:
        """CPU threads an encoder run keeps busy: ONNX Runtime's intra-op threads on the
        CPU, none to speak of on a GPU."""
        return (self._threads or cpu_threads()) if self._choice.name == "cpu" else 0

    @property
    def io_binding(self) -> bool:
        """Whether the encoders run through I/O binding (photofind.clip.io_binding): asked
        for, or else on CUDA and not on the CPU."""
        if self._io_binding is not None:
            return self._io_binding
        return binds_by_default(self._choice.name)

    def _runner(self, session, dim: int):
        """How a batch runs on ``session``: None for the plain ``session.run``, else
        through I/O binding on the provider the sessions settled on."""
        if not self.io_binding:
            return None
        provider = self._choice.name
        return lambda feeds: run_bound(
            session, feeds, next(iter(feeds.values())).shape[0], dim, provider
        )

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
        threads = self._threads
        if threads is None and tower == "textual" and TEXT_TOWER_THREADS is not None:
            threads = TEXT_TOWER_THREADS
        (session,), choice = open_sessions([self._files[tower]], provider=provider, threads=threads)
        spec, path = self.spec, self._files[tower]
        first = _static_dims(session.get_inputs()[0])
        if tower == "visual":
            s = spec.image_size
            _check_io(session, path, [None, 3, s, s], "tensor(float)", spec.embed_dim)
            # A graph whose own input says batch 1 runs one row at a time, whatever extra says.
            if first[:1] == [1]:
                self._visual_batch = 1
        else:
            self._text_parts = text_inputs(session, path, spec.text.inputs)
            _check_io(session, path, [None, spec.context_length], None, spec.embed_dim)
            if first[:1] == [1]:
                self._textual_batch = 1
        if not self._chosen:
            self._choice, self._chosen = choice, True
            log.info("model %s on %s (%s)", spec.name, choice.name, choice.reason)
            if choice.name == "cpu" and self.variant == FP16 and self._provider != "cpu":
                # Chosen for a CUDA that then failed to start: the same graphs (so the same
                # vectors and model id) run on, slower; the next load of this process
                # plans for the CPU (photofind.clip.providers remembers the failure).
                log.warning("the fp16 encoders of %s run on the CPU, slowly", spec.name)
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
        return preprocess_for(item, self.spec, fast=fast, max_pixels=self.max_pixels)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed tensors [N,3,S,S] -> unit vectors [N,D]."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if pixels.ndim != 4 or pixels.shape[0] == 0:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        session = self._session("visual")
        out = _run(
            session,
            {session.get_inputs()[0].name: pixels},
            self._visual_batch,
            self.spec.files[self._roles["visual"]].path,
            self._runner(session, self.spec.embed_dim),
        )
        return self._checked(out, pixels.shape[0], "visual")

    def encode_images(
        self, items: Iterable, *, batch_size: int | None = None, fast: bool = True
    ) -> np.ndarray:
        """Photos (paths or PIL images) -> unit vectors [N,D], in batches of ``batch_size``
        (None: the indexer's, by where the encoder runs: photofind.clip.pipeline_plan).

        A photo that cannot be read raises :class:`photofind.errors.ImageError` naming it;
        the indexing pipeline, which must skip bad photos, preprocesses one by one instead.
        """
        items = list(items)
        chunks = []
        plan = plan_for(self, cpu_threads(), batch_size=batch_size)
        batch_size = plan.batch_size
        # Decoding and encoding take turns here (a chunk is decoded, then encoded), so
        # the pool is the plan's, capped for the few photos of a search by example.
        with ThreadPoolExecutor(max(1, min(plan.decode_workers, len(items)))) as pool:
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
        return (
            (self.spec.extra or {}).get("textual_dynamic_length") is True
            and self.spec.text.kind == "clip-bpe"
            and len(session.get_inputs()) == 1
            and _static_dims(session.get_inputs()[0])[1] is None
        )

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        return self.tokenizer.batch(texts, self.language or system_language())[0]

    def encode_texts(
        self, texts: str | Sequence[str], *, batch_size: int = 64, language: str | None = None
    ) -> np.ndarray:
        """Sentences -> unit vectors [N,D]. ``language``: what they are written in, for the
        models that take a language token (default: :attr:`language`, else the system's)."""
        language = language or self.language or system_language()
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        chunks = []
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        session = self._session("textual")
        cut = self.cuts_text_ids
        parts = self._text_parts
        for start in range(0, len(texts), batch_size):
            ids, mask = self.tokenizer.batch(texts[start : start + batch_size], language)
            if cut:
                # EOT has the largest id of the vocabulary, so argmax finds it in each row.
                ids = ids[:, : int(ids.argmax(axis=1).max()) + 1]
            feeds = {parts["ids"][0]: np.ascontiguousarray(ids, dtype=parts["ids"][1])}
            if "mask" in parts:
                feeds[parts["mask"][0]] = np.ascontiguousarray(mask, dtype=parts["mask"][1])
            out = _run(
                session,
                feeds,
                self._textual_batch,
                self.spec.files[self._roles["textual"]].path,
                self._runner(session, self.spec.embed_dim),
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


def packages_in(root: Path) -> dict[str, Path]:
    """The model packages in the folder ``root``, by name: its sub-folders holding a
    ``model.json``. Hidden ones are not packages: the model store's installs in progress
    (``.install-*``) and removals under way (``.trash-*``)."""
    found: dict[str, Path] = {}
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if not child.name.startswith(".") and (child / "model.json").is_file():
                found[child.name] = child
    return found


def available_models(library: Path | None = None) -> dict[str, Path]:
    """Installed and bundled model packages by name (installed ones win)."""
    return {**packages_in(bundled_models_dir()), **packages_in(models_dir(library))}


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
    verified: VerifiedFiles | None = None,
    precision: str = "fast",
    variant: str | None = None,
) -> ClipModel:
    """Open a model package (a folder, or a model's name) after checking what it claims
    (files unchanged since their last check are not hashed again: see clip/verified.py).

    Its encoders' ONNX sessions open on first use; with ``check`` both open (and their
    graphs are checked) now. ``verified`` is the record of files already hashed that is
    read and kept up to date (:func:`photofind.clip.verified.user_record` for the user's);
    without one every file is hashed and nothing is written. ``precision``
    "fast" runs the package's int8 graphs where their check passed, "exact" always the fp32
    ones (photofind.clip.variants); on CUDA "fast" means the fp16 graphs. ``variant``
    (fp32, int8 or fp16) runs that one instead, if its check passed (for vectors a library
    already holds: photofind.library.model_session.load_model_by_id).
    """
    folder = resolve_model(path, library)
    spec = read_manifest(folder)
    chosen_by = None
    if variant is None:
        variant = choose_variant(spec, precision, planned_provider(provider).name)
        chosen_by = precision
    elif variant != FP32 and not variant_faithful(spec, variant):
        raise ModelError(f"{folder}: its {variant} graphs are not there or were not checked")
    model = ClipModel(
        folder,
        spec,
        provider=provider,
        threads=threads,
        max_pixels=max_pixels,
        verified=verified,
        variant=variant,
    )
    #: the precision setting that picked the variant (None: the variant was asked for)
    model.precision = chosen_by
    return model.check() if check else model
