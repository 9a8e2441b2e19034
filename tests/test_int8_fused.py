"""The int8 graphs with fused attention (export/fuse.py): every transformer block's
attention becomes one ONNX Runtime Attention node before quantization (a QAttention
after), with the same vectors as the fp32 graph, the causal mask of the text tower and its
dynamic token axis kept; a graph of another pattern, or an older unfused int8 graph, still
works as before."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from tiny_package import tiny_copy as _tiny_copy

from photofind.clip import load_model
from photofind.clip.package import read_manifest, sha256_file
from photofind.clip.variants import INT8, THRESHOLDS
from photofind.paths import bundled_models_dir

onnx = pytest.importorskip("onnx", reason="the quantizer is export/ tooling (onnx)")
ort = pytest.importorskip("onnxruntime")


def _ops(path) -> collections.Counter:
    model = onnx.load(str(path), load_external_data=False)
    return collections.Counter(node.op_type for node in model.graph.node)


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _ids(spec, length: int, rows: int = 3, seed: int = 0) -> np.ndarray:
    """Random CLIP-BPE ids of ``length`` ending in the end-of-text id (the largest), one
    row with an end-of-text in its middle (what a batch cut at its longest row holds)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, spec.vocab_size - 1, size=(rows, length))
    ids[:, -1] = spec.vocab_size - 1
    ids[0, length // 2] = spec.vocab_size - 1
    return ids.astype(np.int64)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _lengths(spec) -> list[int]:
    # Short queries (what a search runs, cut after the end-of-text token) and the full context.
    return [2, 8, spec.context_length]


@pytest.fixture(scope="module")
def fused_package(tmp_path_factory):
    from export.quantize import add_int8, check

    folder = _tiny_copy(tmp_path_factory.mktemp("fused") / "tiny-synthetic")
    add_int8(folder)
    figures = check(folder, thresholds={**THRESHOLDS, "speedup_min": 0.0})
    return folder, figures


def test_every_text_block_is_fused_and_recorded(fused_package):
    folder, figures = fused_package
    spec = read_manifest(folder)
    layers = spec.extra["config"]["text_layers"]
    record = json.loads((folder / "model.json").read_text())["extra"]["variants"]["int8"]
    assert record["fused_attention"] == {"visual": 0, "textual": layers}
    assert record["check"]["passed"], record["check"]["refused_because"]
    ops = _ops(folder / spec.files["textual_int8"].path)
    # One QAttention a block, and no unfused attention left.
    assert ops["QAttention"] == layers and ops["Softmax"] == 0
    # The block's other MatMuls (out-projection, MLP) are int8 as before.
    assert ops["MatMulInteger"] >= 3 * layers
    assert ops["DynamicQuantizeLinear"] >= 4 * layers


def test_the_image_graph_is_quantized_as_before(fused_package, tmp_path):
    """The image tower is not fused (slower so at its batch sizes), and its int8 graph is
    byte for byte what the quantizer made before the fusion existed: the photo vectors'
    model id, named by that graph's sha256, stays, and no library re-indexes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder, _ = fused_package
    spec = read_manifest(folder)
    ops = _ops(folder / spec.files["visual_int8"].path)
    assert ops["QAttention"] == 0 and ops["Softmax"] == spec.extra["config"]["vision_layers"]
    quantize_dynamic(
        str(folder / spec.files["visual"].path),
        str(tmp_path / "before.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    assert sha256_file(tmp_path / "before.onnx") == spec.files["visual_int8"].sha256


def test_fused_text_graph_keeps_the_causal_mask_and_the_token_axis(fused_package, tmp_path):
    """The fused fp32 graph gives the unfused one's vectors (cosine ≥ 0.9999) at short and
    full lengths, rows with an end-of-text in their middle included; and a fused graph
    without the causal mask would not (so the comparison can tell)."""
    from export.fuse import fuse_attention

    folder, _ = fused_package
    spec = read_manifest(folder)
    source = folder / spec.files["textual"].path
    model = onnx.load(str(source))
    assert fuse_attention(model) == spec.extra["config"]["text_layers"]
    attention = [n for n in model.graph.node if n.op_type == "Attention"]
    assert all(
        onnx.helper.get_attribute_value(a) == 1
        for n in attention
        for a in n.attribute
        if a.name == "unidirectional"
    )
    onnx.save(model, str(tmp_path / "fused.onnx"))
    for attr in (a for n in attention for a in n.attribute if a.name == "unidirectional"):
        attr.i = 0
    onnx.save(model, str(tmp_path / "bidirectional.onnx"))
    plain, fused = _session(source), _session(tmp_path / "fused.onnx")
    bidirectional = _session(tmp_path / "bidirectional.onnx")
    name = plain.get_inputs()[0].name
    for length in _lengths(spec):
        ids = _ids(spec, length)
        want = plain.run(None, {name: ids})[0]
        got = fused.run(None, {name: ids})[0]
        assert got.shape == want.shape == (3, spec.embed_dim)
        assert _cosines(want, got).min() >= 0.9999, length
        if length > 2:
            assert _cosines(want, bidirectional.run(None, {name: ids})[0]).min() < 0.9999


def test_fused_int8_text_vectors_match_fp32_at_every_length(fused_package):
    folder, _ = fused_package
    spec = read_manifest(folder)
    fp32, int8 = (_session(folder / spec.files[r].path) for r in ("textual", "textual_int8"))
    name = fp32.get_inputs()[0].name
    for length in _lengths(spec):
        ids = _ids(spec, length, seed=length)
        cos = _cosines(fp32.run(None, {name: ids})[0], int8.run(None, {name: ids})[0])
        assert cos.min() >= THRESHOLDS["text_cosine_min"], length


def test_the_app_runs_the_fused_graphs(fused_package):
    folder, _ = fused_package
    fast = load_model(folder, provider="cpu", precision="fast")
    exact = load_model(folder, provider="cpu", precision="exact")
    assert fast.variant == INT8 and fast.cuts_text_ids
    texts = ["a red circle", "two blue squares and a green star on a striped background"]
    assert (fast.encode_texts(texts) * exact.encode_texts(texts)).sum(axis=1).min() > 0.99


def test_a_mask_that_is_not_causal_is_not_fused(tmp_path):
    """The pattern is matched exactly: the same graph with another mask constant keeps its
    attention unfused, and is quantized as it is."""
    from export.fuse import _Graph, fuse_attention
    from export.quantize import probes_for, quantize_graph

    folder = _tiny_copy(tmp_path / "tiny")
    spec = read_manifest(folder)
    source = folder / spec.files["textual"].path
    model = onnx.load(str(source))
    graph = _Graph(model.graph)
    masks = [
        n
        for n in model.graph.node
        if n.op_type == "Constant"
        and (v := graph.const(n.output[0])) is not None
        and v.ndim == 2
        and v.shape == (spec.context_length, spec.context_length)
    ]
    assert len(masks) == 1
    value = graph.const(masks[0].output[0]).copy()
    value[0, 1] = 0.0  # the first token may now see the second
    masks[0].attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(value))
    onnx.save(model, str(tmp_path / "other_mask.onnx"))
    assert fuse_attention(onnx.load(str(tmp_path / "other_mask.onnx"))) == 0
    probes = probes_for(tmp_path / "other_mask.onnx", spec, "textual")
    assert quantize_graph(tmp_path / "other_mask.onnx", tmp_path / "q.onnx", probes=probes) == 0
    ops = _ops(tmp_path / "q.onnx")
    assert ops["QAttention"] == 0 and ops["Softmax"] == spec.extra["config"]["text_layers"]


def test_an_older_unfused_int8_package_still_runs_and_passes(tmp_path):
    """int8 graphs made before the fusion (quantized as exported) keep working: checked,
    used by "fast", the same vectors as fp32 within the thresholds."""
    from export.quantize import INT8_ROLES, check, quantize_graph

    folder = _tiny_copy(tmp_path / "tiny")
    data = json.loads((folder / "model.json").read_text())
    for tower, role in INT8_ROLES.items():
        target = folder / f"{tower}_int8.onnx"
        assert quantize_graph(folder / data["files"][tower]["path"], target) == 0
        assert _ops(target)["QAttention"] == 0
        data["files"][role] = {"path": target.name, "sha256": sha256_file(target)}
    (folder / "model.json").write_text(json.dumps(data))
    figures = check(folder, thresholds={**THRESHOLDS, "speedup_min": 0.0})
    assert figures["passed"], figures["refused_because"]
    fast = load_model(folder, provider="cpu", precision="fast")
    assert fast.variant == INT8
    assert fast.encode_texts(["a red circle"]).shape == (1, read_manifest(folder).embed_dim)


@pytest.mark.slow
def test_vitb32_text_tower_is_fused_and_faithful(vitb32_package, tmp_path):
    """ViT-B/32's text tower (random weights): 12 QAttention, vectors as fp32's within the
    check's threshold at short and 77-token inputs, and the fused fp32 graph equal to the
    exported one."""
    from export.quantize import fuse_checked, probes_for, quantize_graph

    spec = read_manifest(vitb32_package)
    source = vitb32_package / spec.files["textual"].path
    probes = probes_for(source, spec, "textual")
    assert {p["input_ids"].shape[1] for p in probes} == {8, 77}
    assert fuse_checked(source, tmp_path / "fused.onnx", probes) == 12
    assert quantize_graph(source, tmp_path / "q.onnx", probes=probes) == 12
    ops = _ops(tmp_path / "q.onnx")
    assert ops["QAttention"] == 12 and ops["Softmax"] == 0
    fp32, fused, int8 = (
        _session(p) for p in (source, tmp_path / "fused.onnx", tmp_path / "q.onnx")
    )
    for length in (3, 8, 77):
        ids = _ids(spec, length, seed=length)
        want = fp32.run(None, {"input_ids": ids})[0]
        assert _cosines(want, fused.run(None, {"input_ids": ids})[0]).min() >= 0.9999
        assert _cosines(want, int8.run(None, {"input_ids": ids})[0]).min() >= 0.99


def test_the_text_tower_gets_every_core_unless_told(fused_package):
    """A query's few tokens are bound by reading the weights, which two threads do faster
    than one on a quiet machine (TEXT_TOWER_THREADS); an explicit count is kept for both."""
    from photofind.clip.model import TEXT_TOWER_THREADS
    from photofind.clip.providers import cpu_threads

    folder, _ = fused_package

    def threads(model, tower):
        return model._session(tower).get_session_options().intra_op_num_threads

    default = load_model(folder, provider="cpu", precision="fast")
    assert TEXT_TOWER_THREADS is None
    assert threads(default, "textual") == threads(default, "visual") == cpu_threads()
    told = load_model(folder, provider="cpu", precision="fast", threads=1)
    assert threads(told, "textual") == threads(told, "visual") == 1


def test_a_text_tower_with_a_mask_input_is_fused_too(tmp_path):
    """tiny-multilingual's text graph (ids and an attention mask, Hugging Face style; the
    same causal blocks): fused, and its int8 vectors as fp32's at every length."""
    from export.quantize import fuse_checked, probes_for, quantize_graph

    source_dir = bundled_models_dir() / "tiny-multilingual"
    if not (source_dir / "model.json").is_file():
        pytest.skip("resources/models/tiny-multilingual is not there")
    spec = read_manifest(source_dir)
    source = source_dir / spec.files["textual"].path
    probes = probes_for(source, spec, "textual")
    assert all(len(feed) == 2 for feed in probes)
    layers = fuse_checked(source, tmp_path / "fused.onnx", probes)
    assert layers > 0
    assert quantize_graph(source, tmp_path / "q.onnx", probes=probes) == layers
    assert _ops(tmp_path / "q.onnx")["QAttention"] == layers
    fp32, int8 = _session(source), _session(tmp_path / "q.onnx")
    names = [i.name for i in fp32.get_inputs()]
    rng = np.random.default_rng(5)
    for length in (3, 8, spec.context_length):
        ids = rng.integers(3, spec.vocab_size, size=(3, length)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[0, length // 2 + 1 :] = 0  # a shorter row, padded
        feed = dict(zip(names, (ids, mask), strict=True))
        cos = _cosines(fp32.run(None, feed)[0], int8.run(None, feed)[0])
        assert cos.min() >= THRESHOLDS["text_cosine_min"], length
