"""Churn: thousands of mixed file operations while ``photofind watch`` runs, then quiet.

    python tests/bench/churn.py [--ops 5000] [--seed 1] [--folders 2] [--model DIR]

Creates, overwrites, deletes and renames files, makes, renames and moves folders (inside a
library folder, across library folders, out of the library and back in), copies bursts of
files and writes files slowly in chunks, as fast as it can. Then it stops and measures how
long until ``photofind list --json`` equals the image files on disk, path for path, and how
long until every photo is indexed. Prints one JSON object, including how many photos were
encoded against how many fresh contents the churn made (a rename or a move must cost no
encode, so ``encoded <= fresh_contents``).

The :class:`Churn` class is also used by ``tests/test_watcher.py`` with fewer operations.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def photo_bytes(seed: int, size=(96, 72)) -> bytes:
    """A small, distinct JPEG per seed (smooth colours plus seeded noise)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        img[..., c] = base[c] + 60 * np.sin(xx / rng.uniform(4, 20) + c) * np.cos(yy / 9)
    img += rng.normal(0, 12, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def disk_images(roots) -> set[str]:
    """Image files under ``roots`` the way the scanner sees them (no hidden entries)."""
    out = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                    out.add(os.path.join(dirpath, name))
    return out


class _SlowWrite:
    def __init__(self, path: str, data: bytes, seed: int, chunks: int):
        self.path, self.seed = path, seed
        step = -(-len(data) // chunks)
        self.parts = [data[i : i + step] for i in range(0, len(data), step)]
        self.file = open(path, "wb")  # noqa: SIM115 - held open across operations on purpose

    def advance(self) -> bool:
        """Write the next chunk; True once the file is complete and closed."""
        self.file.write(self.parts.pop(0))
        self.file.flush()
        if self.parts:
            return False
        self.file.close()
        return True


class Churn:
    """Random but reproducible file-system churn over library folders ``roots``.

    It keeps its own model of the tree (so it never walks the disk per operation) and counts
    ``created[seed]``: how many times each content was freshly placed in the library (a new
    file, an overwrite, a copy, a file moved in from outside) - the most encodes it may cost.
    """

    WEIGHTS = {
        "create": 24,
        "overwrite": 8,
        "delete": 10,
        "rename": 14,
        "move_file": 10,
        "mkdir": 5,
        "rename_dir": 4,
        "move_dir": 3,
        "dir_out": 2,
        "dir_in": 2,
        "copy_burst": 3,
        "slow_write": 5,
        "delete_dir": 1,
    }

    def __init__(self, roots, outside, seed: int = 1):
        self.rng = random.Random(seed)
        self.roots = [str(r) for r in roots]
        self.outside = str(outside)
        os.makedirs(self.outside, exist_ok=True)
        self.files: dict[str, int] = {}  # path -> content seed
        self.dirs: set[str] = set(self.roots)
        self.away: dict[str, dict[str, int]] = {}  # folder moved out -> its files (relative)
        self.slow: list[_SlowWrite] = []
        self.created: Counter[int] = Counter()
        self.contents: dict[int, bytes] = {}
        self.ops: Counter[str] = Counter()
        self._seed = seed * 1_000_000
        self._names = 0

    # -- helpers ----------------------------------------------------------------------------

    def _content(self) -> tuple[int, bytes]:
        self._seed += 1
        data = photo_bytes(self._seed)
        self.contents[self._seed] = data
        return self._seed, data

    def _name(self, prefix: str, suffix: str = "") -> str:
        self._names += 1
        return f"{prefix}{self._names:05d}{suffix}"

    def _busy(self, folder: str) -> bool:
        """A folder holding a file still being written is left alone by folder operations."""
        return any(w.path.startswith(folder + os.sep) for w in self.slow)

    def _pick_file(self) -> str | None:
        return self.rng.choice(sorted(self.files)) if self.files else None

    def _pick_subdir(self) -> str | None:
        subs = sorted(d for d in self.dirs if d not in self.roots and not self._busy(d))
        return self.rng.choice(subs) if subs else None

    def _rebase(self, old: str, new: str) -> None:
        prefix = old + os.sep
        self.files = {
            (new + p[len(old) :] if p.startswith(prefix) else p): s for p, s in self.files.items()
        }
        self.dirs = {
            (new + d[len(old) :] if d == old or d.startswith(prefix) else d) for d in self.dirs
        }

    def _drop_tree(self, folder: str) -> dict[str, int]:
        prefix = folder + os.sep
        gone = {p[len(prefix) :]: s for p, s in self.files.items() if p.startswith(prefix)}
        self.files = {p: s for p, s in self.files.items() if not p.startswith(prefix)}
        self.dirs = {d for d in self.dirs if d != folder and not d.startswith(prefix)}
        return gone

    # -- operations ---------------------------------------------------------------------------

    def create(self, folder: str | None = None) -> None:
        folder = folder or self.rng.choice(sorted(self.dirs))
        path = os.path.join(folder, self._name("img", ".jpg"))
        seed, data = self._content()
        with open(path, "wb") as f:
            f.write(data)
        self.files[path] = seed
        self.created[seed] += 1

    def overwrite(self) -> None:
        path = self._pick_file()
        if path is None:
            return self.create()
        seed, data = self._content()
        with open(path, "wb") as f:
            f.write(data)
        self.files[path] = seed
        self.created[seed] += 1

    def delete(self) -> None:
        path = self._pick_file()
        if path is not None:
            os.unlink(path)
            del self.files[path]

    def rename(self) -> None:
        path = self._pick_file()
        if path is not None:
            new = os.path.join(os.path.dirname(path), self._name("renamed", ".jpg"))
            os.rename(path, new)
            self.files[new] = self.files.pop(path)

    def move_file(self) -> None:
        path = self._pick_file()
        if path is not None:
            new = os.path.join(self.rng.choice(sorted(self.dirs)), self._name("moved", ".jpg"))
            os.rename(path, new)
            self.files[new] = self.files.pop(path)

    def mkdir(self) -> None:
        parents = [d for d in sorted(self.dirs) if d.count(os.sep) - _depth(d, self.roots) < 3]
        path = os.path.join(self.rng.choice(parents), self._name("album "))
        os.mkdir(path)
        self.dirs.add(path)

    def rename_dir(self) -> None:
        folder = self._pick_subdir()
        if folder is not None:
            new = os.path.join(os.path.dirname(folder), self._name("renamed album "))
            os.rename(folder, new)
            self._rebase(folder, new)

    def move_dir(self) -> None:
        folder = self._pick_subdir()
        if folder is None:
            return
        targets = [
            d for d in sorted(self.dirs) if d != folder and not d.startswith(folder + os.sep)
        ]
        new = os.path.join(self.rng.choice(targets), self._name("moved album "))
        os.rename(folder, new)
        self._rebase(folder, new)

    def dir_out(self) -> None:
        folder = self._pick_subdir()
        if folder is None:
            return
        away = os.path.join(self.outside, self._name("away "))
        os.rename(folder, away)
        self.away[away] = self._drop_tree(folder)

    def dir_in(self) -> None:
        if not self.away:
            return self.dir_out()
        away = self.rng.choice(sorted(self.away))
        files = self.away.pop(away)
        new = os.path.join(self.rng.choice(sorted(self.dirs)), self._name("back "))
        os.rename(away, new)
        for dirpath, _, _ in os.walk(new):
            self.dirs.add(dirpath)
        for rel, seed in files.items():
            self.files[os.path.join(new, rel)] = seed
            self.created[seed] += 1  # it left the library: coming back is a new photo

    def copy_burst(self) -> None:
        if not self.files:
            return self.create()
        folder = self.rng.choice(sorted(self.dirs))
        sources = self.rng.sample(sorted(self.files), min(len(self.files), self.rng.randint(5, 30)))
        for src in sources:
            dst = os.path.join(folder, self._name("copy", ".jpg"))
            shutil.copyfile(src, dst)
            self.files[dst] = self.files[src]
            self.created[self.files[src]] += 1

    def slow_write(self) -> None:
        folder = self.rng.choice(sorted(self.dirs))
        seed, data = self._content()
        path = os.path.join(folder, self._name("slow", ".jpg"))
        self.slow.append(_SlowWrite(path, data, seed, chunks=self.rng.randint(3, 6)))

    def delete_dir(self) -> None:
        folder = self._pick_subdir()
        if folder is not None:
            shutil.rmtree(folder)
            self._drop_tree(folder)

    # -- driving ------------------------------------------------------------------------------

    def step(self) -> str:
        """One random operation (and one more chunk of every slow write in progress)."""
        self.step_slow_only()
        names = list(self.WEIGHTS)
        op = self.rng.choices(names, weights=[self.WEIGHTS[n] for n in names])[0]
        getattr(self, op)()
        self.ops[op] += 1
        return op

    def finish(self) -> None:
        """Complete the slow writes still in progress."""
        while self.slow:
            self.step_slow_only()

    def step_slow_only(self) -> None:
        still = []
        for w in self.slow:
            if w.advance():
                self.files[w.path] = w.seed
                self.created[w.seed] += 1
            else:
                still.append(w)
        self.slow = still

    @property
    def fresh_contents(self) -> int:
        return sum(self.created.values())


def _depth(path: str, roots) -> int:
    for r in roots:
        if path == r or path.startswith(r + os.sep):
            return r.count(os.sep)
    return 0


# -- the benchmark ------------------------------------------------------------------------------


def main(argv=None) -> int:
    import argparse
    import json
    import platform
    import signal
    import subprocess
    import sys
    import tempfile
    import threading
    import time

    root_dir = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root_dir))
    from photofind.library import Catalog

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--folders", type=int, default=2)
    p.add_argument("--initial", type=int, default=200, help="photos before the churn starts")
    p.add_argument("--model", type=Path, help="model package (default: tiny-test random)")
    p.add_argument("--rate", type=float, help="operations per second (default: flat out)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)

    model = args.model or _tiny_package(root_dir)
    work = Path(tempfile.mkdtemp(prefix="photofind-churn-"))
    roots = [work / f"library folder {i}" for i in range(args.folders)]
    for r in roots:
        r.mkdir()
    lib = work / "lib"
    churn = Churn(roots, work / "outside", seed=args.seed)
    for i in range(args.initial):
        churn.create(str(roots[i % len(roots)]))

    cmd = [sys.executable, "-m", "photofind", "--library", str(lib), "--model", str(model)]
    cmd += ["--provider", "cpu", "watch", *map(str, roots)]
    log_path = work / "watch.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, cwd=root_dir)
    try:
        _wait(lambda: _listed(Catalog, lib) == disk_images(roots), 300, proc)
        _wait(lambda: _counts(Catalog, lib).get("pending", 1) == 0, 300, proc)

        started = time.monotonic()
        pace = threading.Event()
        for i in range(args.ops):
            churn.step()
            if args.rate:
                pace.wait(max(0.0, started + (i + 1) / args.rate - time.monotonic()))
        churn.finish()
        last_op = time.monotonic()
        on_disk = disk_images(roots)
        ev = threading.Event()
        listed_s = indexed_s = None
        while time.monotonic() - last_op < 120 and proc.poll() is None:
            listed = _listed(Catalog, lib)
            if listed_s is None and listed == on_disk:
                listed_s = time.monotonic() - last_op
            counts = _counts(Catalog, lib)
            if listed_s is not None and counts.get("pending", 1) == 0 and listed == on_disk:
                indexed_s = time.monotonic() - last_op
                break
            ev.wait(0.05)
        done = subprocess.run(
            [sys.executable, "-m", "photofind", "--library", str(lib), "list", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        entries = json.loads(done.stdout)
        listed_paths = [e["path"] for e in entries]
        status = json.loads((lib / "watch-status.json").read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    counters = status["counters"]
    result = {
        "benchmark": "churn",
        "machine": f"{platform.node()} {os.cpu_count()} cpus {platform.machine()}",
        "command": " ".join(["python", "tests/bench/churn.py", *(argv or sys.argv[1:])]),
        "ops": args.ops,
        "op_mix": dict(churn.ops),
        "ops_per_s": round(args.ops / (last_op - started), 1),
        "files_on_disk": len(on_disk),
        "list_equals_disk": sorted(listed_paths) == sorted(on_disk),
        "duplicates": len(listed_paths) - len(set(listed_paths)),
        "seconds_to_list_equal_after_last_op": listed_s and round(listed_s, 2),
        "seconds_to_all_indexed_after_last_op": indexed_s and round(indexed_s, 2),
        "fresh_contents": churn.fresh_contents,
        "encoded": counters["encoded"],
        "encoded_within_fresh": counters["encoded"] <= churn.fresh_contents,
        "moved_kept_vectors": counters["moved"],
        "events": counters["events"],
        "reconciles": counters["reconciles"],
        "statuses": Counter(e["status"] for e in entries),
        "sigterm_exit_code": code,
    }
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}", file=sys.stderr)
    ok = result["list_equals_disk"] and result["encoded_within_fresh"] and listed_s is not None
    return 0 if ok and listed_s <= 10 else 1


def _tiny_package(root_dir: Path) -> Path:
    out = root_dir / ".cache" / "bench" / "tiny-test-random-seed0"
    if not (out / "model.json").is_file():
        from export.model import arch_config, random_init_model
        from export.onnx_export import export_package
        from export.vocab import find_clip_vocab

        config = arch_config("tiny-test")
        export_package(
            random_init_model(config, seed=0),
            config,
            out,
            name="tiny-test-random-seed0",
            vocab_path=find_clip_vocab(),
            description="tiny-test with random weights, for benchmarks",
            source="random init",
            arch="tiny-test",
        )
    return out


def _listed(catalog_cls, lib) -> set[str] | None:
    try:
        with catalog_cls.open(lib, readonly=True) as catalog:
            return {p.path for p in catalog.photos()}
    except Exception:  # noqa: BLE001 - not created yet
        return None


def _counts(catalog_cls, lib) -> dict:
    try:
        with catalog_cls.open(lib, readonly=True) as catalog:
            return catalog.counts()
    except Exception:  # noqa: BLE001
        return {}


def _wait(condition, timeout: float, proc) -> None:
    import threading
    import time

    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while not condition():
        if proc.poll() is not None:
            raise SystemExit(f"photofind watch ended early with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the watcher")
        ev.wait(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
