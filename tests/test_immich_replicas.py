"""Immich's model layouts installed by name from a hub replica on 127.0.0.1, then searched.

One replica per layout kind (tests/immich_replicas.py): OpenAI CLIP (BPE, int32, batch 1),
SigLIP (Unigram, canonicalize, squash, int64), NLLB (Unigram with Flores-200 language
tokens) and M-CLIP (WordPiece, input_ids + attention_mask, external data named
``Constant_*`` and by a UUID). Each is found through ``HF_ENDPOINT``, listed through the
hub's paged tree API, fetched and checked file by file (LFS sha256, git blob ids), adapted,
probed, and then indexes three photos and answers text queries through the real CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photofind.cli import main
from photofind.clip import load_model
from photofind.clip.package import read_manifest
from photofind.errors import ModelError
from photofind.models import catalogue, facts, hub
from photofind.models.download import ALLOW_HTTP_ENV, DownloadError
from photofind.models.store import ModelStore
from photofind.paths import models_dir
from tests import immich_replicas as replicas
from tests.local_http import LocalServer, Served

pytest.importorskip("onnx", reason="the replicas' graphs are built with onnx's helper API")

REPOS = {
    "immich-app/ViT-B-32__openai": ("openai", "1" * 40),
    "immich-app/ViT-B-32__replica-only": ("openai", "2" * 40),  # not in the catalogue
    "immich-app/ViT-B-16-SigLIP__webli": ("siglip", "3" * 40),
    "immich-app/nllb-clip-base-siglip__v1": ("nllb", "4" * 40),
    "immich-app/LABSE-Vit-L-14": ("mclip", "5" * 40),
}
BUILDERS = {
    "openai": replicas.openai_layout,
    "siglip": replicas.siglip_layout,
    "nllb": replicas.nllb_layout,
    "mclip": replicas.mclip_layout,
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return {kind: build(tmp_path_factory.mktemp(kind)) for kind, build in BUILDERS.items()}


@pytest.fixture
def hub_server(monkeypatch, layouts):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    with LocalServer() as server:
        replica = replicas.HubReplica(server)
        for repo, (kind, commit) in REPOS.items():
            replica.add(repo, layouts[kind], commit=commit)
        # huggingface_hub strips a trailing slash; so must we.
        monkeypatch.setenv(hub.ENDPOINT_ENV, server.base + "/")
        yield server


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, rgb in replicas.COLOURS.items():
        pixels = np.clip(np.array(rgb) * 230 + rng.normal(12, 4, (40, 60, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}.png")
    return folder


def _search(lib: Path, model: str, query: str, capsys, *more) -> list[str]:
    argv = ["--library", lib, "--model", model, "--provider", "cpu"]
    argv += ["search", query, "--json", "--all", "-n", "3", *more]
    assert main([str(a) for a in argv]) == 0
    return [Path(hit["path"]).stem for hit in json.loads(capsys.readouterr().out)]


CASES = [
    # (repo, installed name, [(query, language, expected first photo)])
    (
        "ViT-B-32__openai",
        "ViT-B-32-openai",
        [("a photo of a red", "en_US.UTF-8", "red"), ("green", "en_US.UTF-8", "green")],
    ),
    (
        "immich-app/ViT-B-32__replica-only",
        "ViT-B-32__replica-only",
        [("the blue photo", "en_US.UTF-8", "blue")],
    ),
    (
        "ViT-B-16-SigLIP__webli",
        "ViT-B-16-SigLIP__webli",
        # Canonicalised: "RED!" is "red" (no lower-casing normalizer in this tokenizer.json).
        [("A photo of the RED!", "en_US.UTF-8", "red"), ("Green?", "en_US.UTF-8", "green")],
    ),
    (
        "nllb-clip-base-siglip__v1",
        "nllb-clip-base-siglip__v1",
        [("ảnh màu đỏ", "vi_VN.UTF-8", "red"), ("lục", "vi_VN.UTF-8", "green")],
    ),
    (
        "LABSE-Vit-L-14",
        "LABSE-Vit-L-14",
        [("ảnh màu đỏ", "vi_VN.UTF-8", "red"), ("a GREEN photo", "en_US.UTF-8", "green")],
    ),
]


@pytest.mark.parametrize("repo, installed, queries", CASES, ids=[c[1] for c in CASES])
def test_a_replica_installs_by_name_and_searches(
    hub_server, photos, tmp_path, capsys, monkeypatch, repo, installed, queries
):
    lib = tmp_path / "lib"
    assert main(["--library", str(lib), "models", "install", repo]) == 0
    assert f"installed {installed}" in capsys.readouterr().out
    fetched = [r["path"] for r in hub_server.log.requests if "/resolve/" in r["path"]]
    assert fetched and not any("armnn" in p or "rknn" in p or "/." in p for p in fetched)
    spec = read_manifest(models_dir(lib) / installed)
    assert spec.format == 2 and spec.extra["revision"] == REPOS[_full(repo)][1]
    assert spec.extra["hub_repo"] == _full(repo)

    argv = ["--library", lib, "--model", installed, "--provider", "cpu", "index"]
    assert main([str(a) for a in [*argv, "--no-progress", photos]]) == 0
    capsys.readouterr()
    for query, language, expected in queries:
        monkeypatch.setenv("LANG", language)
        monkeypatch.delenv("LC_ALL", raising=False)
        monkeypatch.delenv("LC_MESSAGES", raising=False)
        assert _search(lib, installed, query, capsys)[0] == expected, (query, language)
        # The same with the language named on the command line, whatever the system's.
        monkeypatch.setenv("LANG", "C")
        code = language.split("_")[0]
        hits = _search(lib, installed, query, capsys, "--language", code)
        assert hits[0] == expected, (query, code)
    if installed.startswith("nllb"):
        # The language token is the one asked for (French's pulls every query to green).
        assert _search(lib, installed, "đỏ", capsys, "--language", "fr")[0] == "green"
        monkeypatch.setenv("LANG", "fr_FR.UTF-8")
        assert _search(lib, installed, "đỏ", capsys)[0] == "green"


def _full(repo: str) -> str:
    return repo if repo.startswith("immich-app/") else f"immich-app/{repo}"


def test_what_each_layout_becomes(hub_server, tmp_path):
    store = ModelStore(tmp_path / "lib")
    siglip = store.install("ViT-B-16-SigLIP__webli").spec
    assert (siglip.resize, siglip.mean, siglip.text.kind) == ("squash", (0.5,) * 3, "hf")
    assert siglip.text.canonicalize and siglip.text.pad == "<pad>"
    assert siglip.context_length == 64

    nllb = store.install("nllb-clip-base-siglip__v1").spec
    assert nllb.text.language_codes["vi"] == "vie_Latn" and nllb.text.default_language
    model = load_model("nllb-clip-base-siglip__v1", provider="cpu", library=store.library)
    ids, mask = model.tokenizer.batch(["đỏ"], "vi_VN")
    token = model.tokenizer.token_id
    assert ids[0, 0] == token("vie_Latn") and ids[0, 1] == token("▁đỏ")
    assert ids[0, 2] == token("</s>") and (ids[0, 3:] == token("<pad>")).all()
    assert mask[0].tolist() == [1, 1, 1] + [0] * 74
    assert model.tokenizer.batch(["đỏ"], "fr-CA")[0][0, 0] == token("fra_Latn")
    assert model.tokenizer.batch(["đỏ"], "xx")[0][0, 0] == token("eng_Latn")  # the default
    about = facts.installed_facts(store)["nllb-clip-base-siglip__v1"]
    assert about.languages == "multilingual (~201)" and about.speed.images_per_s > 0

    mclip = store.install("LABSE-Vit-L-14").spec
    names = {f.path for f in mclip.files.values()}
    assert {"textual/Constant_17_attr__value", f"textual/{replicas.UUID_NAME}"} <= names
    model = load_model("LABSE-Vit-L-14", provider="cpu", library=store.library)
    model.check()
    assert set(model._text_parts) == {"ids", "mask"}

    openai = store.install("ViT-B-32__openai").spec
    assert openai.text.kind == "clip-bpe" and openai.extra["bpe_merges"] == 48894
    model = load_model("ViT-B-32-openai", provider="cpu", library=store.library)
    assert model.tokenize(["a photo of a cat"])[0, :7].tolist() == [
        49406,
        320,
        1125,
        539,
        320,
        2368,
        49407,
    ]


def test_a_file_changed_on_the_hub_after_its_listing_installs_nothing(hub_server, tmp_path):
    store = ModelStore(tmp_path / "lib")
    commit = REPOS["immich-app/ViT-B-16-SigLIP__webli"][1]
    small = f"/immich-app/ViT-B-16-SigLIP__webli/resolve/{commit}/config.json"
    hub_server.files[small].data = hub_server.files[small].data.replace(b"64", b"65")
    with pytest.raises(DownloadError, match="not the git blob"):
        store.install("ViT-B-16-SigLIP__webli")
    large = f"/immich-app/ViT-B-16-SigLIP__webli/resolve/{commit}/textual/tokenizer.json"
    hub_server.files[small].data = hub_server.files[small].data.replace(b"65", b"64")
    hub_server.files[large].data = hub_server.files[large].data.replace(b"<pad>", b"<PAD>")
    with pytest.raises(DownloadError, match="sha256"):
        store.install("ViT-B-16-SigLIP__webli")
    assert store.installed() == {}


def test_an_unknown_repository_is_a_clear_error(hub_server, tmp_path):
    with pytest.raises(DownloadError, match="404 .*no such model repository"):
        ModelStore(tmp_path / "lib").install("immich-app/ViT-Z-99__nothing")


def test_an_immich_folder_without_a_name_is_named_after_itself(layouts, tmp_path):
    store = ModelStore(tmp_path / "lib")
    for name, kind in (("ViT-B-16-SigLIP__webli", "siglip"), ("my-labse", "mclip")):
        source = tmp_path / name
        shutil.copytree(layouts[kind], source)
        assert store.install(source).name == name
    assert sorted(store.installed()) == ["ViT-B-16-SigLIP__webli", "my-labse"]


def test_the_catalogue_lists_immichs_models(capsys):
    names = {e.name for e in catalogue.entries()}
    assert "ViT-B-32__laion2b-s34b-b79k" in names and "ViT-B-32__laion2b_s34b_b79k" not in names
    for expected in ("nllb-clip-base-siglip__v1", "XLM-Roberta-Large-Vit-B-32", "RN50__openai"):
        assert expected in names
    assert catalogue.find_or_immich("immich-app/Foo__bar").repo == "immich-app/Foo__bar"
    assert catalogue.find_or_immich("not-a-model") is None
    assert main(["models", "list", "--catalogue", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    immich = [r for r in rows if r["source"].startswith("https://huggingface.co/immich-app/")]
    assert len(immich) >= 55
    nllb = next(r for r in rows if r["name"] == "nllb-clip-base-siglip__v1")
    assert nllb["multilingual"] and nllb["embed_dim"] == 768 and not nllb["pinned"]
    assert nllb["approx_bytes"] > 1e9
    mclip = next(r for r in rows if r["name"] == "XLM-Roberta-Large-Vit-B-32")
    assert mclip["image_tower_of"] == "ViT-B-32__openai"
    assert main(["models", "list", "--catalogue"]) == 0
    text = capsys.readouterr().out
    assert "multilingual (~201)" in text and "NOT pinned" in text


def test_the_hub_address_honours_hf_endpoint(monkeypatch):
    monkeypatch.delenv(hub.ENDPOINT_ENV, raising=False)
    assert hub.file_url("immich-app/x", "abc", "visual/model.onnx") == (
        "https://huggingface.co/immich-app/x/resolve/abc/visual/model.onnx"
    )
    monkeypatch.setenv(hub.ENDPOINT_ENV, "https://hf-mirror.example/")
    assert hub.endpoint() == "https://hf-mirror.example"
    assert not hub.wanted("textual/rknpu/rk3588/model.rknn")
    assert not hub.wanted("visual/armnn/model.armnn") and not hub.wanted(".gitattributes")
    assert hub.wanted("visual/4f1e0b6f-58a4") and hub.wanted("textual/Constant_17_attr__value")


def test_format_2_refuses_what_it_cannot_run(layouts, tmp_path):
    store = ModelStore(tmp_path / "lib")
    source = tmp_path / "ViT-B-16-SigLIP__webli"
    shutil.copytree(layouts["siglip"], source)
    config = json.loads((source / "textual/tokenizer_config.json").read_text())
    config["pad_token"] = "<nope>"
    (source / "textual/tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="pad token '<nope>' is not in the vocabulary"):
        store.install(source)
    assert store.installed() == {}


def test_a_model_sharing_the_image_tower_switches_without_a_re_index(layouts, photos, tmp_path):
    """M-CLIP's text encoder beside the very image graph of the CLIP model indexed with:
    the switch keeps every photo vector; a model with another image tower re-indexes."""
    from photofind.library.library import Library, model_id
    from photofind.search import SearchEngine

    store = ModelStore(tmp_path / "models-home")
    sources = {}
    for name, kind in (("ViT-B-32__openai", "openai"), ("my-mclip", "mclip")):
        sources[name] = tmp_path / name
        shutil.copytree(layouts[kind], sources[name])
    # M-CLIP's image side is its CLIP's: the same image graph bytes and preprocessing.
    for rel in ("visual/model.onnx", "visual/preprocess_cfg.json"):
        shutil.copyfile(sources["ViT-B-32__openai"] / rel, sources["my-mclip"] / rel)
    sources["siglip"] = tmp_path / "siglip"
    shutil.copytree(layouts["siglip"], sources["siglip"])
    models = {
        name: load_model(store.install(src).path, provider="cpu") for name, src in sources.items()
    }
    clip, mclip, siglip = models["ViT-B-32__openai"], models["my-mclip"], models["siglip"]
    assert clip.image_tower_id == mclip.image_tower_id != siglip.image_tower_id

    library = Library.open(tmp_path / "lib")
    library.add_folder(photos)
    library.scan()
    library.index_pending(clip, batch_size=2)
    before = {i: v.copy() for ids, vs in library.catalog.embeddings() for i, v in zip(ids, vs)}
    generation = library.catalog.generation

    assert library.begin_model_change(mclip) is False  # no staged change: active at once
    assert library.catalog.model_id == model_id(mclip) and library.staged_model_id is None
    after = {i: v for ids, vs in library.catalog.embeddings() for i, v in zip(ids, vs)}
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[i], before[i]) for i in before)
    assert library.catalog.generation > generation
    hits = SearchEngine(library, mclip).search("đỏ", k=3, cutoff=False)
    assert Path(hits[0].path).stem == "red"

    # SigLIP's image tower differs: a staged re-index, the M-CLIP vectors serving meanwhile.
    assert library.begin_model_change(siglip) is True
    assert library.catalog.model_id == model_id(mclip)
    library.close()


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"type": "file", "path": "../evil.onnx", "size": 3, "oid": "a" * 40}, "unsafe"),
        ({"type": "file", "path": "/etc/passwd", "size": 3, "oid": "a" * 40}, "unsafe"),
        ({"type": "file", "path": "visual/x", "size": -1, "oid": "a" * 40}, "malformed"),
        ({"type": "file", "path": "visual/x", "size": 3}, "neither an LFS sha256"),
        (
            {"type": "file", "path": "visual/x", "size": 3, "lfs": {"oid": "short"}},
            "malformed LFS sha256",
        ),
    ],
)
def test_a_hostile_listing_installs_nothing(hub_server, tmp_path, entry, message):
    repo, commit = "immich-app/ViT-B-32__hostile", "6" * 40
    hub_server.files[f"/api/models/{repo}/revision/main"] = Served(
        json.dumps({"sha": commit}).encode()
    )
    hub_server.files[f"/api/models/{repo}/tree/{commit}?recursive=true"] = Served(
        json.dumps([entry]).encode()
    )
    store = ModelStore(tmp_path / "lib")
    with pytest.raises(DownloadError, match=message):
        store.install(repo)
    assert store.installed() == {}
    assert not any(
        "/resolve/" in r["path"] and "hostile" in r["path"] for r in hub_server.log.requests
    )
