"""The bounded JSON-object reader that model manifests and the settings file share."""

from __future__ import annotations

import pytest

from photofind import jsonfile
from photofind.jsonfile import JsonObjectError, read_json_object


def test_an_object_within_the_bound_is_read(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": [1, 2], "b": "\\u00e9"}', encoding="utf-8")
    assert read_json_object(path, max_bytes=path.stat().st_size) == {"a": [1, 2], "b": "é"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a": "' + b"x" * 100 + b'"}', jsonfile.TOO_LARGE),
        (b'{"a": ', jsonfile.NOT_JSON),
        (b'{"a": "\xff"}', jsonfile.NOT_JSON),
        (b"[1, 2]", jsonfile.NOT_OBJECT),
        (b'"text"', jsonfile.NOT_OBJECT),
    ],
)
def test_each_broken_rule_is_named(tmp_path, content, problem):
    path = tmp_path / "a.json"
    path.write_bytes(content)
    with pytest.raises(JsonObjectError) as caught:
        read_json_object(path, max_bytes=64)
    assert caught.value.problem == problem


def test_nesting_past_the_recursion_limit_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(JsonObjectError) as caught:
        read_json_object(path, max_bytes=1 << 20)
    assert caught.value.problem == jsonfile.TOO_DEEP


def test_a_missing_file_is_the_os_error_for_the_caller_to_word(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json_object(tmp_path / "none.json", max_bytes=64)
