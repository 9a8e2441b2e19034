"""The two size steps of resources/installer/build.py on small real libraries, without a
bundle build: encoder stand-ins that still satisfy the loader, and the alignment check that
keeps strip from breaking a patchelf-edited library."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("cc") is None,
    reason="ELF libraries and a C compiler (cc) on Linux",
)

BUILD = Path(__file__).resolve().parents[1] / "resources" / "installer" / "build.py"


def _build_py():
    spec = importlib.util.spec_from_file_location("photofind_build_stubs", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cc(folder: Path, name: str, source: str, *extra: str) -> Path:
    (folder / f"{name}.c").write_text(source, encoding="utf-8")
    out = folder / f"{name}.so"
    command = ["cc", "-shared", "-fPIC", f"-Wl,-soname,{name}.so", "-o", str(out)]
    subprocess.run([*command, str(folder / f"{name}.c"), *extra], check=True)
    return out


@pytest.fixture
def encoder_and_user(tmp_path):
    encoder = _cc(
        tmp_path,
        "libenc",
        "const int enc_levels[4] = {10, 20, 30, 0};\n"
        "int enc_open(int x) { return x + 100; }\n"
        "int enc_unused(void) { return 5; }\n",
    )
    user = _cc(
        tmp_path,
        "libuser",
        "extern const int enc_levels[];\nint enc_open(int);\n"
        "int use(void) { return enc_levels[1] + enc_open(1); }\n",
        f"-L{tmp_path}",
        "-lenc",
        "-Wl,-rpath,$ORIGIN",
    )
    return encoder, user


def _use(user: Path) -> str:
    """``use()`` of ``user`` loaded with RTLD_NOW, as Python loads extensions, in a fresh
    process (a loaded soname would satisfy the next library that needs it)."""
    code = f"import ctypes, os; print(ctypes.CDLL({str(user)!r}, mode=os.RTLD_NOW).use())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def test_a_stub_defines_what_its_users_import_and_loads_with_rtld_now(encoder_and_user):
    build_py = _build_py()
    encoder, user = encoder_and_user
    assert _use(user) == str(20 + 101)
    source = build_py.stub_source(encoder, [user], "0")
    assert "enc_open" in source and "enc_levels[16]" in source and "enc_unused" not in source
    folder = encoder.parent / "stubbed"
    folder.mkdir()
    shutil.copy(user, folder / user.name)
    (folder / "stub.c").write_text(source, encoding="utf-8")
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-Wl,-soname,libenc.so", "-o", str(folder / encoder.name)]
        + [str(folder / "stub.c")],
        check=True,
    )
    assert _use(folder / user.name) == "0"  # the zeroed table plus the failure value
    # A library of that name without the symbols, which is what removing the DT_NEEDED entry
    # amounts to: the loader refuses the user (PyAV's libavcodec: "x264_levels").
    (folder / "stub.c").write_text("int other(void) { return 1; }\n", encoding="utf-8")
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-Wl,-soname,libenc.so", "-o", str(folder / encoder.name)]
        + [str(folder / "stub.c")],
        check=True,
    )
    assert "undefined symbol: enc_" in _use(folder / user.name)


def test_loads_aligned_rejects_a_segment_whose_offset_moved(tmp_path, encoder_and_user):
    build_py = _build_py()
    encoder, _ = encoder_and_user
    assert build_py.loads_aligned(encoder)
    data = bytearray(encoder.read_bytes())
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        kind, _, offset, vaddr = struct.unpack_from("<IIQQ", data, at)
        if kind == 1 and vaddr % 4096:  # a PT_LOAD that does not start a page
            struct.pack_into("<Q", data, at + 8, offset + 8)
            break
    else:
        pytest.skip("this linker put every PT_LOAD at a page start")
    broken = tmp_path / "broken.so"
    broken.write_bytes(bytes(data))
    assert not build_py.loads_aligned(broken)
    with pytest.raises(OSError):
        ctypes.CDLL(str(broken), mode=os.RTLD_NOW)
    assert not build_py.loads_aligned(tmp_path / "libenc.c")  # not ELF at all
