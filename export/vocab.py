"""Find CLIP's BPE vocabulary in an installed package, without importing that package.

The vocabulary (``bpe_simple_vocab_16e6.txt.gz``, MIT-licensed by OpenAI) ships inside the
pip packages of OpenCLIP and OpenAI CLIP. Importing them would pull in torchvision, so we read
their installed file lists through ``importlib.metadata`` instead. The file is copied into each
exported model package, never into this repository.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from export import ExportError

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
# Distribution names on PyPI, in order of preference.
VOCAB_DISTRIBUTIONS = ("open_clip_torch", "openai-clip", "clip-anytorch")


def find_clip_vocab() -> Path:
    """The path of ``bpe_simple_vocab_16e6.txt.gz`` inside the first package that has it."""
    for name in VOCAB_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for entry in dist.files or ():
            if entry.name == VOCAB_NAME:
                path = Path(dist.locate_file(entry)).resolve()
                if path.is_file():
                    return path
    raise ExportError(
        f"CLIP's BPE vocabulary {VOCAB_NAME} was not found in any installed package "
        f"({', '.join(VOCAB_DISTRIBUTIONS)}); install one with "
        "`pip install --no-deps open_clip_torch` or pass --vocab FILE"
    )
