"""What a user choosing a model wants to know: its languages, its size, its speed here.

* Languages come from the catalogue (an installed package is matched to its entry by name
  or by the Immich name its model.json records); a package the catalogue does not know
  says so.
* The size is the sum of the package's files on disk; for a model not installed yet, the
  catalogue's estimate.
* The speed is measured on this machine, when the store probes a package it installs: a
  few blank pictures through the image encoder after one warm-up (what indexing costs per
  photo, decoding aside), one sentence through the text encoder (what a query costs). It
  is a fact of this machine, not of a library: kept in the user cache
  (``model-speeds.json`` beside the record of verified model files), keyed by package name
  and image graph hash, so a replaced package is measured again. Lost, it is measured at
  the next install.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofind.atomic import atomic_write_text
from photofind.models import catalogue
from photofind.models.languages import base_language

log = logging.getLogger(__name__)

SPEEDS_FILE = "model-speeds.json"
PROBE_IMAGES = 4
# For a desktop whose language is not English: NLLB-CLIP (201 languages, Immich's
# recommendation for other languages), then any multilingual model that speaks it.
MULTILINGUAL_FIRST = "nllb-clip-base-siglip__v1"


@dataclass(frozen=True)
class Speed:
    images_per_s: float
    query_ms: float


@dataclass(frozen=True)
class ModelFacts:
    languages: str  # "en", "multilingual (~201)", or "unknown"
    size_bytes: int | None
    speed: Speed | None

    def text(self) -> str:
        """One line: "multilingual (~201) · 2.0 GB · 31 photos/s, query 12 ms"."""
        size = f"{self.size_bytes / 1e9:.1f} GB" if self.size_bytes else "size unknown"
        if self.size_bytes and self.size_bytes < 1e8:
            size = f"{self.size_bytes / 1e6:.1f} MB"
        if self.speed:
            ms = self.speed.query_ms
            query = f"{ms:.1f}" if ms < 10 else f"{ms:,.0f}"
            speed = f"{self.speed.images_per_s:,.0f} photos/s, query {query} ms here"
        else:
            speed = "speed not measured yet"
        return f"{self.languages} · {size} · {speed}"


def measure(model, image_size: int) -> Speed:
    """Encode speed of a loaded model on this machine (see the module docstring)."""
    pixels = np.zeros((PROBE_IMAGES, 3, image_size, image_size), dtype=np.float32)
    model.encode_pixels(pixels[:1])  # the session opens and warms up
    started = time.perf_counter()
    model.encode_pixels(pixels)
    images = PROBE_IMAGES / max(time.perf_counter() - started, 1e-9)
    model.encode_texts(["a photo of a dog"])
    started = time.perf_counter()
    model.encode_texts(["a photo of a cat on a sofa"])
    return Speed(images, 1000 * (time.perf_counter() - started))


def _key(name: str, spec) -> str:
    return f"{name}@{spec.files['visual'].sha256[:16]}"


def _record() -> Path:
    from photofind.paths import cache_dir

    return cache_dir() / SPEEDS_FILE


def _read() -> dict:
    try:
        data = json.loads(_record().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_speed(name: str, spec, speed: Speed) -> None:
    data = _read()
    data[_key(name, spec)] = {"images_per_s": speed.images_per_s, "query_ms": speed.query_ms}
    try:
        _record().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(_record(), json.dumps(data, indent=1))
    except OSError as exc:  # a read-only home: measured again at the next install
        log.warning("cannot record the speed of %s: %s", name, exc)


def speed_of(name: str, spec) -> Speed | None:
    entry = _read().get(_key(name, spec))
    try:
        return Speed(float(entry["images_per_s"]), float(entry["query_ms"]))
    except (TypeError, KeyError, ValueError):
        return None


def entry_of(name: str, spec) -> catalogue.CatalogueEntry | None:
    """The catalogue entry an installed package came from, when there is one."""
    immich = (spec.extra or {}).get("immich_name") if spec is not None else None
    for entry in catalogue.entries():
        if entry.kind == "onnx" and name in (entry.package_name, entry.name):
            return entry
        if immich and entry.name == immich:
            return entry
    return None


def installed_facts(store) -> dict[str, ModelFacts]:
    """Facts of every readable package of a :class:`~photofind.models.store.ModelStore`."""
    found = {}
    for model in store.list():
        if model.spec is None:
            continue
        entry = entry_of(model.name, model.spec)
        size = 0
        for file in model.spec.files.values():
            with contextlib.suppress(OSError):
                size += (model.path / file.path).stat().st_size
        found[model.name] = ModelFacts(
            entry.languages_text if entry else "languages unknown",
            size or None,
            speed_of(model.name, model.spec),
        )
    return found


def recommended(language: str | None) -> catalogue.CatalogueEntry:
    """The model to offer first for a desktop in ``language`` (None or English: CLIP)."""
    code = base_language(language)
    if code in ("", "en", "c", "posix"):
        return catalogue.get("ViT-B-32")
    first = catalogue.find(MULTILINGUAL_FIRST)
    if first is not None and first.speaks(code):
        return first
    return next(
        (e for e in catalogue.entries() if e.multilingual and e.speaks(code)),
        catalogue.get("ViT-B-32"),
    )
