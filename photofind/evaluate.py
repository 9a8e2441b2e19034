"""Retrieval quality of a model over a captioned image set: Recall@K both ways.

The caption set is in the COCO captions format (``images`` with ``id`` and ``file_name``,
``annotations`` with ``image_id`` and ``caption``), the format of COCO's
``captions_val2017.json``, of Karpathy's splits once converted, and of the sets that
``python -m export synth`` writes.

- text→image: for each caption, is its own image among the K images nearest to it?
- image→text: for each image, is any one of its captions among the K nearest captions?

Ties count against the query (an image tied with the right one ranks ahead of it), so a
model that gives every input the same vector scores zero, not a lucky figure.

Application layer: numpy and the model runtime only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofind.errors import PhotofindError

KS = (1, 5, 10)
# Rows of the similarity matrix computed at once: 512 × 25,000 float32 is 50 MB, so even
# COCO's 5k images × 25k captions never needs the whole matrix in memory.
_CHUNK = 512

# progress(stage, done, total); stage is "images", "captions" or "ranking".
ProgressCallback = Callable[[str, int, int], None]


class DatasetError(PhotofindError):
    """A caption set is missing, malformed or inconsistent; the message names the file."""


@dataclass(frozen=True)
class CaptionSet:
    """A captioned image set, checked: every image exists and has at least one caption."""

    image_ids: list[int]
    image_paths: list[Path]
    captions: list[str]
    caption_image: np.ndarray  # int64 [M]: index into image_paths of each caption's image
    source: Path

    def __len__(self) -> int:
        return len(self.image_paths)


def _shown(items: Sequence, limit: int = 5) -> str:
    text = ", ".join(str(item) for item in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _entries(data: dict, key: str, path: Path) -> list[dict]:
    value = data.get(key)
    if not isinstance(value, list):
        raise DatasetError(f"{path}: '{key}' should be a list (COCO captions format)")
    for position, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: {key}[{position}] should be an object, got {entry!r}")
    return value


def _int_field(entry: dict, field: str, where: str, path: Path) -> int:
    value = entry.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DatasetError(f"{path}: {where} has no integer '{field}' (got {value!r})")
    return value


def read_captions(captions_file: str | Path, images_dir: str | Path) -> CaptionSet:
    """Read and check a COCO-format captions file whose images lie under ``images_dir``.

    Raises :class:`DatasetError` naming the file and the problem: missing file, malformed
    JSON, duplicate image or annotation ids, captions of unknown images, images without
    captions, image files that do not exist.
    """
    path = Path(captions_file)
    images_dir = Path(images_dir)
    if not path.is_file():
        raise DatasetError(f"captions file {path} does not exist")
    if not images_dir.is_dir():
        raise DatasetError(f"images folder {images_dir} does not exist or is not a folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} should hold a JSON object with 'images' and 'annotations'")

    images = _entries(data, "images", path)
    annotations = _entries(data, "annotations", path)
    if not images:
        raise DatasetError(f"{path} lists no images")

    index_of: dict[int, int] = {}
    paths: list[Path] = []
    for position, entry in enumerate(images):
        image_id = _int_field(entry, "id", f"images[{position}]", path)
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            raise DatasetError(f"{path}: images[{position}] (id {image_id}) has no 'file_name'")
        if image_id in index_of:
            raise DatasetError(f"{path}: image id {image_id} appears more than once")
        index_of[image_id] = len(paths)
        paths.append(images_dir / name)

    captions: list[str] = []
    owners: list[int] = []
    annotation_ids: Counter = Counter()
    unknown: list[int] = []
    for position, entry in enumerate(annotations):
        where = f"annotations[{position}]"
        if "id" in entry:
            annotation_ids[_int_field(entry, "id", where, path)] += 1
        image_id = _int_field(entry, "image_id", where, path)
        text = entry.get("caption")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{path}: {where} (image {image_id}) has an empty caption")
        if image_id not in index_of:
            unknown.append(image_id)
            continue
        captions.append(text.strip())
        owners.append(index_of[image_id])

    repeated = sorted(key for key, count in annotation_ids.items() if count > 1)
    if repeated:
        raise DatasetError(f"{path}: annotation ids appear more than once: {_shown(repeated)}")
    if unknown:
        raise DatasetError(
            f"{path}: {len(unknown)} caption(s) belong to image ids not in 'images': "
            f"{_shown(sorted(set(unknown)))}"
        )
    captioned = set(owners)
    bare = [
        f"{image_id} ({paths[i].name})" for image_id, i in index_of.items() if i not in captioned
    ]
    if bare:
        raise DatasetError(f"{path}: {len(bare)} image(s) have no caption: {_shown(bare)}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{path}: {len(missing)} image file(s) listed there do not exist under "
            f"{images_dir}: {_shown(missing)}"
        )
    return CaptionSet(
        image_ids=list(index_of),
        image_paths=paths,
        captions=captions,
        caption_image=np.asarray(owners, dtype=np.int64),
        source=path,
    )


# ---------------------------------------------------------------------------------------------
# Recall@K arithmetic


def first_hit_ranks(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """For each query row, the 0-based rank of its best-scoring relevant item.

    ``similarity`` and ``relevant`` are [Q, N]; every row needs one relevant item at least.
    The rank counts the irrelevant items scoring at least as high (ties go against the query).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if similarity.shape != relevant.shape or similarity.ndim != 2:
        raise ValueError(
            f"similarity {similarity.shape} and relevant {relevant.shape} must be equal 2-D shapes"
        )
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant item")
    best = np.where(relevant, similarity, -np.inf).max(axis=1, keepdims=True)
    return ((similarity >= best) & ~relevant).sum(axis=1)


def recall_from_ranks(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    ranks = np.asarray(ranks)
    return {f"R@{k}": float((ranks < k).mean()) if ranks.size else 0.0 for k in ks}


def retrieval_ranks(
    image_vectors: np.ndarray,
    text_vectors: np.ndarray,
    caption_image: np.ndarray,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(text→image ranks [M], image→text ranks [N]) from unit vectors, in chunks."""
    images = np.asarray(image_vectors, dtype=np.float32)
    texts = np.asarray(text_vectors, dtype=np.float32)
    owner = np.asarray(caption_image, dtype=np.int64)
    n, m = len(images), len(texts)
    total = n + m
    t2i = np.empty(m, dtype=np.int64)
    for start in range(0, m, _CHUNK):
        stop = min(start + _CHUNK, m)
        sims = texts[start:stop] @ images.T
        relevant = owner[start:stop, None] == np.arange(n)[None, :]
        t2i[start:stop] = first_hit_ranks(sims, relevant)
        if progress:
            progress("ranking", stop, total)
    i2t = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        sims = images[start:stop] @ texts.T
        relevant = np.arange(start, stop)[:, None] == owner[None, :]
        i2t[start:stop] = first_hit_ranks(sims, relevant)
        if progress:
            progress("ranking", m + stop, total)
    return t2i, i2t


def recall_at_k(
    image_vectors: np.ndarray,
    text_vectors: np.ndarray,
    caption_image: np.ndarray,
    ks: Sequence[int] = KS,
    progress: ProgressCallback | None = None,
) -> dict[str, dict[str, float]]:
    t2i, i2t = retrieval_ranks(image_vectors, text_vectors, caption_image, progress)
    return {
        "text_to_image": recall_from_ranks(t2i, ks),
        "image_to_text": recall_from_ranks(i2t, ks),
    }


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def _encode_in_batches(encode, items: list, stage: str, batch: int, progress) -> np.ndarray:
    chunks = []
    for start in range(0, len(items), batch):
        chunks.append(encode(items[start : start + batch]))
        if progress:
            progress(stage, min(start + batch, len(items)), len(items))
    return np.concatenate(chunks)


def evaluate(
    model,
    images_dir: str | Path,
    captions_file: str | Path,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = 64,
    ks: Sequence[int] = KS,
) -> dict:
    """Recall@K of ``model`` (a :class:`photofind.clip.ClipModel`) over a COCO caption set.

    Returns ``{"text_to_image": {"R@1": ..}, "image_to_text": {..}, "images": N,
    "captions": M, "model": NAME}``. ``progress(stage, done, total)`` is called after each
    batch of images, of captions, and of ranking.
    """
    data = read_captions(captions_file, images_dir)
    image_vectors = _encode_in_batches(
        model.encode_images, data.image_paths, "images", batch_size, progress
    )
    text_vectors = _encode_in_batches(
        model.encode_texts, data.captions, "captions", batch_size, progress
    )
    figures = recall_at_k(image_vectors, text_vectors, data.caption_image, ks, progress)
    return {
        **figures,
        "images": len(data.image_paths),
        "captions": len(data.captions),
        "model": model.info.name,
    }
