"""Learn a small CLIP-style BPE vocabulary from a caption corpus.

The tiny CLIP trained on generated captions needs a vocabulary of a few hundred merges, not
OpenAI's 48,894. This learns one over exactly the pre-tokenisation the runtime tokenizer
applies (its clean-up, split pattern, byte symbols and ``</w>`` mark, imported from
``photofind.clip.tokenizer``), and writes it in the format of OpenAI's
``bpe_simple_vocab_16e6.txt.gz``, so that ``ClipTokenizer(path, vocab_size=vocab_size_for(m))``
reads it with no special case.

Learning is classic BPE (Sennrich et al., 2016): count the adjacent symbol pairs over all
words weighted by word frequency, merge the most frequent pair everywhere, repeat. Ties go to
the smallest pair in string order, so the result depends only on the multiset of texts.

Needs neither torch nor numpy.
"""

from __future__ import annotations

import gzip
import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from photofind.clip.tokenizer import (
    NUM_BYTE_TOKENS,
    NUM_SPECIAL_TOKENS,
    VOCAB_HEADER,
    base_vocabulary,
    initial_word,
    merge_pair,
    split_words,
    to_symbols,
)

Pair = tuple[str, str]


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each pre-tokenised word (as byte symbols) occurs in ``texts``."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(to_symbols(word) for word in split_words(text))
    return counts


def learn_bpe(texts: Iterable[str], num_merges: int, *, min_count: int = 2) -> list[Pair]:
    """Up to ``num_merges`` merges, most useful first.

    Stops early when no pair occurs ``min_count`` times any more (by default a pair seen
    once is not worth a vocabulary row), or when every word is a single token.
    """
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = word_counts(texts)
    symbols = sorted(counts)
    words = [initial_word(s) for s in symbols]
    freqs = [counts[s] for s in symbols]

    pair_counts: dict[Pair, int] = defaultdict(int)
    # Which words may hold a pair; entries go stale as words change and are re-checked.
    holders: dict[Pair, set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freqs[index]
            holders[pair].add(index)

    # Max-heap by count, then smallest pair: a pair gets a fresh entry whenever its count
    # changes, and an entry whose count is no longer current is skipped when popped.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    tokens = set(base_vocabulary())
    merges: list[Pair] = []

    while heap and len(merges) < num_merges:
        negative, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if -negative != count:
            continue
        if count < min_count:
            break
        first, second = pair
        if first + second in tokens:
            # A safeguard (no corpus tried so far reaches it): the same string reached by
            # another split would give two ids one spelling, and the runtime's
            # lowest-rank-first merging could then part from this learner's.
            continue
        merges.append(pair)
        tokens.add(first + second)

        changed: set[Pair] = set()
        for index in sorted(holders.pop(pair, ())):
            word = words[index]
            old_pairs = list(zip(word, word[1:]))
            if pair not in old_pairs:
                continue
            freq = freqs[index]
            for old in old_pairs:
                pair_counts[old] -= freq
                changed.add(old)
            word = merge_pair(word, first, second)
            words[index] = word
            for new in zip(word, word[1:]):
                pair_counts[new] += freq
                holders[new].add(index)
                changed.add(new)
        for changed_pair in changed:
            current = pair_counts[changed_pair]
            if current > 0:
                heapq.heappush(heap, (-current, changed_pair))
            else:
                del pair_counts[changed_pair]
    return merges


def vocab_size_for(merges: Sequence[Pair]) -> int:
    """The model's vocabulary size (token embedding rows) for these merges."""
    return NUM_BYTE_TOKENS + len(merges) + NUM_SPECIAL_TOKENS


def write_vocab(merges: Sequence[Pair], path: str | Path) -> Path:
    """Write ``merges`` as a gzip'ed vocabulary file, byte-for-byte reproducible.

    Format of OpenAI's file: a ``#version: 0.2`` header line, then one ``a b`` merge per
    line. The gzip header's timestamp is zeroed so that the same merges always give the
    same file (model packages record its sha256).
    """
    path = Path(path)
    lines = [VOCAB_HEADER]
    for number, pair in enumerate(merges):
        if len(pair) != 2 or any(not s or len(s.split()) != 1 or s != s.strip() for s in pair):
            raise ValueError(
                f"merge {number} {pair!r} must be two non-empty symbols without white space"
            )
        lines.append(f"{pair[0]} {pair[1]}")
    data = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return path
