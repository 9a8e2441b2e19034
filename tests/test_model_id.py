"""ModelId: the one reader of the ``name@digest`` text the catalog and the index store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from photofind.library.analysers import model_id
from photofind.library.model_id import ModelId


@pytest.mark.parametrize(
    ("text", "name", "digest"),
    [
        ("tiny-synthetic@0123456789abcdef", "tiny-synthetic", "0123456789abcdef"),
        # a name may hold "@" itself: the digest follows the last one
        ("me@home@0123456789abcdef", "me@home", "0123456789abcdef"),
        ("bare-name", "bare-name", ""),
        ("", "", ""),
    ],
)
def test_parse_splits_at_the_last_at_sign_and_writes_back_the_same_text(text, name, digest):
    mid = ModelId.parse(text)
    assert (mid.name, mid.digest) == (name, digest)
    assert str(mid) == text


def test_the_id_of_a_model_is_its_name_and_the_start_of_its_image_encoders_hash():
    visual = SimpleNamespace(sha256="ab" * 32)
    model = SimpleNamespace(
        info=SimpleNamespace(name="m@x"),
        spec=SimpleNamespace(name="m@x", files={"visual": visual}),
    )
    assert ModelId.of(model) == ModelId("m@x", "ab" * 8)
    assert ModelId.parse(model_id(model)) == ModelId.of(model)
