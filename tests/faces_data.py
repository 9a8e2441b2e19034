"""The real faces of ../shared/data/faces, labelled, and the measures of a grouping.

Identities come from that folder's README (data/README.md). Where a photo holds several
people, they are listed left to right by the left edge of the face box; the README names them
and the order was checked by eye (obama_and_biden.jpg also shows a girl at the bottom right,
unnamed: ``None``). Shared by tests/test_faces.py and tests/bench/bench_faces.py.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# CI copies shared/ beside the repository; so does every worktree layout here.
SHARED = Path(__file__).resolve().parents[2] / "shared"
FACES = SHARED / "data" / "faces"

IDENTITIES: dict[str, tuple[str | None, ...]] = {
    "obama.jpg": ("obama",),
    "obama2.jpg": ("obama",),
    "obama_small.jpg": ("obama",),
    "obama-240p.jpg": ("obama",),
    "obama-480p.jpg": ("obama",),
    "obama-720p.jpg": ("obama",),
    "obama-1080p.jpg": ("obama",),
    "biden.jpg": ("biden",),
    "alex-lacamoire.png": ("alex",),
    "lin-manuel-miranda.png": ("lin",),
    "two_people.jpg": ("obama", "biden"),
    "knn_examples/train/obama/obama.jpg": ("obama",),
    "knn_examples/train/obama/obama2.jpg": ("obama",),
    "knn_examples/train/biden/biden.jpg": ("biden",),
    "knn_examples/train/biden/biden2.jpg": ("biden",),
    "knn_examples/train/alex_lacamoire/img1.jpg": ("alex",),
    "knn_examples/train/rose_leslie/img1.jpg": ("rose",),
    "knn_examples/train/rose_leslie/img2.jpg": ("rose",),
    "knn_examples/test/obama1.jpg": ("obama",),
    "knn_examples/test/alex_lacamoire1.jpg": ("alex",),
    "knn_examples/test/johnsnow_test1.jpg": ("kit",),
    "knn_examples/test/kit_with_rose.jpg": ("rose", "kit"),
    "knn_examples/test/obama_and_biden.jpg": ("biden", "obama", None),
}
# obama.jpg at other sizes (embedding distances 0.05-0.13 to it: the same shot). Measures over
# distinct shots leave them out, so near-copies do not pad the easy same-person pairs.
RESIZES = {
    "obama_small.jpg",
    "obama-240p.jpg",
    "obama-480p.jpg",
    "obama-720p.jpg",
    "obama-1080p.jpg",
}
TRAIN = [p for p in IDENTITIES if p.startswith("knn_examples/train/")]
TEST = [p for p in IDENTITIES if p.startswith("knn_examples/test/")]


def unique_photos() -> list[str]:
    """Every labelled photo once: three of the knn_examples are copies of top-level files."""
    seen: set[str] = set()
    kept = []
    for relative in IDENTITIES:
        digest = hashlib.sha256((FACES / relative).read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(relative)
    return kept


def load(relative: str, max_side: int | None = None) -> np.ndarray:
    """A photo as the app's caller would give it: upright, RGB, optionally scaled down."""
    with Image.open(FACES / relative) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        if max_side and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.BILINEAR)
        return np.asarray(image)


def labelled(faces_by_photo: dict[str, list]) -> list[tuple[str, object, str]]:
    """(photo, face, identity) for every named face; the faces matched left to right.

    A photo whose face count differs from its labels fails loudly rather than mislabel."""
    out = []
    for relative, faces in faces_by_photo.items():
        names = IDENTITIES[relative]
        if len(faces) != len(names):
            raise AssertionError(f"{relative}: {len(faces)} faces found, {len(names)} labelled")
        for face, name in zip(sorted(faces, key=lambda f: f.box[0]), names):
            if name is not None:
                out.append((relative, face, name))
    return out


def pairwise(truth, predicted) -> dict:
    """Pairwise precision/recall/F1 of a clustering (label -1: a cluster of its own)."""
    predicted = _singletons(predicted)
    tp = fp = fn = 0
    for i, j in combinations(range(len(truth)), 2):
        same_true, same_pred = truth[i] == truth[j], predicted[i] == predicted[j]
        tp += same_true and same_pred
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def bcubed(truth, predicted) -> dict:
    """BCubed precision/recall/F1 (Bagga & Baldwin 1998): averaged over faces, not pairs, so
    a big identity does not outweigh the small ones as it does pairwise."""
    predicted = _singletons(predicted)
    pair = Counter(zip(truth, predicted))
    size_true, size_pred = Counter(truth), Counter(predicted)
    precision = float(np.mean([pair[t, p] / size_pred[p] for t, p in zip(truth, predicted)]))
    recall = float(np.mean([pair[t, p] / size_true[t] for t, p in zip(truth, predicted)]))
    f1 = 2 * precision * recall / (precision + recall)
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def _singletons(labels) -> list:
    top = max([int(x) for x in labels] + [0]) + 1
    out = []
    for x in labels:
        out.append(int(x) if x != -1 else top)
        top += x == -1
    return out
