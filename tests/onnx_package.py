"""A model package with random weights, written without torch.

Most tests need *a* second model beside the bundled ``tiny-synthetic``: one with other
vectors (another dimension, another id) whose scores mean nothing. Exporting one through
``export/`` needs torch; this one is two small ONNX graphs written with ``onnx.helper``
from numpy weights (random features of the pixels; of the random token embeddings up to
the end-of-text token), with the bundled model's BPE vocabulary. They run in real ONNX Runtime
sessions, like any package. Only the tests of ``export/`` need torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from photofind.clip.package import ModelSpec, PackageFile, sha256_file, write_manifest
from photofind.paths import bundled_models_dir

VOCAB = "bpe_tiny_synthetic.txt.gz"
VOCAB_SIZE = 667  # the bundled tiny-synthetic's vocabulary (its model.json says so)


def _save(graph, path: Path) -> None:
    from onnx import helper, save_model

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime of the last years reads
    save_model(model, str(path))


def _visual(path: Path, rng, image_size: int, dim: int) -> None:
    """sin(W x): random features of the pixels, spread over the sphere like a real model's
    vectors (a plain projection would bunch every photo around the mean picture's)."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = 3 * image_size * image_size
    weights = (2.0 * rng.standard_normal((inputs, dim)) / np.sqrt(inputs)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixel_values"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "projection"], ["projected"]),
            helper.make_node("Sin", ["projected"], ["embeddings"]),
        ],
        "random-visual",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["N", 3, image_size, image_size]
            )
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(weights, "projection")],
    )
    _save(graph, path)


def _textual(path: Path, rng, dim: int) -> None:
    """sin of the sum of the token embeddings up to the end-of-text token (the largest id),
    which is where a CLIP reads its text vector: like a causal model, the ids after it
    (padding) change nothing, so ids cut after it give the same vectors."""
    from onnx import TensorProto, helper, numpy_helper

    table = rng.standard_normal((VOCAB_SIZE, dim)).astype(np.float32)
    one = np.array([1], dtype=np.int64)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["token_embedding", "input_ids"], ["tokens"], axis=0),
            helper.make_node("CumSum", ["tokens", "axis"], ["prefix_sums"]),
            helper.make_node("ReduceMax", ["input_ids"], ["eot"], axes=[1], keepdims=1),
            helper.make_node("Equal", ["input_ids", "eot"], ["at_eot"]),
            helper.make_node("Cast", ["at_eot"], ["weight"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["weight", "last"], ["weight3"]),
            helper.make_node("Mul", ["prefix_sums", "weight3"], ["picked"]),
            helper.make_node("ReduceSum", ["picked", "axes"], ["summed"], keepdims=0),
            helper.make_node("Sin", ["summed"], ["embeddings"]),
        ],
        "random-textual",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "tokens"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", dim])],
        [
            numpy_helper.from_array(table, "token_embedding"),
            numpy_helper.from_array(np.array(1, dtype=np.int64), "axis"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "last"),
            numpy_helper.from_array(one, "axes"),
        ],
    )
    _save(graph, path)


def write_random_package(
    folder: Path, *, seed: int = 0, dim: int = 32, image_size: int = 32, context_length: int = 77
) -> Path:
    """Write a package named ``tiny-test-random-seed{seed}`` into ``folder``; return it."""
    pytest.importorskip("onnx", reason="writing an ONNX graph needs the onnx package")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _visual(folder / "visual.onnx", rng, image_size, dim)
    _textual(folder / "textual.onnx", rng, dim)
    shutil.copyfile(bundled_models_dir() / "tiny-synthetic" / VOCAB, folder / VOCAB)
    files = {
        role: PackageFile(name, sha256_file(folder / name))
        for role, name in (("visual", "visual.onnx"), ("textual", "textual.onnx"), ("vocab", VOCAB))
    }
    spec = ModelSpec(
        name=f"tiny-test-random-seed{seed}",
        embed_dim=dim,
        image_size=image_size,
        context_length=context_length,
        vocab_size=VOCAB_SIZE,
        files=files,
        arch="tiny-test",
        description=f"random projections (seed {seed}), written without torch, for tests",
        source="tests/onnx_package.py",
        license="MIT",
        extra={"textual_dynamic_length": True},
    )
    write_manifest(folder, spec)
    return folder
