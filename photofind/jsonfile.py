"""Reading a small JSON file that must hold one object, without trusting it.

A model's manifest and the settings file are read the same way: at most a bound's bytes
(a huge file is refused before it is parsed), UTF-8, JSON nested no deeper than Python's
recursion allows, and an object at the top. Each caller words the reason for its own user,
so :class:`JsonObjectError` says which rule broke (:attr:`JsonObjectError.problem`) and
the parser's detail, not a sentence.
"""

from __future__ import annotations

import json
import os

#: what :attr:`JsonObjectError.problem` may be
TOO_LARGE = "too large"
NOT_JSON = "not JSON"
TOO_DEEP = "nested too deeply"
NOT_OBJECT = "not an object"


class JsonObjectError(ValueError):
    """The file's bytes are not a JSON object of at most the bound's size."""

    def __init__(self, problem: str, detail: str = ""):
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem = problem
        self.detail = detail


def read_json_object(path: str | os.PathLike, max_bytes: int) -> dict:
    """The JSON object in ``path``, reading at most ``max_bytes`` + 1 bytes of it.

    Raises the :class:`OSError` of opening or reading the file as it is (a missing file is
    :class:`FileNotFoundError`), and :class:`JsonObjectError` when its content breaks a rule.
    """
    with open(path, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JsonObjectError(TOO_LARGE)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise JsonObjectError(NOT_JSON, str(exc)) from exc
    except RecursionError:
        raise JsonObjectError(TOO_DEEP) from None
    if not isinstance(data, dict):
        raise JsonObjectError(NOT_OBJECT)
    return data
