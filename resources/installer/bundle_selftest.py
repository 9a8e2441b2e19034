"""Checks that only make sense inside the frozen bundle: ``photofind --bundle-selftest ...``.

    photofind --bundle-selftest info
        JSON: where every module was imported from, sys.path, the resources folder, the
        bundled models, onnxruntime's providers and which forbidden modules can be found.
    photofind --bundle-selftest gui OUT.png [--library DIR] [--model NAME_OR_DIR]
        Starts the desktop app through the same code as ``photofind gui``
        (photofind.gui.app.run), prints ``shown <seconds since the process started>`` as
        soon as the event loop runs with the window shown, saves the window to OUT.png and
        quits.
    photofind --bundle-selftest video [CLIP]
        Samples CLIP (else a clip it writes with FFmpeg's built-in MPEG-4 encoder) with the
        bundled PyAV: JSON with the codec, the sampled times and colours.
    photofind --bundle-selftest formats DIR
        Writes one still of each kind the bundled encoders make (AVIF, JPEG XL, an
        ICC-profiled JPEG, multi-page TIFF, animated GIF/WebP/APNG) into DIR, then decodes
        every file of DIR that photofind reads (the caller adds more: HEIC, DNG) through
        photofind.formats with the bundled libheif, libavif, libjxl and LibRaw (JSON).
    photofind --bundle-selftest refcount [--calls N]
        The Qt reference-count check of qt_refcount.py on the bundled Python and PySide6
        (JSON; exit 1 when a kind of Qt call loses references, as 6.12.0 on 3.11 does).

The tests (tests/test_bundle.py) drive it with QT_QPA_PLATFORM=offscreen.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

#: Modules the bundle must not contain (torch lives in export/ only).
FORBIDDEN = ("torch", "onnx", "export", "tests", "pytest", "pytestqt", "PyInstaller")
#: Modules whose origin proves the bundle does not reach into a Python installation.
PROBED = ("photofind", "numpy", "onnxruntime", "PySide6", "hnswlib", "PIL", "encodings")


def process_age() -> float | None:
    """Seconds since this process was exec'd (Linux: /proc), else None."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5)
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def info() -> int:
    import onnxruntime

    from photofind.clip import available_models
    from photofind.paths import resources_dir

    origins = {}
    for name in PROBED:
        module = importlib.import_module(name)
        origins[name] = getattr(module, "__file__", None)
    capi = Path(onnxruntime.__file__).parent / "capi"
    report = {
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        "meipass": getattr(sys, "_MEIPASS", None),
        "sys_path": sys.path,
        "origins": origins,
        "resources_dir": str(resources_dir()),
        "bundled_models": {k: str(v) for k, v in available_models(Path(os.devnull)).items()},
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
        "provider_libraries": sorted(p.name for p in capi.glob("*providers*")),
        "forbidden_found": [n for n in FORBIDDEN if importlib.util.find_spec(n) is not None],
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def gui(args: argparse.Namespace) -> int:
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from photofind.clip import load_model
    from photofind.gui.app import run

    model = load_model(args.model, provider="cpu", library=args.library) if args.model else None
    # run() sets this too, but only a call before the QApplication exists counts.
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication(sys.argv[:1])
    result = {}

    def shown() -> None:
        # First turn of the event loop after run() showed the window: the cold-start mark.
        age = process_age()
        print(f"shown {age:.3f}" if age is not None else "shown ?", flush=True)
        window = next(w for w in app.topLevelWidgets() if w.isVisible())
        result["saved"] = window.grab().save(str(args.out))
        window.close()
        app.quit()

    QTimer.singleShot(0, shown)
    status = run(args.library, model, provider="cpu", start_indexing=False)
    if not result.get("saved"):
        print(f"could not save {args.out}", file=sys.stderr)
        return 1
    print(f"saved {args.out}")
    return status


def refcount(args: argparse.Namespace) -> int:
    import qt_refcount

    return qt_refcount.main(["--calls", str(args.calls)])


def faces(args: argparse.Namespace) -> int:
    """The bundled dlib and face model files find the faces of ``args.photo``."""
    from PIL import Image, ImageOps

    from photofind.faces.detector import FaceModel
    from photofind.faces.models import models_folder

    with Image.open(args.photo) as image:
        picture = ImageOps.exif_transpose(image).convert("RGB")
    found = FaceModel().find(picture)
    print(json.dumps({"models": str(models_folder()), "faces": len(found)}))
    return 0


def video(args: argparse.Namespace) -> int:
    """The bundled PyAV (FFmpeg) samples ``args.clip`` (the tests write an H.264 clip, a red
    second then a blue one, with the venv's PyAV): both frames, at their times, in their
    colours. Without a clip it writes one with FFmpeg's own MPEG-4 Part 2 encoder: the
    bundle's x264, x265 and SVT-AV1 are stubs (build.py), since photofind never encodes."""
    import tempfile

    import av
    import numpy as np

    from photofind.formats.video import sample_video

    with tempfile.TemporaryDirectory() as folder:
        path = args.clip
        if path is None:
            path = Path(folder) / "clip.mp4"
            with av.open(str(path), "w") as container:
                stream = container.add_stream("mpeg4", rate=8)
                stream.width, stream.height, stream.pix_fmt, stream.gop_size = 64, 48, "yuv420p", 8
                for i in range(16):
                    colour = (220, 30, 30) if i < 8 else (30, 70, 230)
                    picture = np.full((48, 64, 3), colour, np.uint8)
                    frame = av.VideoFrame.from_ndarray(picture, "rgb24")
                    frame.pts = i
                    container.mux(stream.encode(frame))
                container.mux(stream.encode())
        sample = sample_video(path, side=48)
    colours = [
        "red" if np.asarray(f.image)[..., 0].mean() > np.asarray(f.image)[..., 2].mean() else "blue"
        for f in sample.frames
    ]
    print(
        json.dumps(
            {
                "av": av.__version__,
                "codec": sample.codec,
                "frames": [f.ms for f in sample.frames],
                "colours": colours,
            }
        )
    )
    return 0 if colours == ["red", "blue"] else 1


def _write_stills(folder: Path) -> None:
    """One small still of each kind the bundled encoders write: red left, blue right.

    Not HEIC: the bundle's libheif has a stub for its x265 encoder (build.py), so the tests
    write the HEIC files with the venv's pillow-heif and the bundle decodes them.
    """
    from PIL import Image

    # The AVIF and JPEG XL encoders: registered by photofind.formats.stills (via decode).
    from photofind.formats.icc import rgb_profile

    picture = Image.new("RGB", (96, 64), (200, 40, 40))
    picture.paste((40, 60, 200), (48, 0, 96, 64))
    picture.save(folder / "still.avif", format="AVIF", quality=90)
    picture.save(folder / "still.jxl", format="JXL", quality=95)
    # The numbers are sRGB's, so a P3 profile makes them look different after conversion;
    # the check is that LittleCMS reads and applies the profile at all.
    picture.save(folder / "still_p3.jpg", quality=95, icc_profile=rgb_profile("display-p3"))
    green = Image.new("RGB", (96, 64), (0, 200, 0))
    picture.save(folder / "pages.tif", save_all=True, append_images=[green])
    for name in ("moving.gif", "moving.webp", "moving.png"):
        picture.save(folder / name, save_all=True, append_images=[green], duration=[200, 200])


def formats(args: argparse.Namespace) -> int:
    """Every still kind decodes with the bundled libraries (and says which decoded how)."""
    from photofind.formats import raw
    from photofind.formats.decode import decode, is_raw
    from photofind.formats.frames import frames
    from photofind.formats.kinds import kind_of

    folder = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    _write_stills(folder)
    report = {}
    for path in sorted(folder.iterdir()):
        if kind_of(path.name) is None:
            continue
        try:
            image = decode(path, 100_000_000, (64, 64)).image
            entry = {"kind": kind_of(path.name), "size": list(image.size)}
            entry["left"] = list(image.getpixel((4, image.height // 2)))
            if is_raw(path):
                entry["raw_path"] = raw.decode_raw(path, None, (64, 64)).source
            entry["frames"] = len(list(frames(path)))
        except Exception as exc:  # noqa: BLE001 - reported, the next file still runs
            entry = {"kind": kind_of(path.name), "error": f"{type(exc).__name__}: {exc}"}
        report[path.name] = entry
    print(json.dumps(report, indent=2))
    return 1 if any("error" in entry for entry in report.values()) else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="photofind --bundle-selftest")
    sub = parser.add_subparsers(dest="check", required=True)
    sub.add_parser("info")
    g = sub.add_parser("gui")
    g.add_argument("out", type=Path)
    g.add_argument("--library", type=Path, required=True)
    g.add_argument("--model")
    r = sub.add_parser("refcount")
    r.add_argument("--calls", type=int, default=2000)
    sub.add_parser("faces").add_argument("photo", type=Path)
    sub.add_parser("video").add_argument("clip", type=Path, nargs="?")
    sub.add_parser("formats").add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    checks = {
        "info": lambda _: info(),
        "gui": gui,
        "refcount": refcount,
        "faces": faces,
        "video": video,
        "formats": formats,
    }
    return checks[args.check](args)
