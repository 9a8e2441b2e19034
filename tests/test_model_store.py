"""The model store: install from folders, archives, URLs and catalogue entries; use; remove.

Real packages (the tiny random-weights one), real archives, a real HTTP server on
127.0.0.1 (plain http behind the test-only switch) and real ONNX sessions for the probe.
Immich-layout exports are made here with torch from the same seeded weights as the
``torch_package`` fixture, so the adapted package must give the very same vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from photofind.cli import main
from photofind.clip import load_model
from photofind.clip.package import CLIP_MEAN, CLIP_STD, read_manifest
from photofind.errors import ModelError
from photofind.models import adapters, archive, catalogue
from photofind.models.download import ALLOW_HTTP_ENV, DownloadError
from photofind.models.store import ModelStore, active_model
from tests.local_http import LocalServer, Served

# -- builders ------------------------------------------------------------------------------


def _tar_gz(folder: Path, out: Path, top: str = "pkg") -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=top)
    return out


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return out


def _export_onnx(module, example, input_name: str, target: Path, dynamic: bool) -> None:
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notices are not under test
        torch.onnx.export(
            module,
            (example,),
            str(target),
            dynamo=False,
            input_names=[input_name],
            output_names=["embedding"],
            dynamic_axes={input_name: {0: "batch"}} if dynamic else None,
            opset_version=17,
        )


def _tokenizer_json(merges_as_lists: bool) -> dict:
    from export.vocab import find_clip_vocab
    from photofind.clip.tokenizer import base_vocabulary, read_merges

    merges = read_merges(find_clip_vocab(), 49408 - 514)
    table = base_vocabulary() + ["".join(m) for m in merges]
    return {
        "model": {
            "type": "BPE",
            "vocab": {token: i for i, token in enumerate(table)},
            "merges": [list(m) if merges_as_lists else " ".join(m) for m in merges],
        },
        # The specials live here in Hugging Face files, not (only) in the vocab.
        "added_tokens": [
            {"id": 49406, "content": "<|startoftext|>"},
            {"id": 49407, "content": "<|endoftext|>"},
        ],
    }


def _immich_layout(folder: Path, *, int32: bool, dynamic: bool, lists: bool = False) -> Path:
    """Immich's published layout around the tiny-test CLIP with seed 0."""
    torch = pytest.importorskip("torch")
    from export.model import (
        NormalizedImageEncoder,
        NormalizedTextEncoder,
        arch_config,
        random_init_model,
    )

    config = arch_config("tiny-test")
    model = random_init_model(config, seed=0).eval()

    class Int32Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = NormalizedTextEncoder(model)

        def forward(self, text):
            return self.inner(text.to(torch.int64))

    ids = torch.zeros(1, config.context_length, dtype=torch.int64)
    ids[0, :3] = torch.tensor([49406, 320, 49407])
    pixels = torch.zeros(1, 3, config.image_size, config.image_size)
    _export_onnx(
        NormalizedImageEncoder(model), pixels, "image", folder / "visual/model.onnx", dynamic
    )
    if int32:
        _export_onnx(Int32Text(), ids.int(), "text", folder / "textual/model.onnx", dynamic)
    else:
        _export_onnx(
            NormalizedTextEncoder(model), ids, "text", folder / "textual/model.onnx", dynamic
        )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "embed_dim": config.embed_dim,
                "vision_cfg": {"image_size": config.image_size, "patch_size": 8, "width": 128},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64},
            }
        )
    )
    (folder / "visual/preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": config.image_size,
                "mode": "RGB",
                "mean": list(CLIP_MEAN),
                "std": list(CLIP_STD),
                "interpolation": "bicubic",
                "resize_mode": "shortest",
                "fill_color": 0,
            }
        )
    )
    (folder / "textual/tokenizer.json").write_text(json.dumps(_tokenizer_json(lists)))
    return folder


@pytest.fixture(scope="module")
def immich_int64(tmp_path_factory):
    return _immich_layout(tmp_path_factory.mktemp("immich64"), int32=False, dynamic=True)


@pytest.fixture(scope="module")
def immich_int32_static(tmp_path_factory):
    return _immich_layout(
        tmp_path_factory.mktemp("immich32"), int32=True, dynamic=False, lists=True
    )


@pytest.fixture
def store(tmp_path):
    return ModelStore(tmp_path / "library")


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    with LocalServer() as srv:
        yield srv


def _leftovers(store: ModelStore) -> list[str]:
    """Anything in models/ besides installed packages and the download cache."""
    if not store.root.exists():
        return []
    return sorted(
        p.name
        for p in store.root.iterdir()
        if p.name != ".downloads" and not (p / "model.json").is_file()
    )


def _same_vectors(a, b) -> None:
    texts = ["a photo of a cat", "a red circle on a blue background"]
    np.testing.assert_allclose(a.encode_texts(texts), b.encode_texts(texts), atol=1e-5)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((2, 3, a.info.image_size, a.info.image_size)).astype(np.float32)
    np.testing.assert_allclose(a.encode_pixels(pixels), b.encode_pixels(pixels), atol=1e-5)


# -- local sources -------------------------------------------------------------------------


def test_install_folder_then_list_use_and_load(store, random_package):
    report = store.install(random_package)
    assert report.layout == "photofind" and report.unpinned == {}
    name = read_manifest(random_package).name
    assert report.name == name and report.path == store.root / name
    assert [m.name for m in store.list() if not m.bundled] == [name]
    assert _leftovers(store) == []

    store.use(name)
    assert active_model(store.library) == name
    assert [m.name for m in store.list() if m.active] == [name]
    _same_vectors(
        load_model(name, provider="cpu", library=store.library),
        load_model(random_package, provider="cpu"),
    )


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_install_archives(store, random_package, tmp_path, kind):
    if kind == "zip":
        source = _zip(random_package, tmp_path / "pkg.zip")
    else:
        source = _tar_gz(random_package, tmp_path / "pkg.tar.gz")
    report = store.install(source, name="from-archive")
    assert report.path == store.root / "from-archive"
    assert (report.path / "model.json").is_file()
    assert _leftovers(store) == []


def test_a_corrupt_package_is_refused_and_nothing_installed(store, random_package, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(random_package, broken)
    with open(broken / "visual.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="visual.onnx is corrupt"):
        store.install(broken)
    assert store.installed() == {} and _leftovers(store) == []


def test_name_clash_needs_replace(store, random_package):
    store.install(random_package, name="m")
    with pytest.raises(ModelError, match="already installed"):
        store.install(random_package, name="m")
    store.install(random_package, name="m", replace=True)
    assert list(store.installed()) == ["m"] and _leftovers(store) == []
    with pytest.raises(ModelError, match="not a usable model name"):
        store.install(random_package, name="../evil")


def test_remove_refuses_the_active_model_unless_forced(store, random_package):
    store.install(random_package, name="a")
    store.install(random_package, name="b")
    store.use("a")
    with pytest.raises(ModelError, match="active model"):
        store.remove("a")
    store.remove("b")
    store.remove("a", force=True)
    assert store.installed() == {} and active_model(store.library) is None
    with pytest.raises(ModelError, match="no model named 'a' is installed"):
        store.remove("a")
    with pytest.raises(ModelError, match="no model named"):
        store.use("a")


def test_unknown_source(store):
    with pytest.raises(ModelError, match="neither a folder"):
        store.install("no-such-thing")


# -- archive safety ------------------------------------------------------------------------


def _tar_with(tmp_path: Path, add) -> Path:
    out = tmp_path / "evil.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        add(tar)
    return out


def _file(tar, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda t: _file(t, "../escape.txt"), r"leaves the archive folder"),
        (lambda t: _file(t, "/abs.txt"), r"absolute path"),
        (lambda t: _link(t, "pkg/link", "/etc"), r"is a link"),
        (lambda t: _link(t, "pkg/hard", "/etc/passwd", tarfile.LNKTYPE), r"is a link"),
        (lambda t: (_link(t, "pkg/up", ".."), _file(t, "pkg/up/x.txt")), r"is a link"),
    ],
)
def test_unsafe_tar_entries_are_refused(tmp_path, build, message):
    source = _tar_with(tmp_path, build)
    dest = tmp_path / "out"
    with pytest.raises(archive.ArchiveError, match=message):
        archive.extract(source, dest)
    assert not dest.exists() and not (tmp_path / "escape.txt").exists()


def test_zip_symlink_and_size_limit_are_refused(tmp_path):
    out = tmp_path / "evil.zip"
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo("pkg/link")
        info.external_attr = (0o120777) << 16  # a symlink, as Info-ZIP stores it
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(archive.ArchiveError, match="is a link"):
        archive.extract(out, tmp_path / "a")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/zeros.bin", b"\0" * 1_000_000)
    with pytest.raises(archive.ArchiveError, match="more than 100,000 bytes"):
        archive.extract(bomb, tmp_path / "b", max_bytes=100_000)
    assert not (tmp_path / "b").exists()


def test_an_archive_with_a_traversal_is_not_installed(store, tmp_path):
    source = _tar_with(tmp_path, lambda t: _file(t, "pkg/../../../x.txt"))
    with pytest.raises(archive.ArchiveError):
        store.install(source)
    assert store.installed() == {} and _leftovers(store) == []


# -- URLs ----------------------------------------------------------------------------------


def test_install_from_url_with_hash(store, server, random_package, tmp_path):
    data = _tar_gz(random_package, tmp_path / "pkg.tar.gz").read_bytes()
    served = server.files["/pkg.tar.gz"] = Served(data)
    report = store.install(server.url("/pkg.tar.gz"), name="web", sha256=served.sha256)
    assert report.unpinned == {} and (report.path / "model.json").is_file()
    # The downloaded archive is not kept once installed.
    assert not any(p.is_file() for p in (store.root / ".downloads").rglob("*"))


def test_url_without_hash_reports_the_computed_one(store, server, random_package, tmp_path):
    data = _tar_gz(random_package, tmp_path / "pkg.tar.gz").read_bytes()
    server.files["/pkg.tar.gz"] = Served(data)
    report = store.install(server.url("/pkg.tar.gz"))
    assert report.unpinned == {server.url("/pkg.tar.gz"): hashlib.sha256(data).hexdigest()}


def test_url_with_wrong_hash_installs_nothing(store, server, random_package, tmp_path):
    server.files["/pkg.tar.gz"] = Served(
        _tar_gz(random_package, tmp_path / "p.tar.gz").read_bytes()
    )
    with pytest.raises(DownloadError, match="sha256"):
        store.install(server.url("/pkg.tar.gz"), sha256="ab" * 32)
    assert store.installed() == {} and _leftovers(store) == []
    assert not any(p.is_file() for p in (store.root / ".downloads").rglob("*"))


def test_interrupted_url_install_resumes_to_a_verified_package(
    store, server, random_package, tmp_path
):
    data = _tar_gz(random_package, tmp_path / "pkg.tar.gz").read_bytes()
    # More drops than one install call retries: the first install fails, the second resumes.
    served = server.files["/pkg.tar.gz"] = Served(data, drops=3)
    with pytest.raises(DownloadError, match="interrupted"):
        store.install(server.url("/pkg.tar.gz"), sha256=served.sha256)
    assert store.installed() == {}
    parts = list((store.root / ".downloads").rglob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(data)
    report = store.install(server.url("/pkg.tar.gz"), sha256=served.sha256)
    assert (report.path / "model.json").is_file()
    ranges = server.log.ranges("/pkg.tar.gz")
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")


def test_url_install_needs_https_without_the_switch(store, monkeypatch):
    monkeypatch.delenv(ALLOW_HTTP_ENV, raising=False)
    with pytest.raises(DownloadError, match="refusing plain http"):
        store.install("http://127.0.0.1:9/pkg.tar.gz")
    assert store.installed() == {} and _leftovers(store) == []


def test_url_not_found(store, server):
    with pytest.raises(DownloadError, match="404"):
        store.install(server.url("/nope.tar.gz"))
    assert store.installed() == {}


# -- Immich's layout and catalogue entries -------------------------------------------------


def test_immich_layout_gives_the_same_vectors(store, immich_int64, torch_package, tmp_path):
    source = tmp_path / "copy"
    shutil.copytree(immich_int64, source)
    report = store.install(source, name="immich-tiny")
    assert report.layout == "immich"
    extra = report.spec.extra
    assert extra["adapted_from"] == "immich" and extra["bpe_merges"] == 48894
    assert report.spec.format == 2 and report.spec.text.kind == "clip-bpe"
    # Same seed, same weights: the adapted package must agree with our own export.
    adapted = load_model("immich-tiny", provider="cpu", library=store.library)
    _same_vectors(adapted, load_model(torch_package, provider="cpu"))
    assert adapted._text_parts["ids"][1] is np.int64 and adapted._visual_batch is None
    assert source.is_dir()  # a local source is copied, never moved


def test_int32_fixed_batch_export_installs_and_gives_the_same_vectors(
    store, immich_int32_static, torch_package, tmp_path
):
    """Immich's exporter feeds int32 ids and fixes the batch at 1; the runtime reads both
    from the graphs and honours them."""
    adapters.adapt_immich(immich_int32_static, tmp_path / "adapted", name="i32")
    store.install(immich_int32_static, name="immich-i32")
    adapted = load_model("immich-i32", provider="cpu", library=store.library)
    _same_vectors(adapted, load_model(torch_package, provider="cpu"))
    assert adapted._text_parts["ids"][1] is np.int32
    assert adapted._visual_batch == 1 and adapted._textual_batch == 1


def test_a_tokenizer_with_other_ids_is_refused(immich_int64, tmp_path):
    source = tmp_path / "copy"
    shutil.copytree(immich_int64, source)
    data = json.loads((source / "textual/tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["a</w>"], vocab["b</w>"] = vocab["b</w>"], vocab["a</w>"]
    (source / "textual/tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="not CLIP's BPE"):
        adapters.adapt_immich(source, tmp_path / "out", name="x")


def test_unsupported_preprocessing_is_refused(immich_int64, tmp_path):
    source = tmp_path / "copy"
    shutil.copytree(immich_int64, source)
    pre = json.loads((source / "visual/preprocess_cfg.json").read_text())
    pre["resize_mode"] = "fisheye"
    (source / "visual/preprocess_cfg.json").write_text(json.dumps(pre))
    with pytest.raises(ModelError, match="resize_mode 'fisheye'"):
        adapters.adapt_immich(source, tmp_path / "out", name="x")


def _entry(server, folder: Path, pinned: dict) -> catalogue.CatalogueEntry:
    files = []
    for rel in adapters.IMMICH_REQUIRED:
        server.files[f"/repo/{rel}"] = Served((folder / rel).read_bytes())
        files.append(catalogue.RemoteFile(rel, sha256=pinned.get(rel)))
    return catalogue.CatalogueEntry(
        name="tiny-immich",
        kind="onnx",
        arch="tiny-test",
        description="tiny test model in Immich's layout",
        license="MIT",
        source="local test server",
        layout="immich",
        base_url=server.url("/repo/"),
        revision="test",
        files=tuple(files),
        installs_as="tiny-from-catalogue",
    )


def test_catalogue_entry_install_pins_what_it_can(store, server, immich_int64):
    visual = "visual/model.onnx"
    digest = hashlib.sha256((immich_int64 / visual).read_bytes()).hexdigest()
    report = store.install(_entry(server, immich_int64, {visual: digest}))
    assert report.name == "tiny-from-catalogue"
    # Every file without a pinned hash is reported with the hash computed here.
    assert set(report.unpinned) == set(adapters.IMMICH_REQUIRED) - {visual}
    for rel, value in report.unpinned.items():
        assert value == hashlib.sha256((immich_int64 / rel).read_bytes()).hexdigest()
    assert read_manifest(report.path).source == "local test server"


def test_catalogue_entry_with_a_wrong_pinned_hash_installs_nothing(store, server, immich_int64):
    entry = _entry(server, immich_int64, {"textual/model.onnx": "cd" * 32})
    with pytest.raises(DownloadError, match="sha256"):
        store.install(entry)
    assert store.installed() == {} and _leftovers(store) == []


def test_the_catalogue_is_honest():
    vitb32 = catalogue.get("ViT-B-32")
    assert vitb32.kind == "onnx" and vitb32.layout == "immich"
    # Listed from the hub at install time: nothing pinned by this project.
    assert vitb32.repo == "immich-app/ViT-B-32__openai" and not vitb32.files
    assert not vitb32.pinned
    openai = catalogue.get("openai-ViT-B-32-checkpoint")
    assert openai.checkpoint_sha256 in openai.checkpoint_url and openai.pinned
    assert "--activation quick_gelu" in openai.export_command()
    for entry in catalogue.entries():
        assert entry.source.startswith("https://")
        if entry.repo:
            assert entry.layout == "immich" and entry.revision == "main" and not entry.pinned
            continue
        urls = [entry.url_of(f) for f in entry.files] or [entry.checkpoint_url]
        assert all(u.startswith("https://") for u in urls)
    with pytest.raises(ModelError, match="not in the model catalogue"):
        catalogue.get("nope")


def test_checkpoint_entries_explain_the_export_route(store):
    with pytest.raises(ModelError, match="python -m export convert --arch ViT-B-32"):
        store.install("openai-ViT-B-32-checkpoint")


# -- the command line ----------------------------------------------------------------------


def test_cli_models_commands(tmp_path, random_package, capsys):
    lib = str(tmp_path / "lib")
    assert main(["--library", lib, "models", "install", str(random_package), "--name", "m1"]) == 0
    assert "installed m1" in capsys.readouterr().out
    assert main(["--library", lib, "models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows if not r["bundled"]] == ["m1"]

    # Without --model and without a choice, commands that need a model say how to choose.
    assert main(["--library", lib, "embed", "--text", "hi"]) == 2
    assert "models use NAME" in capsys.readouterr().err
    assert main(["--library", lib, "models", "use", "m1"]) == 0
    capsys.readouterr()
    assert json.loads((Path(lib) / "settings.json").read_text()) == {"model": "m1", "version": 1}
    assert main(["--library", lib, "embed", "--text", "hi"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == read_manifest(random_package).name

    assert main(["--library", lib, "models", "remove", "m1"]) == 2
    assert "active model" in capsys.readouterr().err
    assert main(["--library", lib, "models", "remove", "m1", "--force"]) == 0
    assert main(["--library", lib, "models", "list", "--catalogue"]) == 0
    out = capsys.readouterr().out
    assert "ViT-B-32__openai" in out and "NOT pinned" in out and "python -m export convert" in out


def test_a_broken_settings_file_is_named_and_set_aside(tmp_path, caplog):
    (tmp_path / "settings.json").write_text("{broken")
    assert active_model(tmp_path) is None
    assert "settings.json is not JSON" in caplog.text and "settings.json.bad-1" in caplog.text
    assert (tmp_path / "settings.json.bad-1").read_text() == "{broken"
