"""Tokenizer benchmark: construction time and tokens/s, ours next to OpenCLIP's reference.

    python tests/bench/bench_tokenizer.py [--texts 20000] [--repeats 5]

Prints one JSON object. Uses OpenAI's 49,408-id vocabulary from the installed
open_clip_torch package; the reference tokenizer (which imports torch) is loaded by file
path. Both run in this one process, interleaved, so the ratio holds on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from photofind.clip.tokenizer import ClipTokenizer  # noqa: E402

VOCAB_SIZE = 49408
WORDS_TEXT = (
    "a the photo of my cat dog on beach at sunset with family in snowy mountains red car parked "
    "near old house children playing football park birthday party cake candles woman wearing "
    "hat man riding bicycle along river bridge city night lights flowers garden Paris Tokyo "
    "café naïve 2019 christmas tree presents grandma's kitchen"
)
WORDS = WORDS_TEXT.split()


def open_clip_file(name: str) -> Path:
    dist = importlib.metadata.distribution("open_clip_torch")
    for file in dist.files or ():
        if file.as_posix() == f"open_clip/{name}":
            return Path(dist.locate_file(file))
    raise SystemExit(f"open_clip_torch has no open_clip/{name}")


def caption_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    # A running number keeps every text distinct, so the per-text cache never hits.
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + f" #{i}"
        for i in range(count)
    ]


def fresh_process_construct(vocab: Path) -> dict:
    """Import and construction in a new interpreter: what an app start pays."""
    code = (
        "import time; t0 = time.perf_counter();"
        "from photofind.clip.tokenizer import ClipTokenizer; t1 = time.perf_counter();"
        f"ClipTokenizer({str(vocab)!r}, vocab_size={VOCAB_SIZE}); t2 = time.perf_counter();"
        "print(t1 - t0, t2 - t1)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    import_s, construct_s = map(float, out.stdout.split())
    return {"import_s": round(import_s, 4), "construct_s": round(construct_s, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    vocab = open_clip_file("bpe_simple_vocab_16e6.txt.gz")
    spec = importlib.util.spec_from_file_location("open_clip_ref", open_clip_file("tokenizer.py"))
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)

    construct = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ClipTokenizer(vocab, vocab_size=VOCAB_SIZE)
        construct.append(time.perf_counter() - start)
    reference_construct = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference.SimpleTokenizer(str(vocab))
        reference_construct.append(time.perf_counter() - start)

    texts = caption_texts(args.texts)
    ours = ClipTokenizer(vocab, vocab_size=VOCAB_SIZE)
    ref = reference.SimpleTokenizer(str(vocab))
    rates: dict[str, list[float]] = {"ours_cold": [], "reference": [], "ours_repeat": []}
    chunk = max(1, len(texts) // args.repeats)
    for r in range(args.repeats):
        part = texts[r * chunk : (r + 1) * chunk]
        # Ours on texts it has not seen (word cache warm as in a running app, text cache cold).
        start = time.perf_counter()
        n = sum(len(ours.encode(t)) for t in part)
        rates["ours_cold"].append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        n = sum(len(ref.encode(t)) for t in part)
        rates["reference"].append(n / (time.perf_counter() - start))
        # The same texts again: the per-text cache answers.
        start = time.perf_counter()
        n = sum(len(ours.encode(t)) for t in part)
        rates["ours_repeat"].append(n / (time.perf_counter() - start))
    start = time.perf_counter()
    batch = ours(texts[:4096])
    batch_s = time.perf_counter() - start

    print(
        json.dumps(
            {
                "benchmark": "tokenizer",
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                },
                "vocab_size": VOCAB_SIZE,
                "fresh_process": fresh_process_construct(vocab),
                "construct_s_median": round(statistics.median(construct), 4),
                "reference_construct_s_median": round(statistics.median(reference_construct), 4),
                "tokens_per_s_median": {k: round(statistics.median(v)) for k, v in rates.items()},
                "speedup_vs_reference": round(
                    statistics.median(rates["ours_cold"]) / statistics.median(rates["reference"]),
                    2,
                ),
                "call_4096_texts_s": round(batch_s, 4),
                "batch_shape": list(batch.shape),
                "texts": len(texts),
            }
        )
    )


if __name__ == "__main__":
    main()
