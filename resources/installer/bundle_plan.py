"""What the PyInstaller bundle keeps and leaves out; read by photofind.spec and build.py.

Kept apart from the spec so the rules have names, comments and a place to be tested:
PyInstaller's Qt hooks collect every plugin family Qt ships (≈ 60 MB of PDF, QML, SQL and
TLS plugins that pull in their own Qt libraries); onnxruntime-gpu carries a 270 MB CUDA
provider that a CPU bundle never loads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

#: Modules that must never be frozen into the app (torch lives in export/ only).
EXCLUDED_MODULES = [
    "torch",
    "torchvision",
    "onnx",
    "onnxscript",
    "safetensors",
    "open_clip",
    "export",
    "tests",
    "pytest",
    "_pytest",
    "pytestqt",
    "pluggy",
    "PyInstaller",
    "importlinter",
    "grimp",
    "ruff",
    "pip",
    "setuptools",
    "IPython",
    "matplotlib",
    "scipy",
    "pandas",
    "sympy",
    "tkinter",
    "_tkinter",
    # onnxruntime's tool packages import onnx and are only for model authors.
    "onnxruntime.tools",
    "onnxruntime.quantization",
    "onnxruntime.transformers",
    "onnxruntime.training",
    "numpy.f2py",
    "numpy.distutils",
    # Qt modules the app does not use (Qt's hooks add some as hidden imports).
    "PySide6.QtNetwork",
    "PySide6.QtOpenGL",
    "PySide6.QtOpenGLWidgets",
    "PySide6.QtDBus",
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtSql",
    "PySide6.QtPrintSupport",
    # Interactive-console helpers: the app has no REPL.
    "readline",
    "rlcompleter",
    "pydoc",
]

#: Qt plugin families the app needs, and why.
QT_PLUGIN_FAMILIES = {
    "platforms",  # xcb (X11), wayland, offscreen (tests, screenshots), minimal
    "xcbglintegrations",  # GL on X11, else Qt warns and falls back
    "imageformats",  # jpeg, gif, webp, tiff, ico, svg thumbnails/icons through QImageReader
    "styles",
    "iconengines",  # SVG icons
    "platforminputcontexts",  # ibus and compose keys: typing accents in the search box
    "platformthemes",  # the XDG portal: native file dialogs (GTK's theme: see below)
    "wayland-shell-integration",  # the three wayland-* families make the wayland plugin work
    "wayland-decoration-client",
    "wayland-graphics-integration-client",
}

#: Platforms the app runs on: a desktop session or none (tests, screenshots).
QT_PLATFORMS = {"libqxcb.so", "libqwayland.so", "libqoffscreen.so", "libqminimal.so"}

#: Plugins of kept families left out: the PDF image format drags in QtPdf, and the GTK 3
#: theme links the host's GTK against our bundled copies of its dependencies (a classic
#: crash); the XDG portal theme gives native dialogs without that.
QT_UNUSED_PLUGINS = {"libqpdf.so", "libqgtk3.so"}

#: Libraries a Linux desktop always has, taken from the host (the .deb depends on them):
#: a bundled copy of the display, font and D-Bus client libraries can disagree with the
#: host's servers and configuration files (the AppImage "excludelist" reasoning).
LINUX_HOST_LIBRARIES = (
    "libX11",
    "libxcb",
    "libXau",
    "libXdmcp",
    "libXext",
    "libXrender",
    "libxkbcommon",
    "libwayland",
    "libfontconfig",
    "libfreetype",
    "libexpat",
    "libdbus-1",
    "libsystemd",
    "libglib-2.0",
    "libgthread-2.0",
    "libgobject-2.0",
    "libgio-2.0",
    "libgmodule-2.0",
    # CUDA, cuDNN and TensorRT come with the user's install, matched to the driver (--gpu).
    "libcudart",
    "libcublas",
    "libcudnn",
    "libcufft",
    "libcurand",
    "libnvrtc",
    "libnvinfer",
)

#: onnxruntime-gpu's execution providers beyond the CPU: kept only with --gpu.
GPU_PROVIDER_LIBRARIES = ("onnxruntime_providers_cuda", "onnxruntime_providers_tensorrt")

_QT_PLUGINS = PurePosixPath("PySide6/Qt/plugins")


def keep_binary(dest: str, *, gpu: bool) -> bool:
    """Whether a binary collected to ``dest`` (path inside the bundle) stays.

    Libraries that only dropped plugins needed are removed afterwards by
    :func:`prune_unreachable`.
    """
    path = PurePosixPath(dest.replace("\\", "/"))
    name = path.name
    if not gpu and name.removeprefix("lib").startswith(GPU_PROVIDER_LIBRARIES):
        return False
    if path.is_relative_to(_QT_PLUGINS):
        family = path.relative_to(_QT_PLUGINS).parts[0]
        if family == "platforms":
            return name in QT_PLATFORMS
        return family in QT_PLUGIN_FAMILIES and name not in QT_UNUSED_PLUGINS
    if sys.platform.startswith("linux") and len(path.parts) == 1:
        return not name.startswith(LINUX_HOST_LIBRARIES)
    return True


def _is_root(dest: str) -> bool:
    """Binaries loaded by Python or by Qt/onnxruntime at run time (dlopen), not linked."""
    path = PurePosixPath(dest.replace("\\", "/"))
    return (
        ".cpython-" in path.name
        or ".abi3." in path.name
        or path.suffix == ".pyd"
        or path.name.startswith(("libpython", "python3"))
        or "lib-dynload" in path.parts
        or path.is_relative_to(_QT_PLUGINS)
        or path.is_relative_to("onnxruntime/capi")
    )


def _needed(path: str) -> list[str]:
    """The libraries ``path`` links to directly (DT_NEEDED on Linux).

    Direct links only: ldd's transitive list would keep what only a host library (left out
    above) needs, such as libsystemd's libgcrypt.
    """
    if sys.platform.startswith("linux"):
        out = subprocess.run(
            ["objdump", "-p", path], capture_output=True, text=True, check=True
        ).stdout
        return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]
    from PyInstaller.depend.bindepend import get_imports

    return [name for name, _ in get_imports(path)]


def prune_unreachable(binaries: list[tuple]) -> list[tuple]:
    """Drop the libraries that no kept extension module, plugin or provider links to.

    PyInstaller resolved the dependencies of every plugin before we filtered the plugins,
    so the libraries of dropped ones (QtPdf, QtNetwork, the GTK stack) are still listed.
    """
    files = [e for e in binaries if e[2] != "SYMLINK"]
    by_name: dict[str, list[tuple]] = {}
    for entry in files:
        by_name.setdefault(PurePosixPath(entry[0].replace("\\", "/")).name, []).append(entry)
    reached: set[str] = set()
    todo = [e for e in files if _is_root(e[0])]
    while todo:
        dest, src, _ = todo.pop()
        if dest in reached:
            continue
        reached.add(dest)
        for name in _needed(src):
            todo += by_name.get(PurePosixPath(name).name, [])
    kept = [e for e in files if e[0] in reached]
    # PyInstaller's top-level aliases (libQt6Core.so.6 -> PySide6/Qt/lib/...) follow their target.
    aliases = [e for e in binaries if e[2] == "SYMLINK" and e[1] in reached]
    return kept + aliases


def drop_dangling(toc: list[tuple], present: set[str]) -> list[tuple]:
    """Entries of ``toc`` minus the symbolic links whose target is not in ``present``."""
    return [e for e in toc if e[2] != "SYMLINK" or e[1] in present]


def keep_data(dest: str) -> bool:
    """Whether a data file collected to ``dest`` stays.

    Qt's translations go (6 MB): the app's own text is English only, and Qt's dialog
    buttons in another language beside it would read worse than all English.
    """
    path = PurePosixPath(dest.replace("\\", "/"))
    return not path.is_relative_to("PySide6/Qt/translations")


def model_package_files(folder: Path) -> list[Path]:
    """The files of a model package (model.json and what it lists), checked by sha256."""
    from photofind.clip.package import MANIFEST, read_manifest, verify_files

    spec = read_manifest(folder)
    verify_files(folder, spec)
    return [folder / MANIFEST, *(folder / entry.path for entry in spec.files.values())]


def model_datas(bundled_root: Path, extra: list[Path]) -> list[tuple[str, str]]:
    """PyInstaller ``datas`` for every package in ``bundled_root`` and each ``extra`` folder.

    A package lands in ``resources/models/<folder name>``, where
    :func:`photofind.paths.bundled_models_dir` finds it in the frozen app.
    """
    folders = []
    if bundled_root.is_dir():
        folders += [p for p in sorted(bundled_root.iterdir()) if (p / "model.json").is_file()]
    folders += [Path(p).resolve() for p in extra]
    names = [p.name for p in folders]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"two model packages would be bundled as {duplicates}: rename one folder")
    datas = []
    for folder in folders:
        for file in model_package_files(folder):
            relative = file.relative_to(folder).parent
            datas.append((str(file), str(PurePosixPath("resources/models", folder.name, relative))))
    return datas


def face_model_datas() -> list[tuple[str, str]]:
    """PyInstaller ``datas`` for the dlib model files the face pass uses (landmarks, embedder,
    CNN detector: 32 MB), where :func:`photofind.faces.models.models_folder` looks in the
    frozen app; never the 100 MB 68-point model, which photofind does not use."""
    from photofind.faces.models import (
        BUNDLED_FOLDER,
        CNN_DETECTOR,
        EMBEDDER,
        LANDMARKS,
        models_folder,
    )

    folder = models_folder()
    return [
        (str(folder / name), f"resources/{BUNDLED_FOLDER}")
        for name in (LANDMARKS, EMBEDDER, CNN_DETECTOR)
    ]
