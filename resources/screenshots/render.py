"""Render the main window with results to PNG, offscreen, for the README.

    QT_QPA_PLATFORM=offscreen python resources/screenshots/render.py [--query TEXT] [--scale 2]

Builds the demo library (generated photos, the bundled tiny-synthetic model) in a
temporary folder, searches, waits until every visible thumbnail is painted, and saves
``resources/screenshots/main-window.png`` (the results, with "Show all N" for those below
the relevance cut-off), ``-similar.png`` after Find similar, ``-nothing-found.png`` (a date
filter under which nothing stands out: Show all and Clear the filters),
``-search-failed.png`` (``img:`` of a missing picture) and ``-unreadable.png`` (the list of
photos that could not be read, opened from the status bar).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


MAX_BYTES = 500_000  # the README's pictures stay small in the repository


def save_small(pixmap, path: Path) -> None:
    """Save as PNG; when over MAX_BYTES (noisy photos compress badly), as a palette PNG
    with fewer and fewer colours until it fits."""
    from PIL import Image

    pixmap.save(str(path))
    colours = 256
    while path.stat().st_size > MAX_BYTES and colours >= 32:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        rgb.quantize(colors=colours, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
        colours //= 2


def _month_where_nothing_stands_out(engine, query: str):
    """The first month of the demo with photos but none above the query's cut-off."""
    from datetime import date

    from photofind.search import SearchFilter

    for year in range(2019, 2025):
        for month in range(1, 13):
            day = f"{year}-{month:02d}"
            found = engine.search(query, k=50, filter=SearchFilter(after=day, before=day))
            if len(found) == 0 and found.below >= 3:
                return date(year, month, 1)
    raise SystemExit(f"no month of the demo where nothing stands out for {query!r}")


def shoot_unreadable(window, root: Path, out: Path, settle) -> None:
    """Break two demo photos the way real ones break (a copy cut short, a file that is no
    picture), open the list from the status bar, and save the window with it on top."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter

    from photofind.demo import ALBUMS, PHOTOS_DIR

    album = root / PHOTOS_DIR / ALBUMS[0]
    whole = next(album.glob("demo_*.jpg")).read_bytes()
    broken = (album / "from the camera card.jpg", root / PHOTOS_DIR / ALBUMS[1] / "receipt.jpg")
    broken[0].write_bytes(whole[: len(whole) // 2])
    broken[1].write_text("not a photo\n")
    for path in broken:  # written long ago: no wait for the files to settle
        os.utime(path, (1_600_000_000, 1_600_000_000))
    window.start_indexing()  # a full reconcile now, as "Try again" asks for
    report = window.unreadable
    settle(window, lambda: report.count == 2)
    shown = []
    report.listShown.connect(lambda: shown.append(True))
    report.button.click()
    settle(window, lambda: bool(shown))
    dialog = report.dialog
    dialog.select(str(album / "from the camera card.jpg"))
    dialog.resize(round(window.width() * 0.62), round(window.height() * 0.42))
    settle(window, lambda: False, msecs=200)  # the layout of the resized dialog
    picture = window.grab()
    on_top = dialog.grab()
    painter = QPainter(picture)
    ratio = picture.devicePixelRatio()
    corner = QPoint(
        round((picture.width() / ratio - on_top.width() / ratio) / 2),
        round((picture.height() / ratio - on_top.height() / ratio) * 0.42),
    )
    painter.drawPixmap(corner, on_top)
    painter.setPen(window.palette().color(window.palette().ColorRole.Mid))
    painter.drawRect(corner.x(), corner.y(), on_top.width() / ratio, on_top.height() / ratio)
    painter.end()
    save_small(picture, out)
    dialog.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query", default="a red circle")
    parser.add_argument("--model", default="tiny-synthetic")
    parser.add_argument("--scale", default="1", help="QT_SCALE_FACTOR (2 for a HiDPI shot)")
    parser.add_argument("--size", default="1280x800", help="the PNG's size in pixels")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if os.environ["QT_QPA_PLATFORM"] == "offscreen":
        # A screen of the PNG's size, without window frames: the window fits its screen's
        # free area (gui/placement.py), and offscreen's own screen is 800x800.
        config = Path(tempfile.mkdtemp()) / "offscreen.json"
        screen = {"name": "shot", "x": 0, "y": 0, "width": width, "height": height, "dpr": 1}
        config.write_text(json.dumps({"windowFrameMargins": False, "screens": [screen]}))
        os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={config}"
    os.environ["QT_SCALE_FACTOR"] = args.scale

    from PySide6.QtCore import QDate, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from photofind.clip import load_model
    from photofind.demo import build_demo_library
    from photofind.gui import create_window

    app = QApplication.instance() or QApplication([])
    model = load_model(args.model, provider="cpu")
    suffix = "" if args.scale == "1" else f"@{args.scale}x"

    def settle(window, until, msecs=20_000):
        loop, timer = QEventLoop(), QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        check = QTimer()
        check.timeout.connect(lambda: until() and loop.quit())
        check.start(50)
        timer.start(msecs)
        loop.exec()
        check.stop()

    def thumbnails_painted(window) -> bool:
        model_ = window.view.model()
        rect = window.view.viewport().rect()
        for row in range(model_.rowCount()):
            index = model_.index(row)
            if not window.view.visualRect(index).intersects(rect):
                continue
            if window.thumbnails.get(model_.data(index, 0x0100 + 1)) is None:
                return False
        return True

    with tempfile.TemporaryDirectory() as tmp:
        root = build_demo_library(Path(tmp) / "demo", model)
        window = create_window(root, model)
        scale = float(args.scale)
        window.resize(round(width / scale), round(height / scale))  # --size is in pixels
        window.show()
        window.start_indexing()  # the watcher: the status bar and folders show its health
        settle(window, lambda: window.watch_label.text().startswith("Watching"))
        window.search_box.setText(args.query)
        done = []
        window.searchFinished.connect(done.append)
        window.run_search()
        settle(window, lambda: bool(done) and thumbnails_painted(window))
        save_small(window.grab(), args.out / f"main-window{suffix}.png")

        window.view.setCurrentIndex(window.view.model().index(2))
        done.clear()
        window.find_similar_action.trigger()
        settle(window, lambda: bool(done) and thumbnails_painted(window))
        save_small(window.grab(), args.out / f"main-window-similar{suffix}.png")

        month = _month_where_nothing_stands_out(window.engine, args.query)
        bar = window.filter_bar
        bar.blockSignals(True)
        bar.after.setDate(QDate(month.year, month.month, 1))
        bar.before.setDate(QDate(month.year, month.month, 1).addMonths(1).addDays(-1))
        bar.blockSignals(False)
        window.search_box.setText(args.query)
        done.clear()
        window.run_search()
        settle(window, lambda: bool(done))
        save_small(window.grab(), args.out / f"main-window-nothing-found{suffix}.png")

        bar.clear()
        window.search_box.setText("img:~/Pictures/holiday.jpg")
        done.clear()
        window.run_search()
        settle(window, lambda: bool(done))
        save_small(window.grab(), args.out / f"main-window-search-failed{suffix}.png")

        window.search_box.setText(args.query)  # the results behind the list
        done.clear()
        window.run_search()
        settle(window, lambda: bool(done) and thumbnails_painted(window))
        shoot_unreadable(window, root, args.out / f"main-window-unreadable{suffix}.png", settle)
        window.shutdown()
        window.close()
        window.library.close()
    app.processEvents()
    shots = "{,-similar,-nothing-found,-search-failed,-unreadable}"
    print(f"saved {args.out}/main-window{shots}{suffix}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
