"""Hostile input at the query end: ONNX Runtime's telemetry, huge queries, silly numbers,
and file names that try to forge terminal output or inject rich text.

Each test reproduces the attack of issue 14 (items 11, 12, 15, 16, 17) against the real code:
real ONNX sessions in subprocesses with an empty home, the real tokenizer, the real CLI on a
real library, real Qt widgets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_SYNTHETIC = REPO / "resources" / "models" / "tiny-synthetic"
LAUNCHER = REPO / "resources" / "installer" / "launcher.py"

# -- 11: ONNX Runtime's telemetry -----------------------------------------------------------

# Where onnxruntime 1.31.1 puts its telemetry (measured with strace and find on an empty
# home): a device id and an events database under the user cache, a session file in $TMPDIR.
TELEMETRY_NAMES = {"deviceid", "onnxruntime.db", ".ses"}


def _sandbox_env(home: Path) -> dict[str, str]:
    """An environment built from nothing but an empty home: no inherited
    ORT_DISABLE_TELEMETRY (this test process has it, from importing photofind) and no CI
    variables (onnxruntime stays silent under CI, GITHUB_ACTIONS, ... which would make the
    control below pass for the wrong reason)."""
    dirs = {
        "HOME": home,
        "XDG_CONFIG_HOME": home / "config",
        "XDG_CACHE_HOME": home / "cache",
        "XDG_DATA_HOME": home / "data",
        "XDG_STATE_HOME": home / "state",
        "XDG_RUNTIME_DIR": home / "runtime",
        "TMPDIR": home / "tmp",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {key: str(path) for key, path in dirs.items()}
    env.update(
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        PYTHONPATH=str(REPO),
        QT_QPA_PLATFORM="offscreen",
        LANG="C.UTF-8",
    )
    return env


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def _run_in_sandbox(tmp_path: Path, argv: list[str]) -> set[Path]:
    """Run ``argv`` with an empty home; the files it left there."""
    home = tmp_path / "home"
    env = _sandbox_env(home)
    before = _files(home)
    done = subprocess.run(
        argv, env=env, cwd=home, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return _files(home) - before


def _telemetry(files: set[Path]) -> set[Path]:
    return {f for f in files if f.name in TELEMETRY_NAMES or "Microsoft" in f.parts}


# A real session of the shipped model, run through onnxruntime directly.
_RAW_SESSION = f"""
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession({str(TINY_SYNTHETIC / "textual.onnx")!r},
                         providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
ids = np.zeros([d if isinstance(d, int) else 1 for d in inp.shape],
               dtype=np.int32 if "int32" in inp.type else np.int64)
print(s.run(None, {{inp.name: ids}})[0].shape)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="Windows builds use ETW: no files to see")
def test_plain_onnxruntime_writes_telemetry_files_control(tmp_path):
    """The control: without photofind, onnxruntime does write them (else the tests below
    would prove nothing)."""
    written = _telemetry(_run_in_sandbox(tmp_path, [sys.executable, "-c", _RAW_SESSION]))
    names = {f.name for f in written}
    assert {"deviceid", "onnxruntime.db"} <= names, (
        f"this onnxruntime wrote no telemetry files ({written}): the tests of item 11 need "
        "a new control"
    )


_ENCODE = f"""
from photofind.clip import load_model
print(load_model({str(TINY_SYNTHETIC)!r}, provider="cpu").encode_texts(["a red circle"]).shape)
"""


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("import photofind.clip\n" + _ENCODE, id="import-photofind.clip"),
        pytest.param("import photofind.gui.app\n" + _ENCODE, id="gui-entry"),
        # The model store inspects graphs with onnxruntime before photofind.clip is loaded.
        pytest.param("import photofind.models.adapters\n" + _RAW_SESSION, id="model-store"),
    ],
)
def test_no_telemetry_file_from_photofind_sessions(tmp_path, entry):
    written = _run_in_sandbox(tmp_path, [sys.executable, "-c", entry])
    assert not _telemetry(written), written


def test_no_telemetry_file_from_the_cli(tmp_path):
    argv = [sys.executable, "-m", "photofind", "--library", str(tmp_path / "lib")]
    argv += ["--model", str(TINY_SYNTHETIC), "--provider", "cpu", "embed", "--text", "a cat"]
    written = _run_in_sandbox(tmp_path, argv)
    assert not _telemetry(written), written


def test_no_telemetry_file_from_the_bundle_launcher(tmp_path):
    """The bundle's self-test imports onnxruntime before photofind: only the launcher's own
    switch can come first there."""
    written = _run_in_sandbox(
        tmp_path, [sys.executable, str(LAUNCHER), "--bundle-selftest", "info"]
    )
    assert not _telemetry(written), written


def test_an_inherited_zero_does_not_turn_telemetry_back_on(tmp_path):
    code = "import os\nos.environ['ORT_DISABLE_TELEMETRY'] = '0'\nimport photofind\n" + _RAW_SESSION
    written = _run_in_sandbox(tmp_path, [sys.executable, "-c", code])
    assert not _telemetry(written), written


# -- 12: a huge word as a query --------------------------------------------------------------


def _vocabularies():
    """The shipped tiny vocabulary always; OpenAI's (48,894 merges, where BPE is slowest)
    when a package that carries it is installed."""
    import json

    manifest = json.loads((TINY_SYNTHETIC / "model.json").read_text())
    found = [
        pytest.param(
            (
                TINY_SYNTHETIC / manifest["files"]["vocab"]["path"],
                manifest["context_length"],
                manifest["vocab_size"],
            ),
            id="tiny-synthetic",
        )
    ]
    try:
        from export.vocab import find_clip_vocab

        found.append(pytest.param((find_clip_vocab(), 77, 49408), id="openai"))
    except Exception:  # noqa: BLE001 - no package with the vocabulary: the tiny one only
        pass
    return found


@pytest.fixture(scope="module", params=_vocabularies())
def tokenizer(request):
    from photofind.clip.tokenizer import ClipTokenizer

    path, context, vocab_size = request.param
    return ClipTokenizer(path, context_length=context, vocab_size=vocab_size)


def _word(length: int, alphabet: str, seed: int) -> str:
    import random

    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


class _BpeSpy:
    """Wraps one tokenizer's ``bpe`` (looked up on the instance by its caller) and records
    the length of every word it is given."""

    def __init__(self, tokenizer, monkeypatch):
        self.lengths: list[int] = []
        real = tokenizer.bpe

        def bpe(symbols):
            self.lengths.append(len(symbols))
            return real(symbols)

        monkeypatch.setattr(tokenizer, "bpe", bpe)


def test_a_130_kb_word_reaches_bpe_cut_to_the_context(tokenizer, monkeypatch):
    from photofind.clip.tokenizer import RAW_CHARS_PER_ID

    need = tokenizer.context_length - 2
    word = _word(130_000, "abcdefghijklmnopqrstuvwxyz", seed=1)
    spy = _BpeSpy(tokenizer, monkeypatch)
    ids = tokenizer(word)[0]
    # Unbounded, BPE got the 130,000 letters (47 s with OpenAI's vocabulary).
    assert spy.lengths and max(spy.lengths) <= need * RAW_CHARS_PER_ID
    # The same ids as the exact, unbounded encoding of a 3,000-letter prefix.
    exact = tokenizer.encode(word[:3000])[:need]
    assert ids.tolist() == [tokenizer.sot_id, *exact, tokenizer.eot_id]


def test_a_130_kb_text_of_distinct_words_stops_at_the_context(tokenizer, monkeypatch):
    need = tokenizer.context_length - 2
    words = [_word(9, "abcdefghijklmnopqrstuvwxyz", seed=i) for i in range(13_000)]
    text = " ".join(words)
    spy = _BpeSpy(tokenizer, monkeypatch)
    ids = tokenizer(text)[0]
    assert len(spy.lengths) <= need  # every word yields at least one id
    exact = tokenizer.encode(" ".join(words[:need]))[:need]
    assert ids.tolist() == [tokenizer.sot_id, *exact, tokenizer.eot_id]


@pytest.mark.parametrize(
    "alphabet",
    ["abcdefghijklmnopqrstuvwxyz", "ab", "photograph", "éàüßø", "日本語のテキスト", "aaaaaab"],
)
def test_the_bound_leaves_long_words_ids_unchanged(tokenizer, alphabet):
    """The cut words give the ids of the whole words, wherever the words merge a lot or
    little (the spare ids near the cut are dropped)."""
    need = tokenizer.context_length - 2
    for seed, length in enumerate((200, 700, 1500)):
        word = _word(length, alphabet, seed)
        cut = tokenizer(word)[0]
        exact = tokenizer.encode(word)[:need]
        assert cut[1 : len(exact) + 1].tolist() == exact, (alphabet, length)


def test_the_bound_leaves_ordinary_long_text_unchanged(tokenizer):
    need = tokenizer.context_length - 2
    text = "a big red circle at the top left of a striped background, " * 40 + "\n\t  " * 200
    text += "&amp;amp; " * 50 + "a small blue star"
    exact = tokenizer.encode(text)[:need]
    assert tokenizer(text)[0][1 : need + 1].tolist() == exact


# -- 15, 16: numbers in queries and options ---------------------------------------------------


@pytest.mark.parametrize(
    "query, message",
    [
        ("photo:99999999999999999999", "out of range; photo ids go up to 9223372036854775807"),
        ("photo:" + "9" * 5000, "out of range"),
        ("photo:²", "digits 0-9"),
        ("photo:١٢", "digits 0-9"),
        ("9" * 400 + "*a red circle", "weights go from 0.001 to 1000"),
        ("1001*a red circle", "weights go from 0.001 to 1000"),
        ("a red circle - 0.0001*blue", "weights go from 0.001 to 1000"),
    ],
)
def test_hostile_numbers_in_a_query_are_one_clear_error(query, message):
    from photofind.query import QueryError, parse_query

    with pytest.raises(QueryError, match=re.escape(message)) as caught:
        parse_query(query)
    text = str(caught.value)
    assert "\n" not in text and len(text) < 400


def test_weights_at_the_bounds_are_accepted():
    from photofind.query import parse_query

    terms = parse_query("1000*a red circle - 0.001*blue + photo:9223372036854775807").terms
    assert [t.weight for t in terms] == [1000.0, -0.001, 1.0]
    assert terms[2].value == 2**63 - 1


def test_queries_built_in_code_keep_finite_bounded_weights():
    from photofind.query import PHOTO, Query, QueryError, Term

    with pytest.raises(QueryError, match="not a finite number"):
        Query.text("a", weight=float("inf"))
    with pytest.raises(QueryError, match="not a finite number"):
        Term("text", "a", float("nan"))
    with pytest.raises(QueryError, match="larger than 1000"):
        Query.text("a") * 1e300
    with pytest.raises(QueryError, match="out of range"):
        Term(PHOTO, 10**20)


# -- a real library whose photos have hostile names ---------------------------------------

# name -> how the text output must show it. Any character but "/" and NUL can be in a name.
HOSTILE_NAMES = {
    "plain.jpg": "plain.jpg",
    "evil\n0.9999  forged.jpg": "evil\\n0.9999  forged.jpg",
    "clear\x1b[2J\x1b[Hscreen.png": "clear\\x1b[2J\\x1b[Hscreen.png",
    "bell\x07\rover.png": "bell\\x07\\rover.png",
    "tab\there\x7f\x85.jpg": "tab\\there\\x7f\\x85.jpg",
    "rtl\u202egpj.exe\u2028.png": "rtl\\u202egpj.exe\\u2028.png",
    "<h1>big<i><img src=x.png>.jpg": "<h1>big<i><img src=x.png>.jpg",
    "café 日本 👩‍👩‍👧.jpg": "café 日本 👩‍👩‍👧.jpg",
}
NOT_UTF8 = b"latin1-\xe9.png"  # a name from an old disk, not valid UTF-8


def _cli(library: Path, *argv) -> list[str]:
    return ["--library", str(library), "--model", str(TINY_SYNTHETIC), "--provider", "cpu"] + [
        str(a) for a in argv
    ]


@pytest.fixture(scope="module")
def hostile_library(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("these names (control characters, invalid UTF-8) need a Linux filesystem")
    from photofind.cli import main
    from photofind.synthetic import encode, generate

    root = tmp_path_factory.mktemp("hostile")
    photos = root / "photos"
    photos.mkdir()
    paths = []
    for i, name in enumerate([*HOSTILE_NAMES, os.fsdecode(NOT_UTF8)]):
        scene, image, _ = generate(7, i)
        path = photos / name
        path.write_bytes(encode(image, "png" if name.endswith(".png") else "jpg"))
        paths.append(path)
    library = root / "lib"
    assert main(_cli(library, "index", "--no-progress", photos)) == 0
    return library, photos, paths


def _assert_safe_lines(out: str, expected_lines: int) -> None:
    from photofind.terminal import is_unsafe

    lines = out.split("\n")
    assert lines[-1] == ""  # every line ended by print
    assert len(lines) - 1 == expected_lines, out
    unsafe = sorted({c for c in out.replace("\n", "") if is_unsafe(c)})
    assert not unsafe, unsafe


def _expected_shown(photos: Path) -> list[str]:
    return [f"{photos}/{shown}" for shown in HOSTILE_NAMES.values()] + [
        f"{photos}/latin1-\\xe9.png"
    ]


def test_list_escapes_hostile_names(hostile_library, capsys):
    from photofind.cli import main

    library, photos, paths = hostile_library
    assert main(_cli(library, "list")) == 0
    out = capsys.readouterr().out
    _assert_safe_lines(out, len(paths))
    for shown in _expected_shown(photos):
        assert f"indexed  {shown}\n" in out


def test_search_and_similar_escape_hostile_names(hostile_library, capsys):
    from photofind.cli import main

    library, photos, paths = hostile_library
    assert main(_cli(library, "search", "a red circle", "-n", 100, "--all")) == 0
    out = capsys.readouterr().out
    _assert_safe_lines(out, len(paths))
    shown = {line.split("  ", 1)[1] for line in out.splitlines()}
    assert shown == set(_expected_shown(photos))

    evil = photos / "evil\n0.9999  forged.jpg"
    assert main(_cli(library, "similar", evil, "-n", 100)) == 0
    out = capsys.readouterr().out
    _assert_safe_lines(out, len(paths))
    assert out.splitlines()[0].endswith(f"  {photos}/evil\\n0.9999  forged.jpg")


def test_json_keeps_the_exact_names(hostile_library, capsys):
    import json

    from photofind.cli import main

    library, photos, paths = hostile_library
    assert main(_cli(library, "list", "--json")) == 0
    listed = {item["path"] for item in json.loads(capsys.readouterr().out)}
    exact = {str(p) for p in paths[:-1]}
    assert exact <= listed
    assert main(_cli(library, "search", "a red circle", "-n", 100, "--all", "--json")) == 0
    found = {item["path"] for item in json.loads(capsys.readouterr().out)}
    assert exact <= found


def test_a_pipe_gets_the_escaped_lines_too(hostile_library):
    """Decided: the escaping does not depend on a terminal; a pipe into grep or a log must
    not be forged either (the exact names are in --json)."""
    library, photos, paths = hostile_library
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "photofind", *_cli(library, "list")],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not any(byte in done.stdout for byte in (b"\x1b", b"\r", b"\x07", b"\t", b"\x7f"))
    _assert_safe_lines(done.stdout.decode("utf-8"), len(paths))


def test_an_error_quoting_a_hostile_name_is_one_line(hostile_library, capsys):
    from photofind.cli import main

    library, photos, _ = hostile_library
    missing = photos / "gone\n\x1b[2Jphotofind: all fine.jpg"
    assert main(_cli(library, "similar", missing)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert "gone\\n\\x1b[2Jphotofind: all fine.jpg: no such picture file" in err


def test_printable_escapes_only_what_can_forge_output():
    from photofind.terminal import printable

    assert printable("a\nb\r\t\x1b[0m\x00\x7f\x9b") == "a\\nb\\r\\t\\x1b[0m\\x00\\x7f\\x9b"
    assert printable("\u202eabc\u2066\u2029") == "\\u202eabc\\u2066\\u2029"
    assert printable(os.fsdecode(b"\xff\xfe")) == "\\xff\\xfe"
    ordinary = "C:\\Users\\Åsa\\Фото\\日本 ١٢\u00a0👩‍👩‍👧 (copy).jpg"
    assert printable(ordinary) == ordinary


# -- 15, 16 on the real library: options, photo ids, weights, cancelling terms ---------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "photo:99999999999999999999"], "photo ids go up to 9223372036854775807"),
        (["search", "photo:²"], "digits 0-9"),
        (["search", "9" * 400 + "*a red circle"], "weights go from 0.001 to 1000"),
        (["search", "a red circle", "-n", "1e20"], "-n '1e20' is not a whole number"),
        (
            ["search", "a red circle", "-n", "99999999999999999999"],
            "-n 99999999999999999999 is too",
        ),
        (["search", "a red circle", "-n", "-3"], "-n '-3' is not a whole number"),
        (["similar", "x.jpg", "--offset", "1" + "0" * 30], "--offset 1000"),
    ],
)
def test_hostile_numbers_on_the_command_line_are_one_line(hostile_library, capsys, argv, message):
    from photofind.cli import main

    library, _, _ = hostile_library
    assert main(_cli(library, *argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("photofind: error: ") and err.count("\n") == 1, err
    assert message in err and "unexpected" not in err


def test_the_largest_counts_are_accepted(hostile_library, capsys):
    from photofind.cli import main

    library, _, paths = hostile_library
    argv = ["search", "a red circle", "-n", "1000000000", "--offset", "0", "--all"]
    assert main(_cli(library, *argv)) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(paths)


@pytest.fixture(scope="module")
def hostile_engine(hostile_library):
    from photofind.clip import load_model
    from photofind.library.library import Library
    from photofind.search import SearchEngine

    library = Library.open(hostile_library[0], readonly=True)
    yield SearchEngine(library, load_model(TINY_SYNTHETIC, provider="cpu"))
    library.close()


@pytest.mark.parametrize(
    "query", ["a red circle - a red circle", "2*a red circle - a red circle - a red circle"]
)
def test_terms_that_cancel_are_an_error_not_nan(hostile_engine, query):
    from photofind.search import SearchError

    with pytest.raises(SearchError, match="cancel out"):
        hostile_engine.search(query)


def test_extreme_weights_give_finite_scores(hostile_engine):
    import math

    for query in ("1000*a red circle + 0.001*a blue star", "a red circle - 999.9*a red circle"):
        results = hostile_engine.search(query, k=100, cutoff=False)
        assert len(results) > 0
        assert all(math.isfinite(r.score) for r in results), query


# -- 17 in the app: the preview's labels are plain text ---------------------------------------


def test_the_preview_shows_an_html_file_name_as_text(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel

    from photofind.gui.preview import PreviewDialog

    dialog = PreviewDialog()
    qtbot.addWidget(dialog)
    name = "/photos/<h1>big</h1><img src='x.png'><a href='http://x'>link</a>.jpg"
    dialog.show_loading(name)
    label = dialog.fields["path"]
    assert label.text() == name

    def laid_out(text_format) -> QLabel:
        reference = QLabel(name)
        qtbot.addWidget(reference)
        reference.setFont(label.font())
        reference.setWordWrap(True)
        reference.setTextFormat(text_format)
        return reference.heightForWidth(300)

    # Laid out at one width, the label takes the height of the plain text, not of the
    # heading, image and link the rich text would render.
    rich, plain = laid_out(Qt.TextFormat.RichText), laid_out(Qt.TextFormat.PlainText)
    assert rich != plain  # the two renderings really differ
    assert label.heightForWidth(300) == plain
    assert label.textFormat() == Qt.TextFormat.PlainText

    dialog.show_error(name, f"{name}: <b>cannot identify image file</b>")
    assert dialog.image.textFormat() == Qt.TextFormat.PlainText
