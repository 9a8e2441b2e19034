"""The int8 variant of a model: made by export/, checked against fp32, used only when the
check passed, and never mixed with the fp32 vectors of the same model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from images import write_photo_jpeg
from tiny_package import tiny_copy as _tiny_copy

from photofind.clip import load_model
from photofind.clip.package import read_manifest
from photofind.clip.variants import FP32, INT8, THRESHOLDS, choose_variant
from photofind.errors import ModelError
from photofind.library.library import Library
from photofind.library.model_id import ModelId
from photofind.library.model_session import load_model_by_id
from photofind.paths import models_dir


@pytest.fixture(scope="module")
def int8_package(tmp_path_factory):
    """A copy of the bundled tiny CLIP with int8 graphs, checked (the check's own speed
    criterion is what a loaded machine may fail: it is judged in the tests below with
    the fidelity thresholds only)."""
    pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
    from export.quantize import add_int8, check

    folder = _tiny_copy(tmp_path_factory.mktemp("int8") / "tiny-synthetic")
    add_int8(folder)
    figures = check(folder, thresholds={**THRESHOLDS, "speedup_min": 0.0})
    return folder, figures


def test_the_check_measures_fidelity_and_records_it_in_the_manifest(int8_package):
    folder, figures = int8_package
    assert figures["passed"], figures["refused_because"]
    assert figures["image_cosine_min"] >= 0.99 and figures["text_cosine_min"] >= 0.99
    assert figures["top1_agreement"] >= 0.9
    assert figures["recall_at_5_int8"] >= figures["recall_at_5_fp32"] - 0.02
    recorded = json.loads((folder / "model.json").read_text())["extra"]["variants"]["int8"]
    assert recorded["visual"] == "visual_int8" and recorded["textual"] == "textual_int8"
    assert recorded["check"]["image_cosine_min"] == figures["image_cosine_min"]
    spec = read_manifest(folder)
    assert {"visual_int8", "textual_int8"} <= set(spec.files)


def test_fast_runs_the_int8_graphs_and_exact_the_fp32_ones(int8_package):
    folder, _ = int8_package
    fast = load_model(folder, provider="cpu", precision="fast")
    exact = load_model(folder, provider="cpu", precision="exact")
    assert (fast.variant, exact.variant) == (INT8, FP32)
    # The vectors of the two are close but not the same: the graphs differ.
    pixels = np.stack([exact.preprocess(write_photo_jpeg(folder / "p.jpg", 320, 240, seed=3))])
    a, b = fast.encode_pixels(pixels), exact.encode_pixels(pixels)
    assert 0.99 < float((a * b).sum()) < 1.0
    texts = ["a red circle", "two blue squares on a striped background"]
    cos = (fast.encode_texts(texts) * exact.encode_texts(texts)).sum(axis=1)
    assert cos.min() > 0.99
    # Lazy like fp32: a text search built only the text session.
    text_only = load_model(folder, provider="cpu", precision="fast")
    text_only.encode_texts("a star")
    assert text_only.sessions_open == {"textual"}


def test_variant_is_part_of_the_model_id(int8_package):
    folder, _ = int8_package
    fast = load_model(folder, provider="cpu", precision="fast")
    exact = load_model(folder, provider="cpu", precision="exact")
    assert ModelId.of(fast).name == ModelId.of(exact).name
    assert ModelId.of(fast) != ModelId.of(exact)


def test_a_failed_check_keeps_fp32(tmp_path):
    pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
    from export.quantize import add_int8, check

    folder = _tiny_copy(tmp_path / "tiny-synthetic")
    add_int8(folder, towers=("visual", "textual"))
    # A cosine no quantized graph reaches: the check refuses, whatever the machine.
    figures = check(folder, thresholds={**THRESHOLDS, "image_cosine_min": 1.01})
    assert not figures["passed"]
    assert any("image cosine" in why for why in figures["refused_because"])
    assert load_model(folder, provider="cpu", precision="fast").variant == FP32
    assert choose_variant(read_manifest(folder), "fast") == FP32


def test_unchecked_int8_graphs_are_not_used(tmp_path):
    pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
    from export.quantize import add_int8

    folder = _tiny_copy(tmp_path / "tiny-synthetic")
    add_int8(folder)
    assert load_model(folder, provider="cpu").variant == FP32


def test_unknown_precision_is_refused(int8_package):
    folder, _ = int8_package
    with pytest.raises(ModelError, match="unknown precision"):
        load_model(folder, provider="cpu", precision="fastest")


def test_switching_variant_re_runs_the_library_never_mixes(int8_package, tmp_path):
    """Vectors of fp32 then a switch to int8: a staged model change that replaces every
    vector, after which the library's model id is the int8 one."""
    folder, _ = int8_package
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        write_photo_jpeg(photos / f"p{i}.jpg", 320, 240, seed=i)
    exact = load_model(folder, provider="cpu", precision="exact")
    fast = load_model(folder, provider="cpu", precision="fast")
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(photos)
        library.scan()
        assert library.index_pending(exact).indexed == 4
        assert library.catalog.model_id == str(ModelId.of(exact))
        stats = library.index_pending(fast)
        assert stats.indexed == 4  # every photo again, with the int8 encoder
        assert library.catalog.model_id == str(ModelId.of(fast))
        mid = library.catalog.model_id
    # The library's vectors name the variant: the model of this library, installed beside
    # it, is found and loaded as that variant (fp32 ids find the fp32 one).
    shutil.copytree(folder, models_dir(tmp_path / "lib") / "tiny-synthetic")
    assert load_model_by_id(tmp_path / "lib", mid, provider="cpu").variant == INT8
    fp32_id = str(ModelId.of(exact))
    assert load_model_by_id(tmp_path / "lib", fp32_id, provider="cpu").variant == FP32


def test_the_precision_setting_chooses_the_variant_for_the_command_line(int8_package, tmp_path):
    from photofind import settings
    from photofind.cli.context import Context

    folder, _ = int8_package
    lib = tmp_path / "lib"
    lib.mkdir()
    ctx = Context(library=lib, model=str(folder), provider="cpu", verbose=0)
    assert settings.load(lib)["precision"] == "fast"
    assert ctx.load_model().variant == INT8
    settings.update(lib, {"precision": "exact"})
    assert ctx.load_model().variant == FP32


def test_the_settings_dialog_offers_fast_and_exact(qtbot, tmp_path):
    from photofind import settings
    from photofind.gui.settings import GuiSettings, SettingsDialog

    lib = tmp_path / "lib"
    lib.mkdir()
    before = GuiSettings.load(lib)
    assert before.precision == "fast"
    dialog = SettingsDialog(before, ["tiny-synthetic"])
    qtbot.addWidget(dialog)
    box = dialog.precision
    assert [box.itemData(i) for i in range(box.count())] == ["fast", "exact"]
    box.setCurrentIndex(box.findData("exact"))
    after = dialog.value()
    assert after.precision == "exact"
    after.save(lib, since=before)
    assert settings.load(lib)["precision"] == "exact"
    assert GuiSettings.load(lib).precision == "exact"


def test_install_with_int8_makes_and_checks_the_encoders(tmp_path):
    pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
    from photofind.models.store import ModelStore

    source = _tiny_copy(tmp_path / "source")
    report = ModelStore(tmp_path / "lib").install(source, name="tiny-int8", int8=True)
    spec = read_manifest(report.path)
    assert {"visual_int8", "textual_int8"} <= set(spec.files)
    check = spec.extra["variants"]["int8"]["check"]
    # The verdict depends on this machine's speed-up; the note must tell the one recorded.
    note = next(n for n in report.notes if n.startswith("int8 encoders"))
    if check["passed"]:
        assert "precision 'fast' uses them" in note
        assert load_model(report.path, provider="cpu").variant == INT8
    else:
        assert "not used" in note and check["refused_because"][0] in note
        assert load_model(report.path, provider="cpu").variant == FP32
    assert check["image_cosine_min"] >= 0.99
    # The source package is left as it was.
    assert "visual_int8" not in read_manifest(source).files


def test_cli_install_int8(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
    from photofind.cli import main

    source = _tiny_copy(tmp_path / "source")
    lib = tmp_path / "lib"
    code = main(["--library", str(lib), "models", "install", str(source), "--int8"])
    assert code == 0
    assert "int8 encoders made" in capsys.readouterr().out


def test_int8_graphs_of_towers_in_their_own_folders_do_not_collide(tmp_path):
    """Immich's layout keeps both towers as model.onnx, each in its own folder: each int8
    graph lands beside its own fp32 graph, and the manifest's hashes are the files'."""
    pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
    from export.quantize import add_int8
    from photofind.clip.package import sha256_file

    folder = _tiny_copy(tmp_path / "tiny")
    data = json.loads((folder / "model.json").read_text())
    for tower in ("visual", "textual"):
        (folder / tower).mkdir()
        (folder / f"{tower}.onnx").rename(folder / tower / "model.onnx")
        data["files"][tower]["path"] = f"{tower}/model.onnx"
    (folder / "model.json").write_text(json.dumps(data))
    files = add_int8(folder)
    paths = {files[role]["path"] for role in ("visual_int8", "textual_int8")}
    assert paths == {"visual/model_int8.onnx", "textual/model_int8.onnx"}
    for role in ("visual_int8", "textual_int8"):
        assert sha256_file(folder / files[role]["path"]) == files[role]["sha256"]


def test_opening_keeps_held_int8_vectors_when_fast_picks_another_variant(int8_package, tmp_path):
    """The "fast" variant depends on where the encoders run (fp16 or fp32 on CUDA, int8 on
    the CPU): a library opened by either keeps the fast vectors it holds instead of
    re-indexing at every opening; "exact" and fp32 vectors still re-index."""
    from photofind.library.model_session import ModelSession

    folder, _ = int8_package
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_photo_jpeg(photos / f"p{i}.jpg", 320, 240, seed=i)
    root = tmp_path / "lib"
    shutil.copytree(folder, models_dir(root) / "tiny-synthetic")
    fast = load_model(folder, provider="cpu", precision="fast")
    assert fast.variant == INT8 and fast.precision == "fast"
    with Library.open(root) as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(fast)
        held = library.catalog.model_id
        # What "fast" loads on a GPU machine whose package has no fp16 graphs checked there.
        on_gpu = load_model(folder, provider="cpu", variant=FP32)
        on_gpu.precision = "fast"
        session = ModelSession.open(library, on_gpu, provider="cpu")
        assert session.active.variant == INT8 and session.staged is None
        assert library.catalog.model_id == held and library.catalog.staged_model_id is None
        exact = load_model(folder, provider="cpu", precision="exact")
        session = ModelSession.open(library, exact, provider="cpu")
        assert session.active.variant == INT8 and session.staged is exact
        assert library.catalog.staged_model_id == str(ModelId.of(exact))
    with Library.open(tmp_path / "lib-fp32") as library:
        library.add_folder(photos)
        library.scan()
        library.index_pending(exact)
        session = ModelSession.open(library, fast, provider="cpu")
        assert library.catalog.staged_model_id == str(ModelId.of(fast))


def _edit_check(folder, **changes):
    manifest = folder / "model.json"
    data = json.loads(manifest.read_text())
    data["extra"]["variants"]["int8"]["check"].update(changes)
    manifest.write_text(json.dumps(data, indent=2) + "\n")


def test_a_check_stands_for_the_graphs_it_measured_only(int8_package, tmp_path):
    folder = tmp_path / "tiny-synthetic"
    shutil.copytree(int8_package[0], folder)
    check = read_manifest(folder).extra["variants"]["int8"]["check"]
    assert set(check["graphs"]) == {"visual_int8", "textual_int8"} and check["faithful"]
    assert choose_variant(read_manifest(folder), "fast") == INT8
    # The int8 graphs replaced after the check (another quantizer, another machine's copy).
    _edit_check(folder, graphs={**check["graphs"], "textual_int8": "0" * 64})
    assert choose_variant(read_manifest(folder), "fast") == FP32
    with pytest.raises(ModelError, match="not checked"):
        load_model(folder, provider="cpu", variant=INT8)


def test_vectors_of_faithful_int8_graphs_reopen_when_a_re_check_found_them_slow(
    int8_package, tmp_path
):
    """A re-check on a busy machine that finds the int8 graphs only 1.05x as fast takes
    them out of new choices, not the library's own vectors out of search."""
    folder = tmp_path / "tiny-synthetic"
    shutil.copytree(int8_package[0], folder)
    fast = load_model(folder, provider="cpu", precision="fast")
    mid = str(ModelId.of(fast))
    _edit_check(folder, passed=False, refused_because=["int8 image encoder only 1.05x as fast"])
    assert choose_variant(read_manifest(folder), "fast") == FP32
    root = tmp_path / "lib"
    shutil.copytree(folder, models_dir(root) / "tiny-synthetic")
    reopened = load_model_by_id(root, mid, provider="cpu")
    assert reopened is not None and reopened.variant == INT8
    _edit_check(models_dir(root) / "tiny-synthetic", faithful=False)
    assert load_model_by_id(root, mid, provider="cpu") is None
