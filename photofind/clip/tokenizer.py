"""CLIP's byte-level BPE tokenizer (the ``clip-bpe`` kind of model.json), without torch.

It reproduces OpenAI's / OpenCLIP's ``SimpleTokenizer`` id for id (the tests compare it with
OpenCLIP's own code on thousands of strings): the same text clean-up (ftfy, HTML unescaped
twice, whitespace collapsed, lower case), the same split pattern, the same byte-to-symbol
table, the same merge rule and ``</w>`` end-of-word mark.

The merges run in the HF ``tokenizers`` BPE model (built here from the gzip'ed merges file;
identical ids on every word of the parity strings, and linear where the hand-written merge
loop it replaced was quadratic in a word's length). Two steps stay in Python because
``tokenizers`` cannot reproduce them: ftfy's clean-up and HTML unescaping have no
``tokenizers`` normalizer (Hugging Face's own CLIPTokenizerFast skips them, and differs from
the reference on "&amp;" and mojibake), and the split must use the ``regex`` module's
Unicode tables as the reference does: ``tokenizers``' Oniguruma tables disagree on some code
points (U+1D6A6 is a letter to ``regex``, not to Oniguruma: 2 of the 1,200 parity strings
split differently). Models that ship a tokenizer.json use :mod:`photofind.clip.hf_tokenizer`.

Id layout, for a vocabulary file with M merges in use:

* 0..255    the 256 byte symbols, in ``bytes_to_unicode`` order
* 256..511  the same symbols ending a word (``x</w>``)
* 512..     one id per merge, in file order
* 512+M     ``<|startoftext|>``;  512+M+1  ``<|endoftext|>``

so ``vocab_size = 512 + M + 2`` (49,408 for OpenAI's 48,894 merges). The reference code
hard-codes M; here M is ``vocab_size - 514`` when the caller knows the model's vocabulary
size, else every merge in the file, so one class serves OpenAI's vocabulary and the small
ones that ``export/bpe_learn.py`` learns.

One deliberate difference: the reference also turns the literal strings of its special
tokens, typed inside the text, into the special ids. A search query must not be able to
inject an end-of-text mid-sentence (the text tower pools at the end-of-text position), so
here such strings are ordinary text.
"""

from __future__ import annotations

import functools
import gzip
import html
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import ftfy
import numpy as np
import regex
from tokenizers.models import BPE

from photofind.errors import ModelError

SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
VOCAB_HEADER = "#version: 0.2"
# 256 byte symbols, each also with the end-of-word mark.
NUM_BYTE_TOKENS = 512
NUM_SPECIAL_TOKENS = 2

# CLIP's split: the contractions, runs of letters, single digits, runs of anything else that
# is not white space. IGNORECASE as in the reference: the text is lower-cased already, but
# case-insensitive matching still differs for a few letters (e.g. "'ſ" matches "'s").
WORD_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
)

# Per-word BPE results and per-text ids are cached, bounded so a long-running app that
# tokenises many distinct texts keeps flat memory.
WORD_CACHE_SIZE = 1 << 16
TEXT_CACHE_SIZE = 1 << 12
# Longer texts skip the per-text cache, so that it stays small in bytes too.
TEXT_CACHE_MAX_CHARS = 2000
# OpenAI's vocabulary (262,144 merges) is 3.2 MB of text; a gzip of 6 MB can hold 6 GB of it,
# so the text is unpacked no further than this.
MAX_VOCAB_TEXT_BYTES = 64 << 20
# The token batch is [N, context_length] int64: a model's claim must not size it unbounded.
MAX_CONTEXT_LENGTH = 4096

# The work per text is bounded by the context, not by the text: only the first
# context_length - 2 ids are used. BPE is quadratic in a word's length (a 130 KB word took
# 47 s, 8,000 letters 2.5 s), so a text is read up to RAW_CHARS_PER_ID characters per id it
# can use (an ordinary text holding fewer than 75 ids in 4,800 characters does not exist; one
# would be ~98% white space), and a longer word is encoded from a prefix of
# WORD_BYTES_PER_ID bytes per id still needed, doubled until it yields WORD_SPARE_IDS more
# ids than needed: the spare ones, next to the cut, are dropped. A cut changes the merges
# next to it only, so the ids kept are the whole word's (tests/test_hostile_queries.py
# compares both on generated long words).
RAW_CHARS_PER_ID = 64
WORD_BYTES_PER_ID = 8
WORD_SPARE_IDS = 8


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable symbol table of GPT-2 and CLIP.

    Printable Latin-1 bytes stand for themselves; the others (controls, space, ...) are moved
    to code points from 256 up, so that no BPE symbol is white space or a control character.
    The dict's order is the id order of the 256 byte tokens.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    code_points = printable[:]
    byte_values = printable[:]
    shift = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            code_points.append(256 + shift)
            shift += 1
    return {b: chr(c) for b, c in zip(byte_values, code_points)}


_BYTE_SYMBOLS = bytes_to_unicode()
_SYMBOL_BYTES = {symbol: b for b, symbol in _BYTE_SYMBOLS.items()}


def clean_text(text: str) -> str:
    """CLIP's text clean-up: ftfy, HTML entities unescaped twice, white space collapsed,
    lower case (the reference's ``basic_clean`` then ``whitespace_clean`` then ``lower``)."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


def split_words(text: str) -> list[str]:
    """The cleaned text cut into the pieces BPE works on, one at a time."""
    return WORD_PATTERN.findall(clean_text(text))


def to_symbols(word: str) -> str:
    """A piece's UTF-8 bytes written as BPE symbols (one character per byte)."""
    return "".join(_BYTE_SYMBOLS[b] for b in word.encode("utf-8"))


def initial_word(symbols: str) -> list[str]:
    """A word before any merge: one symbol per byte, the last one marked end-of-word."""
    return [*symbols[:-1], symbols[-1] + END_OF_WORD]


def merge_pair(word: list[str], first: str, second: str) -> list[str]:
    """Every occurrence of ``first second`` in ``word`` merged, left to right without
    overlap (the reference's rule, which a learner must share with the tokenizer)."""
    merged: list[str] = []
    i = 0
    n = len(word)
    while i < n:
        if i < n - 1 and word[i] == first and word[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def base_vocabulary() -> list[str]:
    """The 512 byte tokens in id order."""
    symbols = list(_BYTE_SYMBOLS.values())
    return symbols + [s + END_OF_WORD for s in symbols]


def read_merges(path: str | Path, count: int | None = None) -> list[tuple[str, str]]:
    """The first ``count`` merges of a gzip'ed BPE vocabulary file (all when None).

    Raises ModelError naming the file when it is missing, not gzip, not UTF-8, has no
    header, has a malformed line, uses a symbol no earlier line made, or has fewer than
    ``count`` merges.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise ModelError(f"cannot read the BPE vocabulary {path}: {exc.strerror or exc}") from exc
    with fh:
        try:
            with gzip.GzipFile(fileobj=fh) as unpacked:
                data = unpacked.read(MAX_VOCAB_TEXT_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            if not isinstance(exc, gzip.BadGzipFile) and getattr(exc, "errno", None):
                raise ModelError(
                    f"cannot read the BPE vocabulary {path}: {exc.strerror or exc}"
                ) from exc
            raise ModelError(
                f"the BPE vocabulary {path} is not a valid gzip file ({exc}); "
                "it may be truncated or corrupt"
            ) from exc
    if len(data) > MAX_VOCAB_TEXT_BYTES:
        raise ModelError(
            f"the BPE vocabulary {path} unpacks to more than {MAX_VOCAB_TEXT_BYTES:,} bytes "
            "(a CLIP vocabulary is about 3 MB); refused"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"the BPE vocabulary {path} is not UTF-8 text ({exc})") from exc

    # Split no further than needed: OpenAI's file carries 262,144 merges of which CLIP
    # uses the first 48,894.
    lines = text.split("\n", count + 1) if count is not None else text.split("\n")
    if "#version" not in lines[0]:
        raise ModelError(
            f"the BPE vocabulary {path} has no '#version' header line; "
            f"its first line is {lines[0][:80]!r}"
        )
    body = lines[1 : count + 1] if count is not None else lines[1:]
    # Trailing empty lines end the file; an empty line elsewhere is damage.
    while body and not body[-1].strip():
        body.pop()
    known = set(base_vocabulary())
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(body, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ModelError(
                f"the BPE vocabulary {path} line {number} should be two symbols "
                f"'a b', found {line[:80]!r}"
            )
        first, second = parts
        for part in parts:
            if part not in known:
                raise ModelError(
                    f"the BPE vocabulary {path} line {number} merges {part!r}, which is "
                    "neither a byte symbol nor the result of an earlier merge"
                )
        known.add(first + second)
        merges.append((first, second))
    if count is not None and len(merges) < count:
        raise ModelError(
            f"the BPE vocabulary {path} has {len(merges)} merges; the model's vocabulary "
            f"size needs {count} ({NUM_BYTE_TOKENS} + {count} + {NUM_SPECIAL_TOKENS})"
        )
    return merges


class ClipTokenizer:
    """Text -> CLIP token ids, as OpenCLIP's ``tokenize`` (truncating) produces them.

    ``vocab_path``: the gzip'ed merges file. ``vocab_size``: the model's vocabulary size
    (``token_embedding`` rows); when given, exactly ``vocab_size - 514`` merges are used and
    the file must have at least that many. Thread-safe (the caches are ``lru_cache``s).
    """

    def __init__(
        self,
        vocab_path: str | Path,
        context_length: int = 77,
        vocab_size: int | None = None,
    ):
        if context_length < 2:
            raise ValueError(
                f"context_length must be at least 2 (SOT and EOT), got {context_length}"
            )
        if context_length > MAX_CONTEXT_LENGTH:
            raise ModelError(
                f"context_length {context_length:,} is more than the {MAX_CONTEXT_LENGTH:,} "
                f"photofind's tokenizer allows (vocabulary file {vocab_path})"
            )
        self.vocab_path = Path(vocab_path)
        if vocab_size is not None:
            count = vocab_size - NUM_BYTE_TOKENS - NUM_SPECIAL_TOKENS
            if count < 0:
                raise ModelError(
                    f"vocab_size {vocab_size} is too small for a CLIP vocabulary: it needs at "
                    f"least {NUM_BYTE_TOKENS + NUM_SPECIAL_TOKENS} ids "
                    f"(bytes and the two special tokens); vocabulary file {self.vocab_path}"
                )
        else:
            count = None
        merges = read_merges(self.vocab_path, count)

        vocab = base_vocabulary()
        vocab.extend(first + second for first, second in merges)
        vocab.extend((SOT_TOKEN, EOT_TOKEN))
        self._tokens = vocab
        # Built as the reference builds it: should two merges spell the same string, the
        # later id wins (never the case in OpenAI's file, or in what bpe_learn writes).
        self._encoder = dict(zip(vocab, range(len(vocab))))
        self._num_merges = len(merges)
        # The merges run in HF tokenizers' BPE (Rust, linear in the word's length); the
        # clean-up and the split stay here, see the module docstring.
        self._bpe = BPE(
            vocab=self._encoder,
            merges=merges,
            end_of_word_suffix=END_OF_WORD,
            continuing_subword_prefix="",
            cache_capacity=0,
        )
        self._context_length = context_length
        self._sot_id = len(vocab) - 2
        self._eot_id = len(vocab) - 1

        self._word_ids = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._bpe_ids)
        self._text_ids = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(self._context_ids)

    # -- properties --------------------------------------------------------------------

    @property
    def sot_id(self) -> int:
        return self._sot_id

    @property
    def eot_id(self) -> int:
        return self._eot_id

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def num_merges(self) -> int:
        return self._num_merges

    def __repr__(self) -> str:
        return (
            f"ClipTokenizer({str(self.vocab_path)!r}, context_length={self._context_length}, "
            f"vocab_size={self.vocab_size})"
        )

    # -- encoding ----------------------------------------------------------------------

    def bpe(self, symbols: str) -> list[str]:
        """One word's BPE pieces (the merge of lowest rank first, as the reference), by the
        HF ``tokenizers`` BPE model."""
        return [token.value for token in self._bpe.tokenize(symbols)]

    def _bpe_ids(self, symbols: str) -> tuple[int, ...]:
        encoder = self._encoder
        return tuple(encoder[piece] for piece in self.bpe(symbols))

    def _encode_uncached(self, text: str) -> tuple[int, ...]:
        ids: list[int] = []
        for word in split_words(text):
            ids.extend(self._word_ids(to_symbols(word)))
        return tuple(ids)

    def _context_ids(self, text: str) -> tuple[int, ...]:
        """The first ``context_length - 2`` ids of ``text``, in work bounded by that count
        (see RAW_CHARS_PER_ID)."""
        need = self._context_length - 2
        ids: list[int] = []
        for match in WORD_PATTERN.finditer(clean_text(text[: need * RAW_CHARS_PER_ID])):
            if len(ids) >= need:
                break
            ids.extend(self._prefix_ids(to_symbols(match.group()), need - len(ids)))
        return tuple(ids[:need])

    def _prefix_ids(self, symbols: str, need: int) -> tuple[int, ...]:
        """At least the first ``need`` ids of one word (all of them for a short word)."""
        size = (need + WORD_SPARE_IDS) * WORD_BYTES_PER_ID
        while size < len(symbols):
            ids = self._word_ids(symbols[:size])
            if len(ids) >= need + WORD_SPARE_IDS:
                return ids[:need]
            size *= 2
        return self._word_ids(symbols)

    def encode(self, text: str) -> list[int]:
        """The BPE ids of ``text``, without start/end tokens and without truncation: the
        whole text's work, however long (the model's input goes through ``__call__``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(self._encode_uncached(text))

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """int64 [N, context_length]: SOT, ids, EOT, zero padding. Text too long for the
        context is cut, keeping EOT as the last token (OpenCLIP's truncating tokenize)."""
        if isinstance(texts, str):
            texts = [texts]
        length = self._context_length
        result = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text must be a str, got {type(text).__name__}")
            ids = (
                self._text_ids(text)
                if len(text) <= TEXT_CACHE_MAX_CHARS
                else self._context_ids(text)
            )
            result[row, 0] = self._sot_id
            result[row, 1 : len(ids) + 1] = ids
            result[row, len(ids) + 1] = self._eot_id
        return result

    def batch(self, texts: str | Sequence[str], language: str | None = None):
        """int64 ids [N, context_length] and their mask (1 up to end-of-text, 0 after);
        ``language`` is ignored (CLIP's BPE takes no language token)."""
        ids = self(texts)
        mask = (np.arange(ids.shape[1]) <= ids.argmax(axis=1)[:, None]).astype(np.int64)
        return ids, mask

    # -- decoding ----------------------------------------------------------------------

    @functools.cached_property
    def _id_bytes(self) -> list[bytes]:
        # Built on first use: decoding is rare next to encoding, and this keeps the
        # constructor fast.
        table = []
        for token in self._tokens:
            if token in (SOT_TOKEN, EOT_TOKEN):
                table.append(token.encode("ascii"))
                continue
            end = token.endswith(END_OF_WORD)
            body = token[: -len(END_OF_WORD)] if end else token
            table.append(bytes(_SYMBOL_BYTES[c] for c in body) + (b" " if end else b""))
        return table

    def decode(self, ids: Iterable[int]) -> str:
        """Text back from ids: words separated by single spaces (the cleaned text's pieces
        joined with spaces), special tokens written out, invalid UTF-8 replaced by U+FFFD."""
        table = self._id_bytes
        size = len(table)
        parts = []
        for token_id in ids:
            index = int(token_id)
            if not 0 <= index < size:
                raise ValueError(f"token id {index} is outside the vocabulary (0..{size - 1})")
            parts.append(table[index])
        return b"".join(parts).decode("utf-8", errors="replace").rstrip(" ")
