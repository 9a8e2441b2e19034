"""A text query at a built library, timed for two photofind trees side by side.

    python tests/bench/text_query_trees.py --library LIB --model PKG
        [--other-tree DIR --other-model PKG] [--rounds 3] [--queries 40]

Each round runs one fresh process per tree, the trees taking turns, so both see the same
machine (this 2-core host's speed drifts by tens of percent between minutes: a ratio
measured side by side says more than two numbers taken apart). A process opens ``LIB``
read-only with ``PKG`` (precision fast), warms up, then times ``SearchEngine.search`` on
``--queries`` sentences never searched before (bench_query's everyday sentences: the
encoder runs for each), then ``text_vector`` and a search with the vector cached on another
sentence each. ``LIB`` and ``PKG``: a library and package bench_query.py built (its
``--workdir``); ``--other-tree`` a checkout of another photofind (an earlier commit, with
``git worktree add``) and ``--other-model`` its package (an older one may lack the fused
int8 text graph).

Prints one JSON object: per tree, each round's p50 in ms of the query end to end, its
encoder and its search, and the ratio of the other tree's end-to-end p50 to this one's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]

CHILD = """
import sys, time, json
import numpy as np
tree, bench, pkg, lib, queries = sys.argv[1:6]
sys.path.insert(0, tree)
from photofind.clip.model import load_model
from photofind.library.library import Library
from photofind.search import SearchEngine
sys.path.insert(1, bench)  # after photofind is imported: bench_query puts its own tree first
from bench_query import sentences
with Library.open(lib, readonly=True) as library:
    engine = SearchEngine(library, load_model(pkg, provider="cpu", precision="fast"))
    for i in range(5):
        engine.search(f"warming up {i}", k=20)
    n = int(queries)
    e2e, enc, srch = [], [], []
    for text in sentences(n, 0):
        t = time.perf_counter(); engine.search(text, k=20); e2e.append(time.perf_counter() - t)
    for text in sentences(n, n):
        t = time.perf_counter(); engine.text_vector(text); enc.append(time.perf_counter() - t)
        t = time.perf_counter(); engine.search(text, k=20); srch.append(time.perf_counter() - t)
    p50 = lambda x: round(float(np.median(x)) * 1e3, 2)
    import photofind
    print(json.dumps({"e2e_p50_ms": p50(e2e), "encode_p50_ms": p50(enc),
                      "search_p50_ms": p50(srch), "photofind": photofind.__path__[0]}))
"""


def one(tree: Path, package: Path, library: Path, queries: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tree),
            str(HERE.parent),
            str(package),
            str(library),
            str(queries),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--other-tree", type=Path)
    parser.add_argument("--other-model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args(argv)
    trees = {"this": (ROOT, args.model)}
    if args.other_tree:
        trees["other"] = (args.other_tree.resolve(), args.other_model or args.model)
    out: dict = {
        name: {"tree": str(tree), "model": str(pkg), "rounds": []}
        for name, (tree, pkg) in trees.items()
    }
    for _ in range(args.rounds):
        for name, (tree, pkg) in trees.items():
            out[name]["rounds"].append(one(tree, pkg, args.library, args.queries))
    if "other" in out:
        out["other_over_this_e2e"] = [
            round(o["e2e_p50_ms"] / t["e2e_p50_ms"], 2)
            for o, t in zip(out["other"]["rounds"], out["this"]["rounds"], strict=True)
        ]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
