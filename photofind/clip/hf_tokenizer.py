"""A model's own tokenizer.json, read by the HF ``tokenizers`` library (the ``hf`` kind).

``tokenizers`` runs whatever the file describes: BPE (CLIP, Hugging Face's CLIP exports),
Unigram / SentencePiece (SigLIP, NLLB, XLM-R), WordPiece (BERT, LaBSE), with their
normalizers, pre-tokenizers and post-processors (the special tokens each model adds). Around
it, what Immich's machine-learning service does with the same files, so that a package
adapted from Immich gets the ids Immich gets: white space collapsed; SigLIP's
"canonicalize" (ASCII punctuation removed, lower case); an NLLB language token put directly
before the text; padding to the context length with the model's pad token, truncation to it
(the post-processor's special tokens included); and the attention mask of each row.

:func:`text_tokenizer` picks the kind model.json names; both kinds answer ``batch(texts,
language)`` with int64 ids and mask arrays [N, context_length].
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photofind.errors import ModelError

# tokenizer.json of XLM-R is 17 MB, NLLB's 32 MB (a 256k-piece vocabulary).
MAX_TOKENIZER_JSON = 64 << 20
# The work per text is bounded by the context: ordinary text holds fewer than one id per
# 64 characters nowhere (see tokenizer.RAW_CHARS_PER_ID), so the rest cannot reach the ids.
RAW_CHARS_PER_ID = 64
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean(text: str, canonicalize: bool) -> str:
    """White space collapsed; with ``canonicalize`` also ASCII punctuation gone, lower case."""
    text = " ".join(text.split())
    if canonicalize:
        text = text.translate(_PUNCTUATION).lower()
    return text


class HFTokenizer:
    """Text -> (ids, attention mask) through a tokenizer.json.

    ``spec``: the package's :class:`~photofind.clip.package.TokenizerSpec`.
    Thread-safe (``tokenizers`` encodes from any thread).
    """

    def __init__(self, path: str | Path, spec):
        from tokenizers import Tokenizer

        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise ModelError(f"cannot read the tokenizer {self.path}: {exc.strerror}") from exc
        if size > MAX_TOKENIZER_JSON:
            raise ModelError(
                f"the tokenizer {self.path} is {size:,} bytes, more than the "
                f"{MAX_TOKENIZER_JSON:,} allowed"
            )
        try:
            tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own untyped errors
            raise ModelError(
                f"{self.path} is not a tokenizer.json tokenizers reads: {exc}"
            ) from exc
        self.spec = spec
        self._context_length = spec.context_length
        pad_token, pad_id = self._pad(tokenizer, spec.pad)
        tokenizer.enable_padding(length=spec.context_length, pad_id=pad_id, pad_token=pad_token)
        tokenizer.enable_truncation(max_length=spec.context_length)
        self._tokenizer = tokenizer
        self.pad_id = pad_id

    def _pad(self, tokenizer, pad) -> tuple[str, int]:
        if pad is None:
            padding = tokenizer.padding
            if padding:
                return padding["pad_token"], padding["pad_id"]
            pad = 0
        if isinstance(pad, int):
            token = tokenizer.id_to_token(pad)
            if token is None:
                raise ModelError(f"{self.path}: the pad id {pad} is not in the vocabulary")
            return token, pad
        pad_id = tokenizer.token_to_id(pad)
        if pad_id is None:
            raise ModelError(f"{self.path}: the pad token {pad!r} is not in the vocabulary")
        return pad, pad_id

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def texts_for(self, texts: Sequence[str], language: str | None) -> list[str]:
        """The texts as the tokenizer gets them (cleaned, cut, prefixed)."""
        spec = self.spec
        prefix = spec.prefix_for(language)
        cut = self._context_length * RAW_CHARS_PER_ID
        out = []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"text must be a str, got {type(text).__name__}")
            out.append(prefix + clean(text[:cut], spec.canonicalize))
        return out

    def batch(self, texts: Sequence[str], language: str | None = None):
        """int64 ids and mask, both [N, context_length]."""
        if isinstance(texts, str):
            texts = [texts]
        # One text at a time: encode_batch would start tokenizers' thread pool, which a
        # later fork (subprocesses) must then disable, with a warning on stderr.
        encodings = [self._tokenizer.encode(text) for text in self.texts_for(texts, language)]
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask.reshape(ids.shape)

    def __call__(self, texts: Sequence[str], language: str | None = None) -> np.ndarray:
        return self.batch(texts, language)[0]

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, context_length={self._context_length})"


def text_tokenizer(spec, files: dict[str, Path]):
    """The tokenizer a model package names (``spec``: its ModelSpec; ``files``: verified
    paths by role)."""
    text = spec.text
    if text.kind == "hf":
        return HFTokenizer(files[text.file], text)
    from photofind.clip.tokenizer import ClipTokenizer

    return ClipTokenizer(
        files[text.file], context_length=text.context_length, vocab_size=spec.vocab_size
    )


def system_language() -> str | None:
    """The user's language as the environment names it ("vi_VN.UTF-8" -> "vi_VN"), or None."""
    import locale
    import os

    for key in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(key, "").split(":")[0].split(".")[0]
        if value and value not in ("C", "POSIX"):
            return value
    try:
        code = locale.getlocale()[0]
    except ValueError:
        return None
    return code or None
