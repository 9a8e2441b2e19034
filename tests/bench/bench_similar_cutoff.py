"""Relevance cut-off for Find similar (a picture as the query): what each rule keeps.

    python tests/bench/bench_similar_cutoff.py --model tiny-synthetic          # 2 x 1000 photos
    python tests/bench/bench_similar_cutoff.py --count 300 --work /tmp/cut     # smoke

The libraries of :mod:`bench_cutoff` (generated photos, seeds ``--calibrate-seed`` and
``--seed``) plus the demo library (what ``photofind --demo`` shows). Every ``--every``-th
photo is a query; a photo counts as like it when the two share an object of the same colour
and shape (what the tiny model tells apart; "shape" and "background" report looser and
stricter readings). The query photo itself is left out of the counts: it always comes first.

An image query scores on its own scale (a photo against photos: cosines around 0.6-0.9, not a
sentence's 0.2-0.4), so the robust z of :mod:`photofind.relevance` is chosen for image
queries on the calibration library (best mean F1) and evaluated on the others.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from bench_cutoff import _best, _evaluate, _library, _oracle, mixture_threshold

from photofind.clip import load_model
from photofind.demo import build_demo_library, demo_scenes
from photofind.library.library import Library
from photofind.relevance import gap_threshold, policy_for, robust_threshold, sample_ids
from photofind.search import SearchEngine

READINGS = {
    # query scene, other scene -> alike?
    "object (colour and shape)": lambda q, s: bool(_pairs(q) & _pairs(s)),
    "shape": lambda q, s: bool({o[1] for o in _pairs(q)} & {o[1] for o in _pairs(s)}),
    "object and background colour": lambda q, s: (
        bool(_pairs(q) & _pairs(s)) and q["background"]["colour"] == s["background"]["colour"]
    ),
}
MAIN = "object (colour and shape)"


def _pairs(attributes: dict) -> set[tuple[str, str]]:
    return {(o["colour"], o["shape"]) for o in attributes["objects"]}


def _generated_attributes(photos: Path) -> dict[str, dict]:
    captions = json.loads((photos / "captions.json").read_text(encoding="utf-8"))
    return {im["file_name"]: im["synth"] for im in captions["images"]}


def _demo(work: Path, model) -> tuple[Path, dict[str, dict]]:
    root = build_demo_library(work / f"demo-{model.info.name}", model)
    attributes = {Path(p).name: scene.attributes() for p, scene in demo_scenes(root).items()}
    return root, attributes


def _scored(lib: Path, model, attributes: dict[str, dict], every: int, reading: str):
    """Per query photo: the others in rank order, their scores, relevance, background."""
    alike = READINGS[reading]
    rows = []
    with Library.open(lib, readonly=True) as library:
        engine = SearchEngine(library, model)
        n = len(library.index)
        background = library.index.get_vectors(
            sample_ids(library.index.ids(), engine.policy.sample)
        )
        photos = sorted(library.catalog.photos(), key=lambda p: p.path)
        for photo in photos[::every]:
            query = attributes[Path(photo.path).name]
            results = [r for r in engine.similar(photo.id, k=n) if r.photo_id != photo.id]
            vector = engine.query_vector(f"photo:{photo.id}")
            rows.append(
                {
                    "scores": np.array([r.score for r in results]),
                    "relevant": np.array(
                        [alike(query, attributes[Path(r.path).name]) for r in results]
                    ),
                    "background": background @ vector,
                }
            )
    return rows


def _rules(z: float, text_z: float):
    return {
        "none (whole library)": lambda row: -np.inf,
        "top 200 (the app before)": lambda row: row["scores"][min(199, row["scores"].size - 1)],
        "top 20 only": lambda row: row["scores"][min(19, row["scores"].size - 1)],
        f"robust z {text_z:.2f} (the text queries' z)": lambda row: robust_threshold(
            row["background"], text_z
        ),
        f"robust z {z:.2f}": lambda row: robust_threshold(row["background"], z),
        f"mixture (fallback z {z:.2f})": lambda row: mixture_threshold(row["background"], z),
        "widest gap in top 100": lambda row: gap_threshold(row["scores"][:100]),
        "oracle (best F1 per query)": _oracle,
    }


def _report(rows, z, text_z) -> dict:
    out = {}
    for name, rule in _rules(z, text_z).items():
        summary = _evaluate(rows, rule)
        summary["mean_kept"] = round(
            float(np.mean([np.count_nonzero(r["scores"] >= rule(r)) for r in rows])), 1
        )
        out[name] = summary
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-synthetic", help="model name or package folder")
    p.add_argument("--count", type=int, default=1000, help="photos per generated library")
    p.add_argument("--every", type=int, default=10, help="every N-th photo is a query (10)")
    p.add_argument("--calibrate-seed", type=int, default=101)
    p.add_argument("--seed", type=int, default=202)
    p.add_argument("--work", type=Path, default=Path(".cache/bench/cutoff"))
    args = p.parse_args(argv)
    started = time.perf_counter()
    model = load_model(args.model, provider="cpu")
    text_z = policy_for(model).z
    args.work.mkdir(parents=True, exist_ok=True)
    libraries = {}
    for seed in (args.calibrate_seed, args.seed):
        lib = _library(args.work, seed, args.count, model)
        photos = args.work / f"photos-seed{seed}-n{args.count}"
        libraries[f"generated seed {seed}"] = (lib, _generated_attributes(photos))
    demo_root, demo_attributes = _demo(args.work, model)
    libraries["demo"] = (demo_root, demo_attributes)
    scored = {
        (name, reading): _scored(lib, model, attributes, args.every, reading)
        for name, (lib, attributes) in libraries.items()
        for reading in READINGS
    }
    calibration = scored[(f"generated seed {args.calibrate_seed}", MAIN)]
    z = _best(
        calibration,
        lambda z: lambda row: robust_threshold(row["background"], z),
        np.round(np.arange(0.0, 6.01, 0.1), 2),
    )
    report = {
        "benchmark": "relevance cut-off of image queries (Find similar)",
        "model": model.info.name,
        "photos_per_library": args.count,
        "queries_per_library": {name: len(scored[(name, MAIN)]) for name in libraries},
        "calibrated_on": f"generated seed {args.calibrate_seed}, reading {MAIN!r}",
        "calibrated_z": float(z),
        "results": {
            name: {reading: _report(scored[(name, reading)], z, text_z) for reading in READINGS}
            for name in libraries
            if name != f"generated seed {args.calibrate_seed}"
        },
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
