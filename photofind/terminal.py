"""Text for a terminal: file names that cannot forge lines or drive the screen.

A file name may hold any character but ``/`` and NUL: a newline (a forged second line in
``photofind list``), a carriage return (it overwrites the start of the line), an escape
sequence (``ESC [2J`` clears the screen; others retitle the window, make links or, on some
terminals, write the clipboard), a right-to-left override (the rest of the name reads
backwards). :func:`printable` writes each such character as a Python-style escape (``\\n``,
``\\r``, ``\\t``, ``\\x1b``, ``\\x7f``, ``\\u202e``), so the line shows what the name really
holds; a name that is not valid UTF-8 shows its undecodable bytes as ``\\xNN``.

The same escaping applies when stdout is a pipe or a file: ``photofind list | grep`` and a
log must not be forged either, and output that changed with its destination would surprise
scripts. The exact names are in the ``--json`` output (JSON escapes control characters
itself). A backslash stays as it is, so that Windows paths remain copyable; a name holding
a real backslash followed by ``n`` therefore reads like one holding a newline, and only
``--json`` tells the two apart.
"""

from __future__ import annotations

import unicodedata

# Bidirectional formatting characters: they reorder how the rest of the line is displayed.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Control characters (C0, DEL, C1), lone surrogates (undecodable bytes of a file name) and
# the line and paragraph separators, which some terminals and viewers break lines at.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_unsafe(char: str) -> bool:
    """Whether ``char`` could forge a line or change how the terminal shows the output."""
    return char in _BIDI_CONTROLS or unicodedata.category(char) in _UNSAFE_CATEGORIES


def printable(text: str) -> str:
    """``text`` with every character that could forge output written as an escape; the
    letters of every script, emoji, spaces and backslashes unchanged."""
    if text.isprintable():  # the common case: nothing to look at character by character
        return text
    return "".join(_escape(c) if is_unsafe(c) else c for c in text)
