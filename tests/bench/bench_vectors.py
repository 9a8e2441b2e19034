"""HNSW vector index benchmark: recall@10 against exact search, query time, build time, size.

    python tests/bench/bench_vectors.py                   # full: 100k and 1M clustered vectors
    python tests/bench/bench_vectors.py --sizes 100000    # 100k only (a few minutes on 2 cores)
    python tests/bench/bench_vectors.py --sizes 20000 --configs 16:200 --queries 200  # smoke

Prints one JSON object. Query times are one query at a time on one thread (BLAS pinned to one
thread too, so the exact-search baseline is measured on one core like the index); builds use
``--threads`` (default: all cores).

The data generator (``clip_like``) imitates the geometry of CLIP image embeddings of a photo
library, which a graph index finds much easier than uniform noise and which decides the
parameters:

- a common cone: every vector leans on one shared direction ``c`` (CLIP embeddings of photos
  are far from isotropic; pairwise cosines of unrelated photos sit around 0.4-0.6);
- many topics (``n / 200`` by default, sizes log-normally uneven, like real folders: a few
  big holidays, many small events); topic centre = normalise(a * c + sqrt(1 - a^2) * g) with
  ``g`` a random unit vector, ``a`` = ``--cone`` (0.8 gives mean pairwise cosine ~0.5);
- within a topic the photos vary mostly inside a low-dimensional subspace (``--subspace``
  dims, own random basis per topic: pose, lighting, framing), plus small isotropic noise;
- every vector L2-normalised, as the encoder returns them.

Queries come from the same topics with fresh within-topic draws, and are never indexed.
Uniform random unit vectors are reported for information only (the known worst case of any
graph index); parameters are not tuned for them.
"""

from __future__ import annotations

import os

# Pin BLAS before numpy loads: the exact-search baseline must be one core like the queries.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import hnswlib  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from photofind.library.vector_index import HnswParams  # noqa: E402

DIM = 512
K = 10


def clip_like(
    n, n_queries, *, dim=DIM, topics=None, cone=0.8, subspace=12, spread=0.5, noise=0.25, seed=0
):
    """``(data [n, dim], queries [n_queries, dim])`` float32, unit norm; see module doc."""
    rng = np.random.default_rng(seed)
    topics = topics or max(20, n // 200)
    axis = rng.standard_normal(dim).astype(np.float32)
    axis /= np.linalg.norm(axis)
    g = rng.standard_normal((topics, dim)).astype(np.float32)
    g -= np.outer(g @ axis, axis)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    centres = cone * axis + np.sqrt(1 - cone**2) * g
    weights = rng.lognormal(0.0, 1.0, topics)
    weights /= weights.sum()

    def draw(count, rng):
        out = np.empty((count, dim), dtype=np.float32)
        topic_of = rng.choice(topics, size=count, p=weights)
        order = np.argsort(topic_of, kind="stable")
        bounds = np.searchsorted(topic_of[order], np.arange(topics + 1))
        for t in range(topics):
            rows = order[bounds[t] : bounds[t + 1]]
            if rows.size == 0:
                continue
            # The topic's own basis, re-derived from its number: same for data and queries.
            basis = np.random.default_rng((seed, t)).standard_normal((subspace, dim))
            basis = (basis / np.sqrt(dim)).astype(np.float32)
            z = rng.standard_normal((rows.size, subspace)).astype(np.float32)
            eps = rng.standard_normal((rows.size, dim)).astype(np.float32) / np.sqrt(dim)
            # |z @ basis| ~ sqrt(subspace): scale so the within-topic offset has norm ~spread.
            out[rows] = centres[t] + (spread / np.sqrt(subspace)) * (z @ basis) + noise * eps
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    data = draw(n, rng)
    queries = draw(n_queries, np.random.default_rng((seed, 1)))
    return data, queries


def uniform(n, n_queries, *, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + n_queries, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def mean_pairwise_cosine(x, rng, pairs=200_000):
    i = rng.integers(0, len(x), pairs)
    j = rng.integers(0, len(x), pairs)
    keep = i != j
    return float(np.einsum("ij,ij->i", x[i[keep]], x[j[keep]]).mean())


def exact_topk(data, queries, k=K, chunk=65536):
    """Ground truth by brute force, in database chunks so memory stays bounded."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(data), chunk):
        s = queries @ data[start : start + chunk].T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        top = np.argsort(-cand_s, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
    return best_i


def exact_query_ms(data, queries, reps=20):
    t0 = time.perf_counter()
    for q in queries[:reps]:
        s = data @ q
        np.argpartition(-s, K - 1)[:K]
    return (time.perf_counter() - t0) / reps * 1000


def rss_mb():
    # Linux reports ru_maxrss in KiB; read the current RSS from /proc where available.
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(data, queries, truth, M, efc, efs, threads, workdir):
    rss0 = rss_mb()
    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=M, ef_construction=efc, random_seed=100)
    t0 = time.perf_counter()
    index.add_items(data, np.arange(len(data)), num_threads=threads)
    build_s = time.perf_counter() - t0
    mem_mb = rss_mb() - rss0
    path = Path(workdir) / f"bench-{M}-{efc}.hnsw"
    index.save_index(str(path))
    disk = path.stat().st_size
    path.unlink()
    sweep = []
    for ef in efs:
        index.set_ef(max(ef, K))
        found = np.empty_like(truth)
        times = []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            labels, _ = index.knn_query(q, k=K, num_threads=1)
            times.append(time.perf_counter() - t)
            found[i] = labels[0]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)])
        times_ms = np.array(times) * 1000
        sweep.append(
            {
                "ef": ef,
                "recall_at_10": round(float(recall), 4),
                "query_ms_mean": round(float(times_ms.mean()), 3),
                "query_ms_p95": round(float(np.percentile(times_ms, 95)), 3),
            }
        )
    return {
        "M": M,
        "ef_construction": efc,
        "build_s": round(build_s, 2),
        "build_threads": threads,
        "bytes_per_vector_disk": round(disk / len(data), 1),
        "bytes_per_vector_memory": round(mem_mb * 2**20 / len(data), 1),
        "raw_vector_bytes": data.shape[1] * 4,
        "sweep": sweep,
    }


def tiny_model_vectors(n, n_queries, model_name="tiny-synthetic", batch=256):
    """Real encoder vectors: the tiny model's embeddings of ``n`` generated photos (seed 7),
    and of ``n_queries`` other photos (seed 8) as queries, never indexed."""
    from photofind.clip import load_model
    from photofind.synthetic import generate

    model = load_model(model_name, provider="cpu")

    def encode(seed, count):
        out = []
        for start in range(0, count, batch):
            images = [generate(seed, i)[1] for i in range(start, min(count, start + batch))]
            out.append(model.encode_images(images, batch_size=batch))
        return np.concatenate(out)

    return encode(7, n), encode(8, n_queries)


def smallest_ef(result, target=0.99):
    for row in result["sweep"]:
        if row["recall_at_10"] >= target:
            return row
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated index sizes")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument(
        "--configs",
        default="12:100,16:200,24:200",
        help="M:ef_construction pairs to compare at the smallest size",
    )
    p.add_argument("--efs", default="16,32,48,64,96,128,192,256")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--cone", type=float, default=0.8)
    p.add_argument("--no-uniform", action="store_true", help="skip the uniform-random row")
    p.add_argument(
        "--tiny",
        type=int,
        default=20000,
        help="photos encoded by the tiny-synthetic model for the real-encoder row (0: skip)",
    )
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    configs = [tuple(int(v) for v in c.split(":")) for c in args.configs.split(",")]
    efs = [int(e) for e in args.efs.split(",")]
    default = HnswParams()
    if (default.M, default.ef_construction) not in configs:
        configs.append((default.M, default.ef_construction))
    rng = np.random.default_rng(1)
    out = {
        "benchmark": "bench_vectors",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "dim": DIM,
        "k": K,
        "queries": args.queries,
        "photofind_defaults": {
            "M": default.M,
            "ef_construction": default.ef_construction,
            "ef": default.ef,
        },
        "clustered": [],
    }
    with tempfile.TemporaryDirectory() as workdir:
        for n_i, n in enumerate(sizes):
            t0 = time.perf_counter()
            data, queries = clip_like(n, args.queries, cone=args.cone)
            gen_s = time.perf_counter() - t0
            truth = exact_topk(data, queries)
            row = {
                "n": n,
                "generate_s": round(gen_s, 1),
                "mean_pairwise_cosine": round(mean_pairwise_cosine(data, rng), 3),
                "mean_query_top1_cosine": round(
                    float(np.einsum("ij,ij->i", queries, data[truth[:, 0]]).mean()), 3
                ),
                "exact_query_ms": round(exact_query_ms(data, queries), 2),
                "configs": [],
            }
            # Compare configurations at the first size; bigger sizes run the default only.
            run = configs if n_i == 0 else [(default.M, default.ef_construction)]
            for M, efc in run:
                res = evaluate(data, queries, truth, M, efc, efs, args.threads, workdir)
                best = smallest_ef(res)
                res["smallest_ef_for_recall_0.99"] = best["ef"] if best else None
                res["speedup_vs_exact_at_default_ef"] = next(
                    (
                        round(row["exact_query_ms"] / s["query_ms_mean"], 1)
                        for s in res["sweep"]
                        if s["ef"] == default.ef
                    ),
                    None,
                )
                row["configs"].append(res)
                print(
                    json.dumps({"progress": n, "M": M, "efc": efc, "best": best}),
                    file=sys.stderr,
                    flush=True,
                )
            out["clustered"].append(row)
            del data, queries, truth
        if not args.no_uniform:
            n = sizes[0]
            data, queries = uniform(n, args.queries)
            truth = exact_topk(data, queries)
            res = evaluate(
                data, queries, truth, default.M, default.ef_construction, efs, args.threads, workdir
            )
            out["uniform_random_for_information"] = {"n": n, **res}
        if args.tiny:
            t0 = time.perf_counter()
            data, queries = tiny_model_vectors(args.tiny, min(args.queries, 1000))
            encode_s = time.perf_counter() - t0
            truth = exact_topk(data, queries)
            res = evaluate(
                data, queries, truth, default.M, default.ef_construction, efs, args.threads, workdir
            )
            out["tiny_model_real_vectors"] = {
                "n": args.tiny,
                "dim": int(data.shape[1]),
                "encode_s": round(encode_s, 1),
                "mean_pairwise_cosine": round(mean_pairwise_cosine(data, rng), 3),
                "exact_query_ms": round(exact_query_ms(data, queries), 3),
                **res,
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
