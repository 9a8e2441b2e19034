"""Hostile model sources: the attacks of issue 14 on installs, downloads, archives and packages.

Each test replays one attack for real: loopback HTTP servers that drip, lie or send broken
framing, generated archives (sparse tars, zip bombs, corrupt checksums, deflate64,
encryption flags), folders with links to /dev/zero and FIFOs, packages whose model.json or
graphs claim absurd sizes, and small disks. A small disk is a real 48 MB tmpfs where this
runs as root (as on the development machines); elsewhere the same code paths are driven
through the injectable free-space function and the tmpfs tests are skipped with the reason.
Memory bombs run in a subprocess under RLIMIT_AS, so a regression fails the test instead of
the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from photofind.cli import main
from photofind.clip import load_model
from photofind.clip.package import read_manifest, sha256_file, write_manifest
from photofind.errors import ModelError
from photofind.models import archive
from photofind.models.budget import WriteBudget
from photofind.models.download import ALLOW_HTTP_ENV, DownloadError, DownloadLimits, download
from photofind.models.store import ModelStore
from tests.local_http import LocalServer, Served

MB = 1 << 20

# -- helpers -------------------------------------------------------------------------------


class Scripted:
    """A loopback HTTP server whose every GET is answered by ``respond(handler)``."""

    def __init__(self, respond):
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                # OSError: the client hung up, as it should on a hostile server.
                with contextlib.suppress(OSError):
                    respond(self, outer.stop)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _drip(handler, stop: threading.Event) -> None:
    """One byte every 20 ms of a 100 kB body: 50 bytes/s, for ever as far as a client knows
    (the server hangs up after 150 bytes, so that a client without limits fails the test
    in seconds instead of hanging it)."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    for _ in range(150):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        if stop.wait(0.02):
            return


@pytest.fixture
def allow_http(monkeypatch):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")


@pytest.fixture
def small_disk(tmp_path):
    """A real 48 MB file system (tmpfs), mounted for this test only."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk (a hole)."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def _used(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _tar_gz(folder: Path, out: Path, top: str = "pkg") -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=top)
    return out


def _copy_package(random_package: Path, target: Path) -> Path:
    shutil.copytree(random_package, target)
    return target


def _rewrite_manifest(folder: Path, **changes) -> None:
    data = json.loads((folder / "model.json").read_text())
    data.update(changes)
    (folder / "model.json").write_text(json.dumps(data))


def _rehash(folder: Path, **extra_files) -> None:
    """model.json's sha256 of every listed file made true again, plus ``role=path`` files."""
    spec = read_manifest(folder)
    files = {
        role: dataclasses.replace(f, sha256=sha256_file(folder / f.path))
        for role, f in spec.files.items()
    }
    for role, rel in extra_files.items():
        files[role] = dataclasses.replace(
            files["visual"], path=rel, sha256=sha256_file(folder / rel)
        )
    write_manifest(folder, dataclasses.replace(spec, files=files))


def _nothing_installed(store: ModelStore) -> bool:
    if not store.root.exists():
        return True
    left = [p.name for p in store.root.iterdir() if p.name != ".downloads"]
    return left == []


# -- 1. writing outside the model store ----------------------------------------------------


def test_an_encoded_traversal_in_the_url_stays_inside_the_store(
    allow_http, tmp_path, random_package
):
    store = ModelStore(tmp_path / "library")
    data = _tar_gz(random_package, tmp_path / "pkg.tar.gz").read_bytes()
    # What unquote() of the last segment used to aim at: models/.downloads/KEY/../../../
    victim = tmp_path / "library" / "victim.tar.gz"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    path = "/x/..%2F..%2F..%2Fvictim.tar.gz"
    with LocalServer() as server:
        server.files[path] = Served(data)
        report = store.install(server.url(path), name="safe")
    assert victim.read_bytes() == b"precious"
    assert (report.path / "model.json").is_file()
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "library" not in p.parts]
    assert sorted(p.name for p in outside) == ["pkg.tar.gz"]


def test_a_content_disposition_name_is_never_used(allow_http, tmp_path, random_package):
    data = _tar_gz(random_package, tmp_path / "pkg.tar.gz").read_bytes()

    def respond(handler, stop):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Content-Disposition", 'attachment; filename="../../../evil.tar.gz"')
        handler.end_headers()
        handler.wfile.write(data)

    store = ModelStore(tmp_path / "library")
    with Scripted(respond) as server:
        store.install(server.url("/m.tar.gz"), name="m")
    assert not [p for p in tmp_path.rglob("evil*")]


def test_a_catalogue_path_with_dots_is_refused(allow_http, tmp_path):
    from photofind.models.catalogue import CatalogueEntry, RemoteFile

    entry = CatalogueEntry(
        name="evil",
        kind="onnx",
        arch="",
        description="",
        license="",
        source="",
        layout="immich",
        base_url="http://127.0.0.1:9/",
        files=(RemoteFile("visual/../../../../escape.onnx"),),
    )
    store = ModelStore(tmp_path / "library")
    with pytest.raises(ModelError, match="catalogue file path .* is unsafe"):
        store.install(entry)
    assert not list(tmp_path.rglob("escape*"))


# -- 3. a server that drips ----------------------------------------------------------------


def test_a_dripping_server_is_given_up_on_with_progress_shown(allow_http, tmp_path):
    seen = []
    limits = DownloadLimits(timeout=5, min_rate=10_000, rate_window=0.3)
    with Scripted(_drip) as server, pytest.raises(DownloadError, match="too slow: .* resume"):
        download(server.url("/m.bin"), tmp_path / "m.bin", progress=seen.append, limits=limits)
    # Progress came as the bytes did, not once at the end.
    dones = [p.done for p in seen]
    assert len(dones) >= 5 and dones == sorted(set(dones)) and seen[-1].total == 100_000
    # What came is kept for the next call to resume.
    assert (tmp_path / "m.bin.part").stat().st_size == seen[-1].done
    assert not (tmp_path / "m.bin").exists()


def test_a_download_ends_at_its_deadline(allow_http, tmp_path):
    limits = DownloadLimits(timeout=5, min_rate=0, deadline=0.3)
    with Scripted(_drip) as server, pytest.raises(DownloadError, match="longer than the 0.3 s"):
        download(server.url("/m.bin"), tmp_path / "m.bin", limits=limits)


def test_cli_install_from_a_dripping_server_stops_with_one_line(allow_http, tmp_path, capsys):
    with Scripted(_drip) as server:
        url = server.url("/slow.tar.gz")
        code = main(
            ["--library", str(tmp_path / "lib"), "models", "install", url, "--deadline", "0.3"]
        )
    err = capsys.readouterr().err
    assert code == 2
    assert "slow.tar.gz" in err  # the progress bar was drawn
    errors = [line for line in err.splitlines() if line.startswith("photofind: error:")]
    assert len(errors) == 1 and "longer than the 0.3 s" in errors[0]
    assert "unexpected" not in err


# -- 4. a download that fills the disk -----------------------------------------------------


def test_a_download_larger_than_the_free_space_is_refused_before_writing(allow_http, tmp_path):
    with LocalServer() as server:
        server.files["/m.bin"] = Served(os.urandom(200_000))
        with pytest.raises(DownloadError, match="needs 200,000 more bytes .* only 0 free"):
            download(server.url("/m.bin"), tmp_path / "m.bin", free=lambda path: 1000)
    assert list(tmp_path.iterdir()) == []


def _endless(handler, stop):
    """A body of unknown length (no Content-Length): 100 MB, more than the small disk."""
    handler.send_response(200)
    handler.end_headers()
    block = os.urandom(MB)
    for _ in range(100):
        if stop.is_set():
            return
        handler.wfile.write(block)


def test_a_disk_filling_download_leaves_nothing_and_the_next_install_works(
    allow_http, small_disk, random_package
):
    store = ModelStore(small_disk / "library")
    with Scripted(_endless) as server, pytest.raises(DownloadError, match="filled up .* deleted"):
        store.install(server.url("/big.tar.gz"))
    assert not [p for p in (store.root / ".downloads").rglob("*") if p.is_file()]
    assert _nothing_installed(store)
    report = store.install(random_package, name="good")  # the disk has room again
    assert (report.path / "model.json").is_file()


def test_a_download_announced_larger_than_the_small_disk_writes_nothing(allow_http, small_disk):
    with LocalServer() as server:
        server.files["/big.bin"] = Served(b"\0" * (60 * MB))
        with pytest.raises(DownloadError, match="needs 62,914,560 more bytes"):
            download(server.url("/big.bin"), small_disk / "big.bin")
    assert _used(small_disk) == 0


# -- 8. decompression bombs ----------------------------------------------------------------


def _sparse_tar(tmp_path: Path) -> Path:
    """126 bytes of GNU sparse tar that unpack to a 3 GiB visual.onnx."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is needed to write a sparse archive")
    src = tmp_path / "sparse-src"
    src.mkdir()
    _sparse_file(src / "visual.onnx", 3 << 30)
    out = tmp_path / "sparse.tar.gz"
    subprocess.run(["tar", "--sparse", "-czf", str(out), "-C", str(src), "visual.onnx"], check=True)
    return out


def _lying_tar(tmp_path: Path) -> Path:
    """A tar header that declares 3 GiB with no data behind it."""
    out = tmp_path / "header.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo("pkg/visual.onnx")
        info.size = 3 << 30
        tar.addfile(info)
    return out


@pytest.mark.parametrize("build", [_sparse_tar, _lying_tar])
def test_a_tar_declaring_gigabytes_is_refused_before_writing(tmp_path, build):
    source = build(tmp_path)
    assert source.stat().st_size < 2048
    dest = tmp_path / "out"
    with pytest.raises(archive.ArchiveError, match="unpacks to more than 268,435,456 bytes"):
        archive.extract(source, dest)
    assert not dest.exists()


def _zip_of_zeros(out: Path, size: int) -> Path:
    with (
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("pkg/visual.onnx", "w", force_zip64=True) as fh,
    ):
        block = b"\0" * MB
        for _ in range(size // MB):
            fh.write(block)
    return out


def test_a_zip_bomb_is_refused_before_writing(tmp_path):
    bomb = _zip_of_zeros(tmp_path / "bomb.zip", 300 * MB)
    assert bomb.stat().st_size < 1 * MB
    with pytest.raises(archive.ArchiveError, match="unpacks to more than"):
        archive.extract(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_archive_larger_than_the_free_space_is_refused_before_writing(small_disk, tmp_path):
    bomb = _zip_of_zeros(tmp_path / "zeros.zip", 64 * MB)  # under the ratio cap's floor
    with pytest.raises(archive.ArchiveError, match=r"needs 67,108,864 bytes .* free"):
        archive.extract(bomb, small_disk / "out")
    assert _used(small_disk) == 0 and not (small_disk / "out").exists()


def test_a_disk_that_fills_while_unpacking_gives_one_sentence(small_disk, tmp_path):
    # The free space is misreported (another program filling the disk meanwhile): the real
    # ENOSPC must end the unpacking cleanly.
    big = tmp_path / "random.zip"
    with zipfile.ZipFile(big, "w") as zf:
        zf.writestr("pkg/visual.onnx", os.urandom(60 * MB))
    with pytest.raises(archive.ArchiveError, match="is full .* nothing was installed"):
        archive.extract(big, small_disk / "out", free=lambda path: 1 << 40)
    assert _used(small_disk) == 0


def test_the_cap_holds_while_writing_whatever_the_sizes_declared(tmp_path):
    budget = WriteBudget("src", tmp_path, max_bytes=10 * MB, error=ModelError)
    with pytest.raises(ModelError, match="holds more than the 1,000 bytes it declares"):
        budget.copy(io.BytesIO(b"x" * 5000), tmp_path / "a", declared=1000)
    budget = WriteBudget("src", tmp_path, max_bytes=3 * MB, error=ModelError)
    with pytest.raises(ModelError, match="unpacks to more than 3,145,728 bytes"):
        budget.copy(io.BytesIO(b"x" * (5 * MB)), tmp_path / "b")
    assert (tmp_path / "b").stat().st_size <= 3 * MB


# -- 9. folder installs --------------------------------------------------------------------


def test_a_folder_with_a_link_to_dev_zero_is_refused(tmp_path, random_package):
    source = _copy_package(random_package, tmp_path / "src")
    (source / "weights.bin").symlink_to("/dev/zero")
    store = ModelStore(tmp_path / "library")
    with pytest.raises(ModelError, match=r"weights\.bin: is not a regular file"):
        store.install(source)
    assert _nothing_installed(store)


def test_a_folder_with_a_fifo_is_refused_without_hanging(tmp_path, random_package):
    source = _copy_package(random_package, tmp_path / "src")
    os.mkfifo(source / "pipe")
    store = ModelStore(tmp_path / "library")
    with pytest.raises(ModelError, match="pipe: is not a regular file"):
        store.install(source)


def test_a_folder_holding_the_library_is_refused(tmp_path, random_package):
    source = _copy_package(random_package, tmp_path / "src")
    store = ModelStore(source / "library")
    with pytest.raises(ModelError, match="contains this library"):
        store.install(source)
    assert _nothing_installed(store)


def test_a_folder_over_the_cap_is_refused_before_copying(tmp_path, random_package):
    source = _copy_package(random_package, tmp_path / "src")
    _sparse_file(source / "huge.bin", 9 << 30)
    store = ModelStore(tmp_path / "library")
    with pytest.raises(ModelError, match="holds more than 8,589,934,592 bytes"):
        store.install(source)
    assert _nothing_installed(store)


def test_links_to_files_are_copied_as_plain_files(tmp_path, random_package):
    # Hugging Face's cache: every file a link into a blob store.
    blobs = _copy_package(random_package, tmp_path / "blobs")
    source = tmp_path / "snapshot"
    source.mkdir()
    for path in blobs.iterdir():
        (source / path.name).symlink_to(path)
    report = ModelStore(tmp_path / "library").install(source, name="linked")
    assert not any(p.is_symlink() for p in report.path.iterdir())
    assert (report.path / "model.json").read_bytes() == (blobs / "model.json").read_bytes()


def test_a_linked_folder_is_refused(tmp_path, random_package):
    source = tmp_path / "src"
    source.mkdir()
    (source / "pkg").symlink_to(random_package)
    with pytest.raises(ModelError, match="is a link to a folder"):
        ModelStore(tmp_path / "library").install(source)


# -- 10. memory bombs in packages ----------------------------------------------------------

_UNDER_RLIMIT = """
import resource, sys
from photofind.clip.tokenizer import read_merges
limit = 600 << 20  # importing photofind.clip peaks near 210 MB of address space
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    read_merges(sys.argv[1])
except MemoryError:
    print("MemoryError")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_gzip_bomb_vocabulary_is_refused_within_bounded_memory(tmp_path):
    bomb = tmp_path / "vocab.txt.gz"
    with gzip.GzipFile(bomb, "wb", mtime=0) as out:
        out.write(b"#version: 0.2\n")
        block = b"a b\n" * (MB // 4)
        for _ in range(100):  # 100 MB of text, 26 million lines: >1 GB as Python strings
            out.write(block)
    assert bomb.stat().st_size < 200_000
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_RLIMIT, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ModelError") and "unpacks to more than" in done.stdout


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("context_length", 1_000_000_000),
        ("embed_dim", 1 << 30),
        ("image_size", 100_000),
        ("vocab_size", 10**12),
        ("context_length", 1),
    ],
)
def test_sizes_in_model_json_are_bounded(tmp_path, random_package, field, value):
    pkg = _copy_package(random_package, tmp_path / "pkg")
    _rewrite_manifest(pkg, **{field: value})
    with pytest.raises(ModelError, match=f"field '{field}' should be"):
        read_manifest(pkg)


def _giant_output_graph(path: Path, size: int, rows: int, dim: int) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [rows, dim])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["s"], value=shape),
            helper.make_node("ConstantOfShape", ["s"], ["embedding"]),
        ],
        "giant",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [rows, dim])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))


def test_a_graph_declaring_a_giant_output_is_refused_before_it_runs(tmp_path, random_package):
    pkg = _copy_package(random_package, tmp_path / "pkg")
    spec = read_manifest(pkg)
    rows = (16 << 30) // (4 * spec.embed_dim)  # 16 GiB of float32, as in the audit
    _giant_output_graph(pkg / spec.files["visual"].path, spec.image_size, rows, spec.embed_dim)
    _rehash(pkg)
    with pytest.raises(ModelError, match=f"output declares {rows:,} rows"):
        load_model(pkg, provider="cpu", check=True)
    store = ModelStore(tmp_path / "library")
    with pytest.raises(ModelError, match="output declares"):
        store.install(pkg)
    assert _nothing_installed(store)


# -- 13. every byte a model uses is hashed -------------------------------------------------


def test_a_tgz_with_a_corrupt_checksum_is_refused(tmp_path, random_package):
    data = bytearray(_tar_gz(random_package, tmp_path / "pkg.tar.gz").read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC32, after the tar's end-of-archive marker
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(bytes(data))
    with pytest.raises(archive.ArchiveError, match="damaged or truncated: CRC check failed"):
        archive.extract(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_xz_tar_with_a_corrupt_stream_is_refused(tmp_path):
    import lzma

    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        info = tarfile.TarInfo("pkg/visual.onnx")
        payload = os.urandom(200_000)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    # Zero blocks after the end-of-archive marker, as tar writers pad: tar stops reading
    # before them, so only reading the stream to its end reaches the corrupt footer.
    data = bytearray(lzma.compress(plain.getvalue() + bytes(MB)))
    data[-1] ^= 0xFF  # the xz stream footer's magic
    out = tmp_path / "pkg.tar"  # xz inside a .tar name: tarfile detects it by content
    out.write_bytes(bytes(data))
    with pytest.raises(archive.ArchiveError, match="damaged or truncated: Corrupt input data"):
        archive.extract(out, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_local_archive_is_hashed_and_can_be_pinned(tmp_path, random_package):
    source = _tar_gz(random_package, tmp_path / "pkg.tar.gz")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    store = ModelStore(tmp_path / "library")
    report = store.install(source, name="a")
    assert report.unpinned == {str(source): digest}
    with pytest.raises(ModelError, match=f"sha256 is {digest}, expected {'ab' * 32}"):
        store.install(source, name="b", sha256="ab" * 32)
    assert store.install(source, name="c", sha256=digest).unpinned == {}
    assert sorted(store.installed()) == ["a", "c"]


def _external(pkg: Path, graph: str = "visual.onnx", location: str = "visual.onnx.data") -> None:
    """Rewrite ``pkg/graph`` with its weights in the external file ``location``."""
    onnx = pytest.importorskip("onnx")
    graph = pkg / graph
    model = onnx.load(str(graph))
    onnx.save_model(
        model,
        str(graph),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )


def test_onnx_external_data_must_be_listed_and_hashed(tmp_path, random_package):
    pkg = _copy_package(random_package, tmp_path / "pkg")
    _external(pkg)
    _rehash(pkg)  # the graph's new hash, but the data file not listed
    with pytest.raises(ModelError, match="reads external data from 'visual.onnx.data', which"):
        load_model(pkg, provider="cpu")

    _rehash(pkg, visual_data="visual.onnx.data")
    original = load_model(random_package, provider="cpu")
    external = load_model(pkg, provider="cpu")
    size = original.info.image_size
    pixels = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    np.testing.assert_allclose(
        external.encode_pixels(pixels), original.encode_pixels(pixels), atol=1e-6
    )

    store = ModelStore(tmp_path / "library")
    store.install(pkg, name="ext")
    store.use("ext")
    data = store.root / "ext" / "visual.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x40  # one weight changed: different vectors
    data.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match=r"visual\.onnx\.data is corrupt or was changed"):
        store.use("ext")


def test_immich_external_data_is_carried_listed_and_hashed(tmp_path, torch_package):
    from tests.test_model_store import _immich_layout

    layout = _immich_layout(tmp_path / "immich", int32=False, dynamic=True)
    _external(layout / "visual", graph="model.onnx", location="model.onnx_data")
    store = ModelStore(tmp_path / "library")
    report = store.install(layout, name="immich-ext")
    files = {role: f.path for role, f in report.spec.files.items()}
    assert files["visual"] == "visual/model.onnx"
    assert files["visual_data"] == "visual/model.onnx_data"
    size = report.spec.image_size
    pixels = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    np.testing.assert_allclose(
        load_model("immich-ext", provider="cpu", library=store.library).encode_pixels(pixels),
        load_model(torch_package, provider="cpu").encode_pixels(pixels),
        atol=1e-5,
    )
    data = report.path / "visual" / "model.onnx_data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    data.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="model.onnx_data is corrupt or was changed"):
        store.use("immich-ext")


# -- 14. a bad package is listed as bad ----------------------------------------------------

BAD_MANIFESTS = {
    "bad-scale": ("logit_scale", "abc", "'logit_scale' should be a positive number"),
    "bad-extra": ("extra", [], "'extra' should be an object"),
    "bad-name": ("name", {"a": 1}, "'name' should be str"),
    "bad-batch": ("extra", {"visual_batch": "x"}, "extra.visual_batch should be"),
}


def _bad_store(tmp_path: Path, torch_package: Path) -> ModelStore:
    store = ModelStore(tmp_path / "library")
    store.install(torch_package, name="good")
    for name, (field, value, _) in BAD_MANIFESTS.items():
        pkg = _copy_package(store.root / "good", store.root / name)
        _rewrite_manifest(pkg, **{field: value})
    deep = _copy_package(store.root / "good", store.root / "bad-deep")
    (deep / "model.json").write_text("[" * 200_000 + "]" * 200_000)
    return store


def test_bad_manifests_are_listed_as_bad_and_the_others_still_work(tmp_path, random_package):
    store = _bad_store(tmp_path, random_package)
    listed = {m.name: m for m in store.list() if not m.bundled}
    assert listed["good"].problem is None and listed["good"].spec is not None
    for name, (_, _, reason) in BAD_MANIFESTS.items():
        assert reason in listed[name].problem and listed[name].spec is None
    assert "nested too deeply" in listed["bad-deep"].problem
    store.use("good")  # the others still work


def test_cli_lists_bad_packages_with_their_reasons(tmp_path, random_package, capsys):
    store = _bad_store(tmp_path, random_package)
    lib = str(store.library)
    assert main(["--library", lib, "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "nested too deeply" in out
    for _, _, reason in BAD_MANIFESTS.values():
        assert reason in out
    assert main(["--library", lib, "models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["problem"] is None and rows["bad-extra"]["problem"]
    assert main(["--library", lib, "models", "use", "bad-scale"]) == 2
    err = capsys.readouterr().err
    assert "logit_scale" in err and "unexpected" not in err
    assert main(["--library", lib, "models", "use", "good"]) == 0


# -- 15. one clear line for broken archives and framing ------------------------------------


def _small_zip(out: Path) -> Path:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/model.json", b"lorem ipsum dolor sit amet " * 400)
    return out


def _patch_zip(path: Path, *, method: int | None = None, flags: int | None = None) -> None:
    """Rewrite the compression method / flag bits in the local and the central header."""
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    for start, flag_at, method_at in ((local, 6, 8), (central, 8, 10)):
        if flags is not None:
            data[start + flag_at : start + flag_at + 2] = flags.to_bytes(2, "little")
        if method is not None:
            data[start + method_at : start + method_at + 2] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_a_zip_with_corrupt_deflate_data_is_one_clear_error(tmp_path):
    out = _small_zip(tmp_path / "bad.zip")
    data = bytearray(out.read_bytes())
    start = 30 + len("pkg/model.json")  # the first local header's data
    data[start : start + 16] = b"\xff" * 16
    out.write_bytes(bytes(data))
    with pytest.raises(archive.ArchiveError, match="bad.zip is damaged or truncated"):
        archive.extract(out, tmp_path / "out")


def test_a_deflate64_zip_is_one_clear_error(tmp_path):
    out = _small_zip(tmp_path / "d64.zip")
    _patch_zip(out, method=9)
    with pytest.raises(archive.ArchiveError, match="compressed with deflate64, which photofind"):
        archive.extract(out, tmp_path / "out")


def test_an_encrypted_zip_is_one_clear_error(tmp_path):
    out = _small_zip(tmp_path / "enc.zip")
    _patch_zip(out, flags=0x1)
    with pytest.raises(archive.ArchiveError, match="is encrypted"):
        archive.extract(out, tmp_path / "out")


def test_a_chunk_size_line_over_64_kb_is_one_clear_error(allow_http, tmp_path):
    def respond(handler, stop):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.write(b"1" * 70_000 + b"\r\n")

    with (
        Scripted(respond) as server,
        pytest.raises(DownloadError, match="malformed response .*LineTooLong"),
    ):
        download(server.url("/m.bin"), tmp_path / "m.bin")
