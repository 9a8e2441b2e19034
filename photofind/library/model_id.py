"""The id that names the vectors a model makes: ``name@digest``.

The digest is the first 16 hex digits of the sha256 of the model's image encoder (of the
variant it runs: fp32 or int8), so two packages of one name with different weights, or one
package's two variants, never share vectors. Ids are stored as text (the
catalog's meta, the index sidecar); this type is the one place that text is read.
"""

from __future__ import annotations

from dataclasses import dataclass

DIGEST_LENGTH = 16


@dataclass(frozen=True)
class ModelId:
    name: str
    digest: str

    @classmethod
    def parse(cls, text: str) -> ModelId:
        """The id written as ``text``. A model name may itself hold "@", so the digest is
        what follows the last one; text without any "@" is a bare name (digest empty)."""
        name, sep, digest = text.rpartition("@")
        return cls(name, digest) if sep else cls(text, "")

    @classmethod
    def of(cls, model) -> ModelId:
        """The id of the vectors a loaded model makes: named by the image graph it runs,
        so its int8 and fp32 variants (photofind.clip.variants) never share vectors."""
        role = getattr(model, "visual_role", "visual")
        return cls(model.info.name, model.spec.files[role].sha256[:DIGEST_LENGTH])

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else self.name
