"""The torch-free runtime: loading, checking and running a model package."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image

from photofind.clip import load_model, resolve_model
from photofind.clip.package import (
    PackageFile,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)
from photofind.clip.verified import RECORD_NAME, VerifiedFiles, user_record
from photofind.errors import ImageError, ModelError, ProviderError


def _photos(tmp_path, n=5):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(40 + 7 * i, 60 - 3 * i, 3), dtype=np.uint8)
        path = tmp_path / f"p{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def _copy(package, tmp_path):
    dest = tmp_path / "pkg"
    shutil.copytree(package, dest)
    return dest


def test_encodes_images_and_texts_to_unit_vectors(model, tmp_path):
    paths = _photos(tmp_path)
    vecs = model.encode_images(paths)
    assert vecs.shape == (5, model.info.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    texts = model.encode_texts(["a photo of a cat", "a dog", ""])
    assert texts.shape == (3, model.info.dim)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    # Different inputs give different vectors: nothing constant comes out.
    assert np.abs(vecs[0] - vecs[1]).max() > 1e-4
    assert np.abs(texts[0] - texts[1]).max() > 1e-4


def test_paths_and_pil_images_agree_and_batching_does_not_change_results(model, tmp_path):
    paths = _photos(tmp_path)
    by_path = model.encode_images(paths, batch_size=2)
    by_pil = model.encode_images([Image.open(p) for p in paths], batch_size=5)
    one_by_one = np.concatenate([model.encode_images([p]) for p in paths])
    np.testing.assert_allclose(by_path, by_pil, atol=1e-5)
    np.testing.assert_allclose(by_path, one_by_one, atol=1e-5)
    texts = ["red", "a green square", "two small blue stars"]
    np.testing.assert_allclose(
        model.encode_texts(texts, batch_size=1), model.encode_texts(texts), atol=1e-5
    )


def test_empty_inputs_give_empty_arrays(model):
    assert model.encode_images([]).shape == (0, model.info.dim)
    assert model.encode_texts([]).shape == (0, model.info.dim)


def test_runtime_matches_torch_end_to_end(torch_package, tmp_path):
    """Tokenizer + preprocessing + ONNX equal the torch model on the same inputs."""
    torch = pytest.importorskip("torch")
    from export.model import ARCHS, random_init_model

    model = load_model(torch_package, provider="cpu")
    spec = read_manifest(model.info.path)
    reference = random_init_model(ARCHS[spec.arch], seed=0).eval()
    paths = _photos(tmp_path, 3)
    pixels = np.stack([model.preprocess(p) for p in paths])
    texts = ["a photo of a cat", "Hello, world!", "x" * 300]
    with torch.no_grad():
        img = reference.encode_image(torch.from_numpy(pixels)).numpy()
        txt = reference.encode_text(torch.from_numpy(model.tokenize(texts))).numpy()
    for ours, theirs in ((model.encode_images(paths), img), (model.encode_texts(texts), txt)):
        theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
        assert np.min(np.sum(ours * theirs, axis=1)) >= 0.9999


def test_short_queries_run_only_their_tokens_and_get_the_same_vectors(
    model, random_package, tmp_path
):
    import onnxruntime as ort

    texts = ["a cat", "a photo of a dog on the beach at sunset"]
    full_ids = model.tokenize(texts)
    assert full_ids.shape[1] == 77
    session = ort.InferenceSession(
        str(random_package / "textual.onnx"), providers=["CPUExecutionProvider"]
    )
    full = session.run(None, {"input_ids": full_ids})[0]
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    assert model.cuts_text_ids
    np.testing.assert_allclose(model.encode_texts(texts), full, atol=1e-5)

    # Graphs of other exporters (no flag in model.json) always get the full context.
    other = _copy(random_package, tmp_path)
    manifest = json.loads((other / "model.json").read_text())
    del manifest["extra"]["textual_dynamic_length"]
    (other / "model.json").write_text(json.dumps(manifest))
    plain = load_model(other, provider="cpu")
    assert not plain.cuts_text_ids
    np.testing.assert_allclose(plain.encode_texts(texts), full, atol=1e-5)


def test_unchanged_model_files_are_not_hashed_again(random_package, tmp_path, monkeypatch):
    import photofind.clip.package as package

    pkg = _copy(random_package, tmp_path)
    spec = read_manifest(pkg)
    verified = VerifiedFiles(tmp_path / "record.json")
    hashed: list[str] = []
    real = package.sha256_file
    monkeypatch.setattr(package, "sha256_file", lambda p: hashed.append(p.name) or real(p))

    verify_files(pkg, spec, verified)
    assert sorted(hashed) == sorted(f.path for f in spec.files.values())
    hashed.clear()
    verify_files(pkg, spec, verified)
    assert hashed == []

    # Edited in place with its size and modification time put back: still hashed, refused.
    visual = pkg / "visual.onnx"
    before = visual.stat()
    data = bytearray(visual.read_bytes())
    data[len(data) // 2] ^= 0xFF
    visual.write_bytes(bytes(data))
    os.utime(visual, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert visual.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(ModelError, match="visual.onnx is corrupt"):
        verify_files(pkg, spec, verified)
    assert hashed == ["visual.onnx"]


def test_a_damaged_record_of_verified_files_means_hashing_again(random_package, tmp_path):
    record = tmp_path / "record.json"
    record.write_text("{not json")
    verified = VerifiedFiles(record)
    spec = read_manifest(random_package)
    verify_files(random_package, spec, verified)  # no error: the record is only a cache
    assert verified.sha256_of(random_package / "visual.onnx") == spec.files["visual"].sha256


def test_load_model_records_what_it_verified(random_package, tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOFIND_HOME", str(tmp_path / "home"))
    load_model(random_package, provider="cpu")  # no record given: none is written
    assert not (tmp_path / "home" / "cache" / RECORD_NAME).exists()
    load_model(random_package, provider="cpu", verified=user_record())
    record = json.loads((tmp_path / "home" / "cache" / RECORD_NAME).read_text())
    assert str((random_package / "textual.onnx").absolute()) in record["files"]


def test_a_text_query_opens_only_the_text_encoder(random_package):
    m = load_model(random_package, provider="cpu")
    assert m.sessions_open == frozenset()
    m.encode_texts(["a red square"])
    assert m.sessions_open == {"textual"}


def test_indexing_opens_only_the_image_encoder(random_package, tmp_path):
    m = load_model(random_package, provider="cpu")
    path = tmp_path / "p.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    m.encode_images([path])
    assert m.sessions_open == {"visual"}


def test_sessions_open_once_when_threads_ask_together(random_package):
    m = load_model(random_package, provider="cpu")
    opened = []
    real = m._open_tower

    def counting(tower):
        opened.append(tower)
        return real(tower)

    m._open_tower = counting
    start = threading.Barrier(4)

    def ask():
        start.wait(timeout=10)
        m.encode_texts(["a cat"])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert opened == ["textual"]


def test_a_model_check_opens_and_checks_both_encoders(random_package, tmp_path):
    assert load_model(random_package, provider="cpu", check=True).sessions_open == {
        "visual",
        "textual",
    }
    pkg = _copy(random_package, tmp_path)
    data = json.loads((pkg / "model.json").read_text())
    data["embed_dim"] += 1
    (pkg / "model.json").write_text(json.dumps(data))
    lazy = load_model(pkg, provider="cpu")  # nothing opened: nothing found yet
    with pytest.raises(ModelError, match="embed_dim"):
        lazy.encode_texts(["a cat"])
    with pytest.raises(ModelError, match="embed_dim"):
        lazy.check()


def test_info_says_what_runs(model, random_package):
    assert model.info.provider == "cpu"
    assert model.info.name == read_manifest(random_package).name
    assert model.info.dim == read_manifest(random_package).embed_dim


def test_auto_provider_falls_back_to_cpu_with_a_reason(random_package):
    m = load_model(random_package, provider="auto")
    if m.info.provider == "cuda":
        pytest.skip("a working GPU is present")
    assert m.info.provider == "cpu" and m.info.provider_reason


def test_forced_cuda_without_a_gpu_is_a_clear_error(random_package):
    try:
        m = load_model(random_package, provider="cuda")
    except ProviderError as exc:
        assert "CUDA" in str(exc)
    else:
        assert m.info.provider == "cuda"


def test_unknown_provider_is_refused(random_package):
    with pytest.raises(ProviderError, match="unknown provider"):
        load_model(random_package, provider="tpu")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ModelError, match="model.json is missing"):
        load_model(tmp_path)


def test_missing_folder_by_path(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_unknown_model_name_lists_what_exists():
    with pytest.raises(ModelError, match="no model named 'no-such-model'"):
        resolve_model("no-such-model")


def test_corrupt_visual_onnx_is_caught_by_its_hash(random_package, tmp_path):
    pkg = _copy(random_package, tmp_path)
    (pkg / "visual.onnx").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match=r"visual\.onnx is corrupt"):
        load_model(pkg, provider="cpu")


def test_corrupt_visual_onnx_with_a_matching_hash_is_still_refused(random_package, tmp_path):
    """A package whose manifest was rewritten to match garbage still names the bad file."""
    pkg = _copy(random_package, tmp_path)
    visual = pkg / "visual.onnx"
    data = visual.read_bytes()
    visual.write_bytes(data[: len(data) // 3])
    spec = read_manifest(pkg)
    files = {**spec.files, "visual": PackageFile(spec.files["visual"].path, sha256_file(visual))}
    write_manifest(pkg, dataclasses.replace(spec, files=files))
    with pytest.raises(ModelError, match=r"visual\.onnx is not a valid ONNX model"):
        load_model(pkg, provider="cpu")


def test_missing_file_is_named(random_package, tmp_path):
    pkg = _copy(random_package, tmp_path)
    (pkg / "textual.onnx").unlink()
    with pytest.raises(ModelError, match=r"textual\.onnx is missing"):
        load_model(pkg, provider="cpu")


def test_wrong_embed_dim_in_manifest(random_package, tmp_path):
    pkg = _copy(random_package, tmp_path)
    data = json.loads((pkg / "model.json").read_text())
    data["embed_dim"] += 1
    (pkg / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="embed_dim"):
        load_model(pkg, provider="cpu", check=True)


def test_wrong_image_size_in_manifest(random_package, tmp_path):
    pkg = _copy(random_package, tmp_path)
    data = json.loads((pkg / "model.json").read_text())
    data["image_size"] *= 2
    (pkg / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="input shape"):
        load_model(pkg, provider="cpu", check=True)


def test_broken_manifest_json(random_package, tmp_path):
    pkg = _copy(random_package, tmp_path)
    (pkg / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read as JSON"):
        load_model(pkg, provider="cpu")


def test_a_bad_photo_names_itself(model, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    with pytest.raises(ImageError, match="notes.jpg"):
        model.encode_images([bad])


def test_runtime_works_with_torch_blocked(random_package, tmp_path):
    """The app never needs torch: import and encode with every torch import failing."""
    photo = _photos(tmp_path, 1)[0]
    script = textwrap.dedent(
        f"""
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "onnx"):
                    raise ImportError("torch is blocked for this test")

        sys.meta_path.insert(0, BlockTorch())
        import photofind.clip
        model = photofind.clip.load_model({str(random_package)!r}, provider="cpu")
        v = model.encode_images([{str(photo)!r}])
        t = model.encode_texts(["a dog"])
        assert v.shape == t.shape == (1, model.info.dim)
        assert not any(m.split(".")[0] == "torch" for m in sys.modules)
        print("ok", model.info.provider)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok cpu"
