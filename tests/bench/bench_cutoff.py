"""Relevance cut-off: how many relevant photos each rule keeps and how many irrelevant it drops.

    python tests/bench/bench_cutoff.py --model tiny-synthetic              # 2 x 1000 photos
    python tests/bench/bench_cutoff.py --model DIR --count 300 --work /tmp/cut   # smoke

Two libraries of generated photos (:mod:`photofind.synthetic`, public stream, seeds
``--calibrate-seed`` and ``--seed``; the tiny model never trained on either) are indexed
with the model through the real :class:`Library` and searched with the real
:class:`SearchEngine`. Relevance is known from each scene's attributes:

- ``a red circle``: some object is a red circle (colour x shape, 48 queries);
- ``a circle``: some object is a circle (6 queries);
- ``a circle on a blue background``: a circle on a background of that colour (54 queries).

Each rule's free parameter (the fixed floor, the robust z) is chosen on the calibration
library (best mean F1), then every rule is evaluated on the other library, as a user's
library would be. For each rule the JSON gives, summed over queries, relevant photos kept of
all relevant ones, irrelevant photos dropped of all irrelevant ones (a search without
cut-off shows the whole library), and the same within the top 50 (what a first screen of
results shows); and per-query means of precision, recall and F1.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from photofind.clip import load_model
from photofind.library.library import Library
from photofind.relevance import _MAD_TO_SIGMA, gap_threshold, robust_threshold, sample_ids
from photofind.search import SearchEngine
from photofind.synthetic import BACKGROUND_COLOURS, COLOURS, SHAPES, write_dataset

TOP = 50


def _library(work: Path, seed: int, count: int, model) -> Path:
    photos = work / f"photos-seed{seed}-n{count}"
    if not (photos / "captions.json").exists():
        write_dataset(photos, count, seed=seed, captions_per_image=1)
    lib = work / f"library-seed{seed}-n{count}-{model.info.name}"
    with Library.open(lib) as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(model)
    return lib


def _queries(attributes: dict[str, dict]):
    """(query text, {file names relevant}) for every query with at least one relevant photo."""

    def where(test):
        return {name for name, a in attributes.items() if test(a)}

    out = []
    for colour in COLOURS:
        for shape in SHAPES:
            rel = where(
                lambda a, c=colour, s=shape: any(
                    o["colour"] == c and o["shape"] == s for o in a["objects"]
                )
            )
            out.append(("colour+shape", f"a {colour} {shape}", rel))
    for shape in SHAPES:
        rel = where(lambda a, s=shape: any(o["shape"] == s for o in a["objects"]))
        out.append(("shape", f"a {shape}", rel))
    for shape in SHAPES:
        for bg in BACKGROUND_COLOURS:
            rel = where(
                lambda a, s=shape, b=bg: (
                    a["background"]["colour"] == b and any(o["shape"] == s for o in a["objects"])
                )
            )
            out.append(("shape+background", f"a {shape} on a {bg} background", rel))
    return [q for q in out if q[2]]


def _scored(lib: Path, model, photos: Path):
    """Per query: names in rank order, their scores, relevance flags, background scores."""
    captions = json.loads((photos / "captions.json").read_text(encoding="utf-8"))
    attributes = {im["file_name"]: im["synth"] for im in captions["images"]}
    rows = []
    with Library.open(lib, readonly=True) as library:
        engine = SearchEngine(library, model)
        n = len(library.index)
        background = library.index.get_vectors(
            sample_ids(library.index.ids(), engine.policy.sample)
        )
        for family, text, relevant in _queries(attributes):
            results = engine.search(text, k=n, cutoff=False)
            names = [Path(r.path).name for r in results]
            rows.append(
                {
                    "family": family,
                    "query": text,
                    "scores": np.array([r.score for r in results]),
                    "relevant": np.array([name in relevant for name in names]),
                    "background": background @ engine.query_vector(text),
                }
            )
    return rows


def _rules(floor: float, z: float):
    return {
        "none (whole library)": lambda row: -np.inf,
        "top 20 only": lambda row: row["scores"][min(19, row["scores"].size - 1)],
        f"fixed floor {floor:.3f}": lambda row: floor,
        f"robust z {z:.2f}": lambda row: robust_threshold(row["background"], z),
        f"floor {floor:.3f} and z {z:.2f}": lambda row: max(
            floor, robust_threshold(row["background"], z)
        ),
        f"mixture (fallback z {z:.2f})": lambda row: mixture_threshold(row["background"], z),
        "widest gap in top 100": lambda row: gap_threshold(row["scores"][:100]),
        "oracle (best F1 per query)": _oracle,
    }


def mixture_threshold(background: np.ndarray, z: float, iterations: int = 60) -> float:
    """Where a two-Gaussian mixture of ``background`` says "relevant" becomes likelier than
    not; :func:`robust_threshold` when the scores show no second mode."""
    scores = np.asarray(background, dtype=np.float64)
    fallback = robust_threshold(scores, z)
    if scores.size < 20:
        return fallback
    median = float(np.median(scores))
    sigma0 = max(_MAD_TO_SIGMA * float(np.median(np.abs(scores - median))), 1e-6)
    upper = scores[scores >= fallback]
    if upper.size < 3:
        return fallback
    mean = np.array([median, float(upper.mean())])
    sigma = np.array([sigma0, max(float(upper.std()), sigma0 / 4)])
    weight = np.array([1.0 - upper.size / scores.size, upper.size / scores.size])
    for _ in range(iterations):
        density = weight * np.exp(-0.5 * ((scores[:, None] - mean) / sigma) ** 2) / sigma
        resp = density / np.maximum(density.sum(axis=1, keepdims=True), 1e-300)
        n = resp.sum(axis=0)
        if n.min() < 2:
            return fallback
        weight = n / scores.size
        mean = (resp * scores[:, None]).sum(axis=0) / n
        sigma = np.sqrt((resp * (scores[:, None] - mean) ** 2).sum(axis=0) / n)
        sigma = np.maximum(sigma, 1e-4)
    low, high = (0, 1) if mean[0] <= mean[1] else (1, 0)
    if (mean[high] - mean[low]) / sigma[low] < 1.0:
        return fallback
    grid = np.linspace(mean[low], max(mean[high], scores.max()), 512)
    dens = weight[:, None] * np.exp(-0.5 * ((grid - mean[:, None]) / sigma[:, None]) ** 2)
    dens /= sigma[:, None]
    above = np.flatnonzero(dens[high] >= dens[low])
    return float(grid[above[0]]) if above.size else fallback


def _oracle(row) -> float:
    """The threshold with the best F1 for this query: the ceiling any rule can reach."""
    rel = row["relevant"]
    tp = np.cumsum(rel)
    f1 = 2 * tp / (np.arange(1, rel.size + 1) + max(int(rel.sum()), 1))
    return row["scores"][int(np.argmax(f1))]


def _evaluate(rows, threshold_of) -> dict:
    kept_rel = total_rel = dropped_irr = total_irr = 0
    top_kept_rel = top_rel = top_dropped_irr = top_irr = 0
    precision, recall, f1 = [], [], []
    for row in rows:
        keep = row["scores"] >= threshold_of(row)
        rel = row["relevant"]
        kept_rel += int(np.count_nonzero(keep & rel))
        total_rel += int(np.count_nonzero(rel))
        dropped_irr += int(np.count_nonzero(~keep & ~rel))
        total_irr += int(np.count_nonzero(~rel))
        top_keep, top_rel_flags = keep[:TOP], rel[:TOP]
        top_kept_rel += int(np.count_nonzero(top_keep & top_rel_flags))
        top_rel += int(np.count_nonzero(top_rel_flags))
        top_dropped_irr += int(np.count_nonzero(~top_keep & ~top_rel_flags))
        top_irr += int(np.count_nonzero(~top_rel_flags))
        tp = np.count_nonzero(keep & rel)
        p = tp / max(np.count_nonzero(keep), 1)
        r = tp / max(np.count_nonzero(rel), 1)
        precision.append(p)
        recall.append(r)
        f1.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return {
        "relevant_kept": f"{kept_rel}/{total_rel}",
        "irrelevant_dropped": f"{dropped_irr}/{total_irr}",
        f"top{TOP}_relevant_kept": f"{top_kept_rel}/{top_rel}",
        f"top{TOP}_irrelevant_dropped": f"{top_dropped_irr}/{top_irr}",
        "mean_precision": round(float(np.mean(precision)), 3),
        "mean_recall": round(float(np.mean(recall)), 3),
        "mean_f1": round(float(np.mean(f1)), 3),
    }


def _best(rows, make, grid) -> float:
    scores = [(_evaluate(rows, make(v))["mean_f1"], v) for v in grid]
    return max(scores)[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-synthetic", help="model name or package folder")
    p.add_argument("--count", type=int, default=1000, help="photos per library (1000)")
    p.add_argument("--calibrate-seed", type=int, default=101)
    p.add_argument("--seed", type=int, default=202)
    p.add_argument("--work", type=Path, default=Path(".cache/bench/cutoff"))
    args = p.parse_args(argv)
    started = time.perf_counter()
    model = load_model(args.model, provider="cpu")
    args.work.mkdir(parents=True, exist_ok=True)
    scored = {}
    for seed in (args.calibrate_seed, args.seed):
        lib = _library(args.work, seed, args.count, model)
        scored[seed] = _scored(lib, model, args.work / f"photos-seed{seed}-n{args.count}")
    calibration, test = scored[args.calibrate_seed], scored[args.seed]
    floor = _best(calibration, lambda t: lambda row: t, np.round(np.arange(0.0, 1.0, 0.01), 3))
    z = _best(
        calibration,
        lambda z: lambda row: robust_threshold(row["background"], z),
        np.round(np.arange(0.0, 6.01, 0.1), 2),
    )
    families = sorted({row["family"] for row in test})
    report = {
        "benchmark": "relevance cut-off",
        "model": model.info.name,
        "model_path": str(model.info.path),
        "photos_per_library": args.count,
        "calibration_seed": args.calibrate_seed,
        "test_seed": args.seed,
        "queries": {f: sum(row["family"] == f for row in test) for f in families},
        "calibrated": {"floor": float(floor), "z": float(z)},
        "rules": {name: _evaluate(test, rule) for name, rule in _rules(floor, z).items()},
        "by_family": {
            f: {
                name: _evaluate([row for row in test if row["family"] == f], rule)
                for name, rule in _rules(floor, z).items()
                if name.startswith(("robust", "fixed", "floor", "mixture", "oracle"))
            }
            for f in families
        },
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
