"""Learning a small BPE vocabulary, writing it, and reading it back with the runtime tokenizer."""

from __future__ import annotations

import gzip
import hashlib
import random

import pytest

from export.bpe_learn import learn_bpe, vocab_size_for, word_counts, write_vocab
from photofind.clip.tokenizer import (
    ClipTokenizer,
    initial_word,
    merge_pair,
    read_merges,
    split_words,
    to_symbols,
)

SIZES = ["small", "large", "tiny", "big"]
COLOURS = ["red", "green", "blue", "yellow", "white", "black", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star", "cross"]
PLACES = ["top left", "top right", "bottom left", "bottom right", "centre", "middle"]


def captions(seed: int = 7, count: int = 1500) -> list[str]:
    """Captions in the style of the tiny CLIP's generated data set."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        size, colour, shape = rng.choice(SIZES), rng.choice(COLOURS), rng.choice(SHAPES)
        place, background = rng.choice(PLACES), rng.choice(COLOURS)
        template = rng.choice(
            [
                "a {size} {colour} {shape} at the {place} on a {background} background",
                "A {colour} {shape} in the {place}, {background} background.",
                "{size} {shape} ({colour}) near the {place}; background: {background}",
            ]
        )
        out.append(
            template.format(
                size=size, colour=colour, shape=shape, place=place, background=background
            )
        )
    return out


CORPUS = captions()
UNSEEN = [
    "a zebra-striped hexagon at the top of a grey background",
    "Ünïcödé façade — 東京 😀👍🏽 ✓ 42 &amp; co",
    "It'S A MAGENTA OCTAGON!!! (or is it?)",
    "",
]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    merges = learn_bpe(CORPUS, 400)
    path = write_vocab(merges, tmp_path_factory.mktemp("vocab") / "bpe_tiny.txt.gz")
    tokenizer = ClipTokenizer(path, vocab_size=vocab_size_for(merges))
    return merges, path, tokenizer


def test_file_format_is_openais(learned):
    merges, path, _ = learned
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    assert lines[0] == "#version: 0.2"
    assert lines[-1] == ""  # ends with a newline, as OpenAI's file
    assert [tuple(line.split(" ")) for line in lines[1:-1]] == merges
    assert read_merges(path) == merges


def test_tokenizer_loads_the_learned_vocab(learned):
    merges, _, tokenizer = learned
    assert 50 < len(merges) <= 400
    assert tokenizer.vocab_size == vocab_size_for(merges) == 512 + len(merges) + 2
    assert (tokenizer.sot_id, tokenizer.eot_id) == (512 + len(merges), 513 + len(merges))
    rows = tokenizer(CORPUS[:10])
    assert rows.shape == (10, 77)
    assert rows.max() == tokenizer.eot_id


@pytest.mark.parametrize("text", CORPUS[:50] + UNSEEN)
def test_round_trip(learned, text):
    _, _, tokenizer = learned
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.sot_id for i in ids)
    assert tokenizer.decode(ids) == " ".join(split_words(text))


def test_unseen_characters_fall_back_to_bytes(learned):
    _, _, tokenizer = learned
    # No merge covers these, so each UTF-8 byte is a token of its own (ids below 512).
    ids = tokenizer.encode("東京")
    assert len(ids) == len("東京".encode()) and max(ids) < 512


def test_frequent_words_become_single_tokens(learned):
    _, _, tokenizer = learned
    for word in ["circle", "background", "small", "red", "the", "square", "triangle"]:
        ids = tokenizer.encode(word)
        assert len(ids) == 1, f"{word!r} -> {ids}"
        assert tokenizer.decode(ids) == word
    # Whole captions get short: about one token per word or punctuation mark.
    caption = CORPUS[0]
    assert len(tokenizer.encode(caption)) == len(split_words(caption))


def test_tokenizer_reproduces_the_learners_segmentation(learned):
    # The runtime merges lowest rank first inside each word; the learner applied merges one
    # after another over all words. They must agree, on seen and unseen words alike.
    merges, _, tokenizer = learned
    words = set(word_counts(CORPUS)) | set(word_counts(UNSEEN))
    for symbols in sorted(words):
        sequential = initial_word(symbols)
        for first, second in merges:
            sequential = merge_pair(sequential, first, second)
        assert tokenizer.bpe(symbols) == sequential


def test_merge_results_are_distinct(learned):
    merges, _, _ = learned
    spelled = ["".join(pair) for pair in merges]
    assert len(set(spelled)) == len(spelled)


def test_deterministic_and_order_independent(learned, tmp_path):
    merges, path, _ = learned
    shuffled = CORPUS[:]
    random.Random(1).shuffle(shuffled)
    assert learn_bpe(shuffled, 400) == merges
    again = write_vocab(learn_bpe(CORPUS, 400), tmp_path / "again.txt.gz")
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_merges_are_a_prefix_of_longer_runs(learned):
    merges, _, _ = learned
    assert learn_bpe(CORPUS, 100) == merges[:100]


def test_ties_go_to_the_smallest_pair():
    assert learn_bpe(["cd ab"], 1, min_count=1) == [("a", "b</w>")]
    assert learn_bpe(["cd ab"], 2, min_count=1) == [("a", "b</w>"), ("c", "d</w>")]


def test_most_frequent_pair_first():
    assert learn_bpe(["ab", "cd", "cd"], 1, min_count=1) == [("c", "d</w>")]


def test_stops_when_nothing_is_left_to_merge():
    assert learn_bpe(["ab ab"], 100) == [("a", "b</w>")]
    assert learn_bpe(["ab cd"], 100) == []  # each pair seen once: below min_count=2
    assert learn_bpe(["ab cd"], 100, min_count=1) == [("a", "b</w>"), ("c", "d</w>")]
    assert learn_bpe([], 10) == []
    assert learn_bpe(CORPUS, 0) == []


def test_learning_uses_the_tokenizers_clean_up():
    # Upper case, HTML entities and white space are cleaned before counting.
    counts = word_counts(["Red &amp; BLUE\n\tred"])
    assert counts == {"red": 2, "&": 1, "blue": 1}
    assert to_symbols(" ") == "Ġ"  # bytes outside printable Latin-1 are moved above 255


def test_empty_vocab_tokenizes_by_bytes(tmp_path):
    path = write_vocab([], tmp_path / "empty.txt.gz")
    tokenizer = ClipTokenizer(path, vocab_size=vocab_size_for([]))
    assert tokenizer.vocab_size == 514
    assert tokenizer.encode("ab") == [64, 256 + 65]
    assert tokenizer.decode(tokenizer.encode("ab c")) == "ab c"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_merges"):
        learn_bpe(CORPUS, -1)
    with pytest.raises(ValueError, match="min_count"):
        learn_bpe(CORPUS, 1, min_count=0)
    with pytest.raises(ValueError, match="white space"):
        write_vocab([("a b", "c")], tmp_path / "bad.txt.gz")
    assert not (tmp_path / "bad.txt.gz").exists()


def naive_learn(texts, num_merges, min_count=2):
    """Recount every pair at every step: slow, obviously right."""
    counts = word_counts(texts)
    words = {s: initial_word(s) for s in counts}
    tokens = {t for w in words.values() for t in w}
    merges = []
    while len(merges) < num_merges:
        pairs: dict = {}
        for symbols, word in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] = pairs.get(pair, 0) + counts[symbols]
        candidates = [
            (-c, p) for p, c in pairs.items() if c >= min_count and p[0] + p[1] not in tokens
        ]
        if not candidates:
            break
        _, best = min(candidates)
        merges.append(best)
        tokens.add(best[0] + best[1])
        words = {s: merge_pair(w, *best) for s, w in words.items()}
    return merges


@pytest.mark.parametrize("seed", range(6))
def test_incremental_counts_match_recounting(seed):
    rng = random.Random(seed)
    letters = "aabbbcde" if seed % 2 else "abcdefghij"
    texts = [
        " ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 7))) for _ in range(8))
        for _ in range(60)
    ]
    assert learn_bpe(texts, 150, min_count=1 + seed % 3) == naive_learn(texts, 150, 1 + seed % 3)
