"""Build the photofind desktop bundle and its Linux packages.

    python resources/installer/build.py [--model DIR ...] [--gpu] [--dist DIR]

writes, from the active virtual environment (``pip install -e '.[dev]'``; PyInstaller is in
the dev extra):

    dist/photofind/                              the one-folder app; launcher dist/photofind/photofind
    dist/photofind-VERSION-linux-x86_64.tar.gz   that folder, for unpacking anywhere
    dist/photofind_VERSION_amd64.deb             /opt/photofind, /usr/bin/photofind, menu entry, icons
    dist/photofind-build.json                    what was built from what (the tests' freshness check)

The CPU bundle leaves out onnxruntime-gpu's CUDA and TensorRT providers (270 MB that a CPU
build never loads); ``--gpu`` keeps them, and the user's NVIDIA driver plus the CUDA 12 and
cuDNN 9 runtime libraries decide whether they work (the app reports the provider it got).
``--model DIR`` adds a model package (for example a ViT-B/32 export) beside the bundled
tiny-synthetic one. On Windows and macOS this makes dist/photofind/ (and photofind.app) only:
see resources/installer/README.md for the Inno Setup and .dmg steps.

On Linux it then puts stubs in place of the video/HEIF encoders photofind never runs and
strips the libraries' debug sections (334 MB instead of 427 with the face models; the
README's size table); that needs a C compiler (cc) and binutils (strip, nm, readelf, objdump).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SPEC = HERE / "photofind.spec"
STAMP = "photofind-build.json"
#: Installed packages whose version changes what is frozen.
FROZEN_DISTRIBUTIONS = (
    "pyinstaller",
    "PySide6-Essentials",
    "onnxruntime-gpu",
    "onnxruntime",
    "numpy",
    "pillow",
    "hnswlib",
    # Their libraries are stubbed (ENCODER_STUBS) or stripped after the freeze.
    "av",
    "pillow_heif",
    "rawpy",
    "pillow-jxl-plugin",
    "dlib-bin",
)
#: What the .deb needs from the system: the bundle carries Python, Qt, onnxruntime and
#: numpy, but not the X11/Wayland client libraries and GL that Qt's platform plugins load.
DEB_DEPENDS = (
    "libgl1, libegl1, libfontconfig1, libfreetype6, libglib2.0-0, "
    "libdbus-1-3, libxkbcommon0, libxkbcommon-x11-0, libx11-xcb1, libxcb-cursor0, "
    "libxcb-icccm4, libxcb-keysyms1, libxcb-shape0, libxcb-xkb1, libwayland-client0, "
    "libwayland-cursor0, libwayland-egl1"
)


def version() -> str:
    text = (REPO / "photofind" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise SystemExit('build.py: no __version__ = "..." line in photofind/__init__.py')
    return match.group(1)


def _files(root: Path):
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def fingerprint(models: list[Path], gpu: bool) -> str:
    """A hash of every input of the bundle: sources, models, options and frozen packages."""
    digest = hashlib.sha256()
    roots = [REPO / "photofind", HERE, REPO / "resources" / "models", *models]
    for root in roots:
        for path in _files(root):
            stat = path.stat()
            # Sources are small: hash them; model weights are big: size and mtime suffice.
            small = stat.st_size < 1 << 20
            digest.update(f"{path}\0{stat.st_size}\0{0 if small else stat.st_mtime_ns}".encode())
            if small:
                digest.update(path.read_bytes())
    for name in FROZEN_DISTRIBUTIONS:
        try:
            digest.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name}=-".encode())
    digest.update(f"gpu={gpu} python={sys.version}".encode())
    return digest.hexdigest()


def artefact_names(ver: str) -> dict[str, str]:
    return {
        "app": "photofind",
        "tar": f"photofind-{ver}-linux-x86_64.tar.gz",
        "deb": f"photofind_{ver}_amd64.deb",
    }


def run_pyinstaller(dist: Path, work: Path, models: list[Path], gpu: bool) -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise SystemExit(
            "build.py: PyInstaller is missing; install the dev extra: pip install -e '.[dev]'"
        ) from None
    spec_args = (["--gpu"] if gpu else []) + [a for m in models for a in ("--model", str(m))]
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(SPEC),
        "--noconfirm",
        "--log-level=WARN",
        f"--distpath={dist}",
        f"--workpath={work}",
        "--",
        *spec_args,
    ]
    subprocess.run(command, check=True, cwd=REPO)


def _elf_files(app: Path) -> list[Path]:
    """The shared objects of the bundle (PyInstaller's library aliases are links: skipped)."""
    return [p for p in sorted(app.rglob("*.so*")) if p.is_file() and not p.is_symlink()]


def _has_debug_info(path: Path) -> bool:
    out = subprocess.run(
        ["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return ".debug_" in out


def loads_aligned(path: Path) -> bool:
    """Whether every PT_LOAD segment of the ELF file ``path`` has its file offset and its
    address congruent modulo its alignment and the page, which the dynamic loader demands.

    binutils' strip rewrites the layout of a library that auditwheel's patchelf edited
    (manylinux wheels' ``*.libs``, their extension modules) into one that glibc refuses:
    "ELF load command address/offset not page-aligned" (numpy's OpenBLAS, measured).
    """
    import struct

    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit little-endian only
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, _, offset, vaddr, _, _, _, align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize
        )
        if kind == 1 and any((vaddr - offset) % m for m in {4096, max(align, 1)}):
            return False
    return True


def strip_debug_info(app: Path, work: Path) -> int:
    """Drop the debug sections (never the symbols) of the shared objects of the bundle that
    have them; returns the bytes saved (0 where binutils' strip is missing).

    The wheels and Python ship 67 MB of DWARF that nobody at a user's desk reads (measured:
    PyAV's Cython modules 26 MB, libpython 16.6, hnswlib 8.0, Pillow's _imaging 2.6): the dynamic symbols stay, so
    the libraries link and load as before. A stripped copy replaces the original only where
    its segments still load (:func:`loads_aligned`); otherwise the original stays.
    """
    tool = shutil.which("strip")
    if tool is None or not sys.platform.startswith("linux"):
        return 0
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "stripped.so"
    saved = 0
    for module in _elf_files(app):
        if not _has_debug_info(module):
            continue
        subprocess.run([tool, "--strip-debug", "-o", str(copy), str(module)], check=True)
        if loads_aligned(copy) and copy.stat().st_size < module.stat().st_size:
            saved += module.stat().st_size - copy.stat().st_size
            shutil.copymode(module, copy)
            copy.replace(module)
    return saved


#: Video and HEIF encoders that FFmpeg (PyAV's av.libs) and libheif (pillow_heif.libs) are
#: linked with, and the value each stub function returns so the caller sees a failure:
#: photofind only decodes, so these 53 MB (x265 twice, 21 + 23 MB; SVT-AV1 7; x264 2) are
#: replaced by stubs of a few kB with the same file name and soname.
ENCODER_STUBS = {
    # folder, file name prefix: return value of every stubbed function
    ("av.libs", "libx265-"): "0",  # x265_api_get_N: NULL, FFmpeg says "Could not get API"
    ("av.libs", "libx264-"): "0",  # x264_encoder_open_N: NULL, "Error opening the encoder"
    ("av.libs", "libSvtAv1Enc-"): "(long)(int)0x80001000",  # EB_ErrorInsufficientResources
    ("pillow_heif.libs", "libx265-"): "0",  # libheif: "Unsupported bit depth" on encode
}


def _symbols(path: Path, *, defined: bool) -> dict[str, tuple[str, int]]:
    """Dynamic symbols of ``path``: name -> (nm type letter, size); undefined ones when
    ``defined`` is false."""
    flag = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(
        ["nm", "-D", "-S", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:  # value size type name
            found[parts[3].split("@")[0]] = (parts[2], int(parts[1], 16))
        elif len(parts) == 3:  # value type name (no size)
            found[parts[2].split("@")[0]] = (parts[1], 0)
        elif len(parts) == 2:  # U name
            found[parts[1].split("@")[0]] = (parts[0], 0)
    return found


def _needed(path: Path) -> list[str]:
    out = subprocess.run(
        ["objdump", "-p", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def stub_source(library: Path, users: list[Path], failure: str) -> str:
    """C source of a stand-in for ``library``: every symbol that ``users`` import from it,
    functions returning ``failure`` and zero-filled data of the original's size."""
    defined = _symbols(library, defined=True)
    wanted = set()
    for user in users:
        wanted |= set(_symbols(user, defined=False)) & set(defined)
    lines = [f"/* Stand-in for {library.name}: photofind never encodes with it. */"]
    for name in sorted(wanted):
        kind, size = defined[name]
        if kind in "TtWwi":
            lines.append(f"long {name}(void) {{ return {failure}; }}")
        else:  # data (x264_levels: a table that ends at its zero entry)
            lines.append(f"unsigned char {name}[{max(size, 8)}];")
    return "\n".join(lines) + "\n"


def stub_encoders(app: Path, work: Path) -> dict[str, int]:
    """Replace the :data:`ENCODER_STUBS` libraries of the bundle by stubs; returns the
    bytes saved per library (nothing off Linux). Needs a C compiler (cc)."""
    if not sys.platform.startswith("linux"):
        return {}
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit(
            "build.py: a C compiler (cc) is needed to build the encoder stubs "
            "(apt-get install gcc); without them the bundle carries 53 MB of encoders"
        )
    internal = app / "_internal"
    libraries = _elf_files(internal)
    saved = {}
    for (folder, prefix), failure in ENCODER_STUBS.items():
        for library in sorted((internal / folder).glob(prefix + "*")):
            users = [p for p in libraries if library.name in _needed(p)]
            source = work / f"stub-{library.name}.c"
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(stub_source(library, users, failure), encoding="utf-8")
            built = work / f"stub-{library.name}"
            subprocess.run(
                [
                    compiler,
                    "-shared",
                    "-fPIC",
                    "-O2",
                    "-s",
                    f"-Wl,-soname,{library.name}",
                    "-o",
                    str(built),
                    str(source),
                ],
                check=True,
            )
            before = library.stat().st_size
            shutil.copy(built, library)
            saved[f"{folder}/{library.name}"] = before - library.stat().st_size
    return saved


def check_qt_bindings() -> dict:
    """Refuse to freeze a PySide6 that loses references (qt_refcount.py; 6.12.0 on Python
    3.11 drops one to None on every void Qt call and the app aborts minutes in)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    command = [sys.executable, str(HERE / "qt_refcount.py")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = None
    if done.returncode != 0 or not report or not report.get("ok"):
        detail = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        # From the report's first line on (Qt's own warnings come before it).
        first = [i for i, line in enumerate(detail) if line.startswith("PySide6 ")]
        detail = detail[first[0] :] if first else detail
        if len(detail) > 8:
            detail = [*detail[:6], f"  ... {len(detail) - 7} more", detail[-1]]
        raise SystemExit(
            "build.py: the Qt bindings of this environment fail the reference-count check "
            "(resources/installer/qt_refcount.py), so the bundle would crash:\n" + "\n".join(detail)
        )
    return {k: report[k] for k in ("python", "pyside6", "immortal")}


def make_tar(app: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".part")
    # Level 6: within a few per cent of 9 on these binaries, at half the time.
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(app, arcname=app.name)
    tmp.replace(target)


def glibc_floor(app: Path) -> str:
    """The newest GLIBC symbol version any bundled binary needs: the .deb's libc6 floor.

    It is the build machine's glibc or older; build on the oldest distribution to support.
    """
    newest = (2, 17)
    for path in app.rglob("*"):
        if (
            path.is_symlink()
            or not path.is_file()
            or not (".so" in path.name or path == app / "photofind")
        ):
            continue
        out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True).stdout
        for found in re.findall(r"GLIBC_(\d+)\.(\d+)", out):
            newest = max(newest, (int(found[0]), int(found[1])))
    return f"{newest[0]}.{newest[1]}"


def _control(ver: str, installed_kib: int, glibc: str) -> str:
    return (
        "Package: photofind\n"
        f"Version: {ver}\n"
        "Section: graphics\n"
        "Priority: optional\n"
        "Architecture: amd64\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: libc6 (>= {glibc}), {DEB_DEPENDS}\n"
        "Maintainer: photofind developers <photofind@localhost>\n"
        "Homepage: https://example.invalid/photofind\n"
        "Description: find photos on your own disk by what they show\n"
        " Type what a photo shows and photofind finds it among your own photos, with a\n"
        " CLIP model that runs on this computer: nothing leaves the machine. This\n"
        " package bundles Python, Qt and ONNX Runtime under /opt/photofind.\n"
    )


def make_deb(app: Path, target: Path, work: Path, ver: str) -> None:
    if shutil.which("dpkg-deb") is None:
        raise SystemExit("build.py: dpkg-deb is missing (apt-get install dpkg) to build the .deb")
    root = work / "deb-root"
    if root.exists():
        shutil.rmtree(root)
    # Hard links: the staging tree costs no copy of the 200 MB bundle.
    shutil.copytree(app, root / "opt" / "photofind", symlinks=True, copy_function=os.link)
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    # Relative, so it also works in a tree unpacked with dpkg-deb -x; the bootloader follows
    # the link to find its _internal folder.
    (bin_dir / "photofind").symlink_to("../../opt/photofind/photofind")
    share = root / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copy2(HERE / "photofind.desktop", share / "applications" / "photofind.desktop")
    icons = share / "icons" / "hicolor"
    (icons / "scalable" / "apps").mkdir(parents=True)
    shutil.copy2(HERE / "icons" / "photofind.svg", icons / "scalable" / "apps" / "photofind.svg")
    for png in sorted((HERE / "icons").glob("photofind-*.png")):
        size = png.stem.split("-")[1]  # photofind-256.png
        (icons / f"{size}x{size}" / "apps").mkdir(parents=True)
        shutil.copy2(png, icons / f"{size}x{size}" / "apps" / "photofind.png")
    installed = sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir()) // 1024
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        _control(ver, installed, glibc_floor(app)), encoding="utf-8"
    )
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)  # dpkg-deb refuses group-writable control folders
    tmp = target.with_name(target.name + ".part")
    # gzip: every dpkg reads it, and xz would add a minute on two cores for 20% less.
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(root), str(tmp)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tmp.replace(target)
    shutil.rmtree(root)


def build(dist: Path, work: Path, models: list[Path], gpu: bool, packages: bool = True) -> dict:
    """Build everything; returns (and writes to dist/photofind-build.json) what was made."""
    ver = version()
    names = artefact_names(ver)
    timings = {}
    start = time.monotonic()
    dist.mkdir(parents=True, exist_ok=True)
    (dist / STAMP).unlink(missing_ok=True)
    bindings = check_qt_bindings()
    timings["qt_refcount_check_s"] = round(time.monotonic() - start, 1)
    step = time.monotonic()
    run_pyinstaller(dist, work, models, gpu)
    timings["pyinstaller_s"] = round(time.monotonic() - step, 1)
    app = dist / names["app"]
    stubbed = stub_encoders(app, work)
    stripped = strip_debug_info(app, work)
    linux = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
    if packages and linux:
        step = time.monotonic()
        make_tar(app, dist / names["tar"])
        timings["tar_s"] = round(time.monotonic() - step, 1)
        step = time.monotonic()
        make_deb(app, dist / names["deb"], work, ver)
        timings["deb_s"] = round(time.monotonic() - step, 1)
    timings["total_s"] = round(time.monotonic() - start, 1)
    record = {
        "version": ver,
        "gpu": gpu,
        "models": sorted(p.name for p in (app / "_internal/resources/models").glob("*")),
        "fingerprint": fingerprint(models, gpu),
        "qt_refcount_check": bindings,
        "artefacts": {
            k: v for k, v in names.items() if (dist / v).exists() and (k == "app" or packages)
        },
        "timings": timings,
        "encoder_stubs_saved": stubbed,
        "debug_info_stripped": stripped,
    }
    (dist / STAMP).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a model package folder to bundle as well (repeatable)",
    )
    parser.add_argument("--gpu", action="store_true", help="keep onnxruntime's CUDA provider")
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="output folder")
    parser.add_argument("--work", type=Path, default=REPO / "build", help="PyInstaller's cache")
    parser.add_argument("--no-packages", action="store_true", help="the folder only")
    args = parser.parse_args(argv)
    for model in args.model:
        if not (model / "model.json").is_file():
            parser.error(f"--model {model}: not a model package (no model.json in it)")
    record = build(
        args.dist.resolve(),
        args.work.resolve(),
        [m.resolve() for m in args.model],
        args.gpu,
        packages=not args.no_packages,
    )
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
