"""The installed Qt bindings keep reference counts right (issue 13: the crash).

PySide6-Essentials 6.12.0 on Python 3.11 drops a reference to ``None`` on every Qt call that
returns nothing, and to ``True`` on every ``Signal.emit``; the app aborted with
"none_dealloc" on clicking Add… and on Ctrl+Q. The check itself lives in
resources/installer/qt_refcount.py, so that the built bundle runs the same one
(``photofind --bundle-selftest refcount``, tests/test_bundle.py) and build.py refuses to
freeze a PySide6 that fails it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

INSTALLER = Path(__file__).resolve().parents[1] / "resources" / "installer"


def _load_check():
    spec = importlib.util.spec_from_file_location("qt_refcount", INSTALLER / "qt_refcount.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qt_refcount = _load_check()


@pytest.fixture(scope="module")
def report(qapp):
    return qt_refcount.check()


def test_thousands_of_each_kind_of_qt_call_the_app_makes(report):
    assert report["calls_per_kind"] >= 2000
    assert report["kinds"] >= 30


def _failures(report, names) -> list[str]:
    """The report's failures ("KIND: OBJECT -N after M calls") of the objects ``names``."""
    return [f for f in report["failed"] if f.rsplit(": ", 1)[1].split()[0] in names]


def test_qt_calls_keep_none_true_and_false_alive(report):
    mortal = [n for n in qt_refcount.SINGLETONS if n not in report["immortal"]]
    if not mortal:
        pytest.skip(
            "None is immortal on this Python (PEP 683), and so are True and False: a lost "
            "reference can neither be seen in their counts nor free them (the objects handed "
            "to Qt are still checked)"
        )
    assert set(mortal) <= set(report["watched"])
    assert not _failures(report, mortal), qt_refcount.describe_failure(report)


def test_qt_calls_keep_the_objects_handed_to_them(report):
    """Strings shown, payloads emitted, slots connected: mortal on every Python."""
    handed = {"payload", "slot", "text"}
    assert handed <= set(report["watched"])
    assert not _failures(report, handed), qt_refcount.describe_failure(report)


def test_the_check_fails_on_a_call_that_loses_a_reference(qapp):
    """The check can fail: a call that drops one reference per call, as 6.12.0 does."""
    victim = object()
    held = [victim] * 1000  # so the dropped references never free it
    report = qt_refcount.check(
        calls=500,
        extra={"broken call": qt_refcount.lose_a_reference(victim)},
        watch={"victim": victim},
    )
    assert not report["ok"]
    # (Only the broken call: with bindings that lose references, their kinds fail too.)
    assert _failures(report, {"victim"}) == ["broken call: victim -100 after 100 calls"]
    # What the broken call dropped was given back: the process goes on sound.
    assert sys.getrefcount(victim) == 1000 + 2
    del held


def test_the_check_fails_on_a_call_that_loses_none(qapp):
    if qt_refcount.none_is_immortal():
        pytest.skip("None is immortal on this Python (PEP 683): its count cannot fall")
    report = qt_refcount.check(calls=500, extra={"broken call": qt_refcount.lose_a_reference(None)})
    assert "broken call: None -100 after 100 calls" in report["failed"]
    assert report["none_drift"]["broken call"] == -100


def test_immortality_is_detected_by_behaviour():
    assert qt_refcount.is_immortal(None) == (sys.getrefcount(None) > 1 << 30)
    assert not qt_refcount.is_immortal(object())
