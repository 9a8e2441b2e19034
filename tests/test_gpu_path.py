"""The GPU path, as far as a machine without a GPU can run it: the encoders through ONNX
Runtime's I/O binding (the same code on the CPU provider), the fp16 variant (made by
export/, checked against fp32 on the CPU, where ONNX Runtime runs float16 graphs too), the
precision -> variant choice per provider, and the batch and decode-pool sizes per provider.

What only a GPU shows (CUDA's speed per batch size, the fp16 speed-up, decode as the bound
at 16 cores) is measured by tests/bench/gpu_run.py on a lent machine."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from images import write_photo_jpeg
from tiny_package import tiny_copy as _tiny_copy

from photofind.clip import load_model
from photofind.clip.io_binding import binds_by_default, run_bound
from photofind.clip.model import ClipModel
from photofind.clip.package import read_manifest
from photofind.clip.pipeline_plan import CPU_BATCH, CUDA_BATCH, plan, plan_for
from photofind.clip.providers import cpu_threads
from photofind.clip.variants import FP16, FP32, INT8, THRESHOLDS, choose_variant
from photofind.errors import ModelError
from photofind.library.indexer import Indexer
from photofind.library.library import Library
from photofind.library.model_id import ModelId
from photofind.library.model_session import load_model_by_id
from photofind.paths import bundled_models_dir, models_dir

TEXTS = ["a red circle", "two blue squares on a striped background", "a small green star"]


def _pixels(model, folder, count=5):
    return np.stack(
        [
            model.preprocess(write_photo_jpeg(folder / f"p{i}.jpg", 320, 240, seed=i))
            for i in range(count)
        ]
    )


@pytest.fixture(scope="module")
def variants_package(tmp_path_factory):
    """The bundled tiny CLIP with int8 graphs (checked, the speed criterion aside as in
    test_int8.py: a loaded machine may fail it) and fp16 graphs, checked on the CPU."""
    pytest.importorskip("onnx", reason="the converters are export/ tooling (onnx)")
    from export import fp16, quantize

    folder = _tiny_copy(tmp_path_factory.mktemp("variants") / "tiny-synthetic")
    quantize.add_int8(folder)
    quantize.check(folder, thresholds={**THRESHOLDS, "speedup_min": 0.0})
    fp16.add_fp16(folder)
    figures = fp16.check(folder, provider="cpu")
    return folder, figures


# -- I/O binding -----------------------------------------------------------------------------


def test_io_binding_is_for_the_gpu_by_default():
    assert binds_by_default("cuda") and not binds_by_default("cpu")
    model = load_model(bundled_models_dir() / "tiny-synthetic", provider="cpu")
    assert not model.io_binding  # measured no faster on the CPU: the plain run stays


def test_bound_runs_give_the_plain_runs_vectors(tmp_path):
    folder = bundled_models_dir() / "tiny-synthetic"
    spec = read_manifest(folder)
    plain = ClipModel(folder, spec, provider="cpu", io_binding=False)
    bound = ClipModel(folder, spec, provider="cpu", io_binding=True)
    assert bound.io_binding and not plain.io_binding
    pixels = _pixels(plain, tmp_path)
    np.testing.assert_array_equal(bound.encode_pixels(pixels), plain.encode_pixels(pixels))
    # The text graph: int64 ids cut to the longest query, batches of 2 and the remainder.
    np.testing.assert_array_equal(
        bound.encode_texts(TEXTS, batch_size=2), plain.encode_texts(TEXTS, batch_size=2)
    )
    # One photo, and a batch through encode_images' own loop.
    np.testing.assert_array_equal(bound.encode_pixels(pixels[:1]), plain.encode_pixels(pixels[:1]))


def test_bound_runs_of_a_graph_with_a_mask_and_a_fixed_batch(random_package, tmp_path):
    """The random package's graphs (another exporter's shape of inputs), and the per-row
    runs of a graph whose batch is fixed at 1 (model.json's extra says so)."""
    spec = read_manifest(random_package)
    plain = ClipModel(random_package, spec, provider="cpu", io_binding=False)
    bound = ClipModel(random_package, spec, provider="cpu", io_binding=True)
    pixels = _pixels(plain, tmp_path, 3)
    np.testing.assert_array_equal(bound.encode_pixels(pixels), plain.encode_pixels(pixels))
    np.testing.assert_array_equal(bound.encode_texts(TEXTS), plain.encode_texts(TEXTS))
    bound._visual_batch = 1  # what a package with extra.visual_batch 1 sets
    np.testing.assert_array_equal(bound.encode_pixels(pixels), plain.encode_pixels(pixels))


def test_a_float16_output_is_widened(tmp_path):
    """An adapted graph may return float16: bound to memory ONNX Runtime allocates, then
    widened to float32, the same values as a plain run's."""
    onnx = pytest.importorskip("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = bundled_models_dir() / "tiny-synthetic" / "textual.onnx"
    half = convert_float_to_float16(onnx.load(str(source)), keep_io_types=False)
    onnx.save(half, str(tmp_path / "half.onnx"))
    session = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].type == "tensor(float16)"
    ids = np.zeros((2, 8), dtype=np.int64)
    ids[:, 0], ids[:, 1:4], ids[:, 4] = 665, np.arange(10, 13), 666
    feeds = {session.get_inputs()[0].name: ids}
    out = run_bound(session, feeds, 2, 128, "cpu")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, session.run(None, feeds)[0].astype(np.float32))


# -- the fp16 variant ------------------------------------------------------------------------


def test_the_fp16_graphs_are_made_checked_and_recorded(variants_package):
    folder, figures = variants_package
    assert figures["passed"], figures["refused_because"]
    # The CPU provider ran the float16 graphs: the check is real here, its speed is not.
    assert figures["provider"] == "cpu" and figures["image_speedup"] is None
    assert figures["finite"] and figures["image_cosine_min"] >= 0.995
    assert figures["text_cosine_min"] >= 0.995 and figures["top10_overlap"] >= 0.9
    spec = read_manifest(folder)
    assert {"visual_fp16", "textual_fp16"} <= set(spec.files)
    recorded = json.loads((folder / "model.json").read_text())["extra"]["variants"]["fp16"]
    assert (recorded["visual"], recorded["textual"]) == ("visual_fp16", "textual_fp16")
    assert recorded["check"]["image_cosine_min"] == figures["image_cosine_min"]
    # Float16 inside, float32 at the edges: the app feeds and reads them as the fp32 ones.
    session = ort.InferenceSession(
        str(folder / spec.files["visual_fp16"].path), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].type == "tensor(float)"
    assert session.get_outputs()[0].type == "tensor(float)"
    size = (folder / spec.files["visual_fp16"].path).stat().st_size
    assert size < 0.6 * (folder / spec.files["visual"].path).stat().st_size


def _with_fp16_check(spec, **changes):
    """``spec`` with its fp16 check record changed (the decision is a function of it)."""
    variants = dict(spec.extra["variants"])
    variants[FP16] = {**variants[FP16], "check": {**variants[FP16]["check"], **changes}}
    return dataclasses.replace(spec, extra={**spec.extra, "variants": variants})


def test_fast_is_int8_on_the_cpu_and_fp16_on_cuda(variants_package):
    """The provider is passed in: this machine's CUDA cannot be asked for. A check made
    on the CPU vouches for the rounded weights, not for float16 arithmetic (the CPU runs
    most of the graph in float32): only one made on CUDA lets CUDA run the fp16 graphs."""
    folder, _ = variants_package
    spec = read_manifest(folder)
    assert choose_variant(spec, "fast", "cpu") == INT8
    assert choose_variant(spec, "fast", "cuda") == FP32  # checked on the CPU only
    # As a check on a CUDA machine records it (photofind.clip.fp16_check):
    on_cuda = _with_fp16_check(spec, provider="cuda", image_speedup=2.0)
    assert choose_variant(on_cuda, "fast", "cuda") == FP16
    assert choose_variant(on_cuda, "fast", "cpu") == INT8
    assert choose_variant(on_cuda, "exact", "cuda") == FP32
    assert choose_variant(_with_fp16_check(on_cuda, passed=False), "fast", "cuda") == FP32
    assert choose_variant(spec, "exact", "cpu") == FP32
    assert load_model(folder, provider="cpu", precision="fast").variant == INT8
    # Without fp16 graphs CUDA runs fp32, never the int8 ones (no CUDA kernels for them).
    variants = {k: v for k, v in spec.extra["variants"].items() if k != FP16}
    int8_only = dataclasses.replace(spec, extra={**spec.extra, "variants": variants})
    assert choose_variant(int8_only, "fast", "cpu") == INT8
    assert choose_variant(int8_only, "fast", "cuda") == FP32


def test_fp16_vectors_have_their_own_model_id(variants_package, tmp_path):
    folder, _ = variants_package
    half = load_model(folder, provider="cpu", variant=FP16)
    exact = load_model(folder, provider="cpu", precision="exact")
    fast = load_model(folder, provider="cpu", precision="fast")
    assert half.visual_role == "visual_fp16"
    pixels = _pixels(exact, tmp_path, 3)
    cos = (half.encode_pixels(pixels) * exact.encode_pixels(pixels)).sum(axis=1)
    assert cos.min() > 0.995
    ids = {str(ModelId.of(m)) for m in (half, exact, fast)}
    assert len(ids) == 3  # fp16, fp32 and int8 vectors never share an id
    assert len({m.image_tower_id for m in (half, exact, fast)}) == 3


def test_a_library_indexed_with_fp16_finds_its_model_again(variants_package, tmp_path):
    folder, _ = variants_package
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_photo_jpeg(photos / f"p{i}.jpg", 320, 240, seed=i)
    half = load_model(folder, provider="cpu", variant=FP16)
    with Library.open(tmp_path / "lib") as library:
        library.add_folder(photos)
        library.scan()
        assert library.index_pending(half).indexed == 3
        mid = library.catalog.model_id
    assert mid == str(ModelId.of(half))
    shutil.copytree(folder, models_dir(tmp_path / "lib") / "tiny-synthetic")
    # On a machine without CUDA the library's fp16 vectors still get their own graphs.
    assert load_model_by_id(tmp_path / "lib", mid, provider="cpu").variant == FP16


def test_unchecked_or_failed_fp16_graphs_are_never_used(tmp_path):
    pytest.importorskip("onnx", reason="the converter is export/ tooling (onnx)")
    from export import fp16

    folder = _tiny_copy(tmp_path / "tiny-synthetic")
    fp16.add_fp16(folder)
    spec = read_manifest(folder)
    assert choose_variant(spec, "fast", "cuda") == FP32  # made, never checked
    assert "visual_fp16" in spec.files
    with pytest.raises(ModelError, match="not checked|not there"):
        load_model(folder, provider="cpu", variant=FP16)
    # A cosine no rounding reaches: refused, whatever the machine.
    figures = fp16.check(folder, thresholds={**_fp16_thresholds(), "image_cosine_min": 1.01})
    assert not figures["passed"] and "image cosine" in figures["refused_because"][0]
    assert choose_variant(read_manifest(folder), "fast", "cuda") == FP32


def test_export_fp16_again_only_checks_the_graphs_it_has(tmp_path, capsys):
    """`python -m export fp16 PKG` on a package that has its fp16 graphs (made on another
    machine) checks them here without converting again; --remake converts."""
    pytest.importorskip("onnx", reason="the converter is export/ tooling (onnx)")
    from export.__main__ import main

    folder = _tiny_copy(tmp_path / "tiny-synthetic")
    assert main(["fp16", str(folder), "--no-check"]) == 0
    graph = folder / read_manifest(folder).files["visual_fp16"].path
    made = graph.stat().st_ino  # a conversion replaces the file: a new inode
    assert "fp16" not in (read_manifest(folder).extra.get("variants") or {})
    assert main(["fp16", str(folder), "--provider", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["passed"] and printed["provider"] == "cpu"
    assert graph.stat().st_ino == made  # checked, not converted again
    assert read_manifest(folder).extra["variants"]["fp16"]["check"]["provider"] == "cpu"
    assert main(["fp16", str(folder), "--remake", "--no-check"]) == 0
    assert graph.stat().st_ino != made
    # The new graphs were not checked: the verdict on the old ones is gone with them.
    assert "fp16" not in (read_manifest(folder).extra.get("variants") or {})


def test_a_check_that_cannot_run_here_is_recorded_and_keeps_fp32(tmp_path):
    """Asked to check on CUDA where there is none: 'not checked on this machine', and the
    graphs stay unused."""
    pytest.importorskip("onnx", reason="the converter is export/ tooling (onnx)")
    from export import fp16
    from photofind.clip.providers import planned_provider

    if planned_provider("auto").name == "cuda":
        pytest.skip("this machine has CUDA: the check runs there")
    folder = _tiny_copy(tmp_path / "tiny-synthetic")
    fp16.add_fp16(folder)
    figures = fp16.check(folder, provider="cuda")
    assert not figures["passed"]
    assert figures["not_checked"].startswith("not checked on this machine")
    recorded = read_manifest(folder).extra["variants"]["fp16"]["check"]
    assert recorded["passed"] is False and "CUDA" in recorded["not_checked"]
    assert choose_variant(read_manifest(folder), "fast", "cuda") == FP32


def _fp16_thresholds():
    from photofind.clip.variants import FP16_THRESHOLDS

    return FP16_THRESHOLDS


def test_install_with_fp16_makes_and_checks_them_and_not_unasked_without_cuda(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the converter is export/ tooling (onnx)")
    from photofind.cli import main
    from photofind.models.fp16 import cuda_here
    from photofind.models.store import ModelStore

    source = _tiny_copy(tmp_path / "source")
    lib = tmp_path / "lib"
    argv = ["--library", str(lib), "models", "install", str(source), "--name", "tiny-fp16"]
    assert main([*argv, "--fp16"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "fp16 encoders" in line)
    store = ModelStore(lib)
    spec = read_manifest(store.root / "tiny-fp16")
    assert {"visual_fp16", "textual_fp16"} <= set(spec.files)
    check = spec.extra["variants"]["fp16"]["check"]
    assert check["passed"] and check["provider"] == ("cuda" if cuda_here() else "cpu")
    if cuda_here():
        assert "precision 'fast' uses them on CUDA" in note
    else:  # checked on the CPU: the note says how to check them where they are used
        assert "checked on the CPU" in note and "once checked there" in note
    assert "visual_fp16" not in read_manifest(source).files  # the source is left as it was
    # Unasked: made only where CUDA can run; --no-fp16: never.
    plain = store.install(source, name="tiny-plain")
    assert ("visual_fp16" in read_manifest(plain.path).files) == cuda_here()
    assert main([*argv[:-1], "tiny-never", "--no-fp16"]) == 0
    assert "visual_fp16" not in read_manifest(store.root / "tiny-never").files


def test_the_doctor_says_which_graphs_run_and_how_indexing_is_planned(tmp_path, capsys):
    from photofind.cli import main

    tiny = bundled_models_dir() / "tiny-synthetic"
    argv = ["--library", str(tmp_path / "lib"), "--model", str(tiny), "--provider", "cpu"]
    assert main([*argv, "doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["model"]["variant"], report["model"]["io_binding"]) == (FP32, False)
    assert report["indexing"]["batch_size"] == CPU_BATCH
    assert report["indexing"]["decode_workers"] == cpu_threads()


# -- batches and decode threads ----------------------------------------------------------------


def test_the_batch_and_the_decode_pool_follow_the_encoder():
    cpu = plan("cpu", 2, encoder_threads=2)
    assert (cpu.batch_size, cpu.decode_workers, cpu.takes_turns) == (CPU_BATCH, 2, True)
    # An encoder on 4 of 16 cores runs beside the pool: 12 decode threads, no more.
    beside = plan("cpu", 16, encoder_threads=4)
    assert (beside.decode_workers, beside.takes_turns) == (12, False)
    assert plan("cpu", 4, encoder_threads=8).decode_workers == 4  # more threads than cores
    gpu = plan("cuda", 16, encoder_threads=0)
    assert (gpu.batch_size, gpu.decode_workers, gpu.takes_turns) == (CUDA_BATCH, 16, False)
    # A large image size: the look-ahead window's tensors cap the batch (ViT-L/14 at 336).
    big = plan("cuda", 16, encoder_threads=0, image_size=336)
    assert CPU_BATCH <= big.batch_size < CUDA_BATCH and big.batch_size % 8 == 0
    assert big.batch_size * 3 * (3 * 336 * 336 * 4) <= 384 * 2**20
    # What the caller asks for wins.
    asked = plan("cuda", 16, encoder_threads=0, batch_size=512, decode_workers=6)
    assert (asked.batch_size, asked.decode_workers) == (512, 6)


def test_the_indexer_takes_the_plan_of_its_model(random_package):
    model = load_model(random_package, provider="cpu")
    indexer = Indexer(None, None, model)
    expected = plan_for(model, cpu_threads())
    assert (indexer.batch_size, indexer.decode_workers) == (CPU_BATCH, cpu_threads())
    assert indexer.plan == expected and expected.takes_turns
    assert indexer.window == CPU_BATCH * 3
    one = load_model(random_package, provider="cpu", threads=1)
    if cpu_threads() > 1:  # an encoder on one thread leaves the other cores to decoding
        assert Indexer(None, None, one).decode_workers == cpu_threads() - 1
    assert Indexer(None, None, model, batch_size=8).batch_size == 8


def test_fp16_graphs_that_fail_to_run_are_a_failed_check_not_an_unchecked_one(tmp_path):
    pytest.importorskip("onnx", reason="the converter is export/ tooling (onnx)")
    from export import fp16
    from photofind.clip.package import sha256_file

    folder = _tiny_copy(tmp_path / "tiny-synthetic")
    fp16.add_fp16(folder)
    manifest = json.loads((folder / "model.json").read_text())
    broken = folder / manifest["files"]["visual_fp16"]["path"]
    broken.write_bytes(b"not an ONNX graph")
    manifest["files"]["visual_fp16"]["sha256"] = sha256_file(broken)
    (folder / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    figures = fp16.check(folder, thresholds=_fp16_thresholds(), provider="cpu")
    assert figures["passed"] is False and "not_checked" not in figures
    assert figures["refused_because"][0].startswith("the fp16 graphs failed here")
    assert choose_variant(read_manifest(folder), "fast", "cuda") == FP32
