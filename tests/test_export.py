"""export/: CLIP checkpoints in every supported format -> a checked photofind model package."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export/ needs torch")

from export import ExportError  # noqa: E402
from export.checkpoint import load_checkpoint  # noqa: E402
from export.model import (  # noqa: E402
    ARCHS,
    CLIP,
    arch_config,
    clip_from_state_dict,
    config_from_state_dict,
    random_init_model,
)
from export.onnx_export import check_package, export_package  # noqa: E402
from export.vocab import VOCAB_NAME, find_clip_vocab  # noqa: E402
from photofind.clip.package import read_manifest, verify_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = ARCHS["tiny-test"]


@pytest.fixture(scope="module")
def tiny_model() -> CLIP:
    return random_init_model(TINY, seed=0)


def _run_cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _inputs(config, batch, seed=1):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, config.image_size, config.image_size, generator=generator)
    ids = torch.zeros(batch, config.context_length, dtype=torch.int64)
    for row in range(batch):
        ids[row, 0] = 49406
        ids[row, 1 : 2 + row] = torch.randint(0, 49406, (1 + row,), generator=generator)
        ids[row, 2 + row] = 49407
    return pixels, ids


# ---- the architecture -------------------------------------------------------------------


def test_state_dict_has_openai_key_names(tiny_model):
    keys = set(tiny_model.state_dict())
    for key in (
        "visual.conv1.weight",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.ln_pre.weight",
        "visual.transformer.resblocks.1.attn.in_proj_weight",
        "visual.transformer.resblocks.1.attn.in_proj_bias",
        "visual.transformer.resblocks.1.attn.out_proj.weight",
        "visual.transformer.resblocks.1.mlp.c_fc.bias",
        "visual.transformer.resblocks.1.mlp.c_proj.weight",
        "visual.transformer.resblocks.1.ln_2.bias",
        "visual.ln_post.weight",
        "visual.proj",
        "token_embedding.weight",
        "positional_embedding",
        "transformer.resblocks.0.ln_1.weight",
        "ln_final.bias",
        "text_projection",
        "logit_scale",
    ):
        assert key in keys
    assert "visual.conv1.bias" not in keys
    assert not any("attn_mask" in key for key in keys)
    assert tiny_model.state_dict()["logit_scale"].shape == ()


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_init_model(TINY, seed=5).state_dict()
    after = torch.rand(1)
    b = random_init_model(TINY, seed=5).state_dict()
    c = random_init_model(TINY, seed=6).state_dict()
    assert torch.equal(before, after)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.proj"], c["visual.proj"])


def test_text_feature_is_taken_at_the_end_of_text_token(tiny_model):
    """Tokens after EOT (padding) cannot change the feature: the mask is causal."""
    _, ids = _inputs(TINY, 2)
    padded_differently = ids.clone()
    padded_differently[:, -5:] = 7
    padded_differently[:, -5:][padded_differently[:, -5:] == 49407] = 7
    with torch.no_grad():
        np.testing.assert_allclose(
            tiny_model.encode_text(ids).numpy(),
            tiny_model.encode_text(padded_differently).numpy(),
            atol=1e-6,
        )


def test_text_ids_cut_after_the_last_eot_give_the_same_features(tiny_model):
    _, ids = _inputs(TINY, 3)
    length = int(ids.argmax(dim=-1).max()) + 1
    with torch.no_grad():
        np.testing.assert_allclose(
            tiny_model.encode_text(ids[:, :length]).numpy(),
            tiny_model.encode_text(ids).numpy(),
            atol=1e-6,
        )


def test_training_patch_embedding_is_the_convolution():
    """Training embeds patches with a matrix product (faster backward on the CPU); the
    exported graph keeps the convolution: both must give the same features."""
    model = random_init_model(TINY, seed=3)
    pixels, _ = _inputs(TINY, 3)
    with torch.no_grad():
        exported = model.encode_image(pixels)
        model.train()
        trained = model.encode_image(pixels)
        model.eval()
    np.testing.assert_allclose(trained.numpy(), exported.numpy(), atol=1e-5)


# Shapes from the published checkpoints (CLIP-FACTS.md), written out by hand rather than
# derived from ARCHS, so that this test checks ARCHS and the inference both.
PUBLISHED = {
    "ViT-B-32": dict(
        width=768,
        patch=32,
        positions=50,
        layers=12,
        text_width=512,
        text_layers=12,
        embed=512,
        heads=12,
        text_heads=8,
        image=224,
    ),
    "ViT-B-16": dict(
        width=768,
        patch=16,
        positions=197,
        layers=12,
        text_width=512,
        text_layers=12,
        embed=512,
        heads=12,
        text_heads=8,
        image=224,
    ),
    "ViT-L-14": dict(
        width=1024,
        patch=14,
        positions=257,
        layers=24,
        text_width=768,
        text_layers=12,
        embed=768,
        heads=16,
        text_heads=12,
        image=224,
    ),
}


def _meta_state_dict(p: dict) -> dict:
    def meta(*shape):
        return torch.empty(shape, device="meta")

    sd = {
        "visual.conv1.weight": meta(p["width"], 3, p["patch"], p["patch"]),
        "visual.class_embedding": meta(p["width"]),
        "visual.positional_embedding": meta(p["positions"], p["width"]),
        "visual.proj": meta(p["width"], p["embed"]),
        "token_embedding.weight": meta(49408, p["text_width"]),
        "positional_embedding": meta(77, p["text_width"]),
        "ln_final.weight": meta(p["text_width"]),
        "text_projection": meta(p["text_width"], p["embed"]),
        "logit_scale": meta(),
    }
    for i in range(p["layers"]):
        sd[f"visual.transformer.resblocks.{i}.attn.in_proj_weight"] = meta(
            3 * p["width"], p["width"]
        )
    for i in range(p["text_layers"]):
        sd[f"transformer.resblocks.{i}.attn.in_proj_weight"] = meta(
            3 * p["text_width"], p["text_width"]
        )
    return sd


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_config_inferred_from_published_shapes(arch):
    p = PUBLISHED[arch]
    config = config_from_state_dict(_meta_state_dict(p), activation="quick_gelu")
    assert config.image_size == p["image"]
    assert config.patch_size == p["patch"]
    assert config.vision_width == p["width"]
    assert config.vision_layers == p["layers"]
    assert config.vision_heads == p["heads"]
    assert config.text_width == p["text_width"]
    assert config.text_layers == p["text_layers"]
    assert config.text_heads == p["text_heads"]
    assert config.embed_dim == p["embed"]
    assert (config.context_length, config.vocab_size) == (77, 49408)
    assert config == ARCHS[arch]


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_archs_agree_with_openclip_model_configs(arch):
    """OpenCLIP's own config files (installed with open_clip_torch) say the same."""
    configs = find_clip_vocab().parent / "model_configs"
    data = json.loads((configs / f"{arch}.json").read_text())
    ours = ARCHS[arch]
    vision, text = data["vision_cfg"], data["text_cfg"]
    assert data["embed_dim"] == ours.embed_dim
    assert (vision["image_size"], vision["patch_size"]) == (ours.image_size, ours.patch_size)
    assert (vision["width"], vision["layers"]) == (ours.vision_width, ours.vision_layers)
    assert (text["width"], text["layers"], text["heads"]) == (
        ours.text_width,
        ours.text_layers,
        ours.text_heads,
    )
    assert (text["context_length"], text["vocab_size"]) == (77, 49408)


@pytest.fixture
def openclip_model_module(monkeypatch):
    """OpenCLIP's reference ``open_clip.model``, loaded without torchvision.

    ``import open_clip`` needs torchvision, which only its utils module touches (for a
    BatchNorm class the ViT never builds); a stand-in module satisfies that import and the
    package ``__init__`` is bypassed. Everything is removed from sys.modules afterwards.
    """
    # open_clip.model imports transformers (for its HF text towers), which asks
    # importlib whether torchvision exists; asked with the stand-in in place, that raises
    # ("torchvision.__spec__ is None"). Imported first, it settles the question truthfully.
    with contextlib.suppress(ImportError):
        import transformers  # noqa: F401
    before = set(sys.modules)
    package = types.ModuleType("open_clip")
    package.__path__ = [str(find_clip_vocab().parent)]
    monkeypatch.setitem(sys.modules, "open_clip", package)
    for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc"):
        stub = types.ModuleType(name)
        stub.__path__ = []
        monkeypatch.setitem(sys.modules, name, stub)
    sys.modules["torchvision.ops.misc"].FrozenBatchNorm2d = torch.nn.BatchNorm2d
    import importlib

    yield importlib.import_module("open_clip.model")
    for name in set(sys.modules) - before:
        if name.startswith("open_clip"):
            del sys.modules[name]


@pytest.mark.parametrize("activation", ["quick_gelu", "gelu"])
def test_matches_openclip_reference_implementation(openclip_model_module, activation):
    om = openclip_model_module
    torch.manual_seed(0)
    reference = om.CLIP(
        embed_dim=TINY.embed_dim,
        vision_cfg=om.CLIPVisionCfg(
            layers=TINY.vision_layers,
            width=TINY.vision_width,
            patch_size=TINY.patch_size,
            image_size=TINY.image_size,
        ),
        text_cfg=om.CLIPTextCfg(
            context_length=TINY.context_length,
            vocab_size=TINY.vocab_size,
            width=TINY.text_width,
            heads=TINY.text_heads,
            layers=TINY.text_layers,
        ),
        quick_gelu=activation == "quick_gelu",
    ).eval()
    state = reference.state_dict()
    ours = clip_from_state_dict(state, config_from_state_dict(state, activation))
    pixels, ids = _inputs(TINY, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(pixels), reference.encode_image(pixels))
        torch.testing.assert_close(ours.encode_text(ids), reference.encode_text(ids))


# ---- checkpoints ------------------------------------------------------------------------


def _save_torchscript(model: CLIP, path: Path) -> None:
    """Like OpenAI's released .pt: a TorchScript archive with three non-weight entries."""
    model = random_init_model(model.config, seed=0)
    model.register_buffer("input_resolution", torch.tensor(model.config.image_size))
    model.register_buffer("context_length", torch.tensor(model.config.context_length))
    model.register_buffer("vocab_size", torch.tensor(model.config.vocab_size))
    pixels, ids = _inputs(model.config, 2)
    with warnings.catch_warnings():
        # TorchScript is deprecated, but it is the format OpenAI published its weights in.
        warnings.filterwarnings("ignore", r"`torch\.jit\.", DeprecationWarning)
        traced = torch.jit.trace(model, (pixels, ids), check_trace=False)
    traced.save(str(path))


def _save(model: CLIP, folder: Path, kind: str) -> Path:
    state = model.state_dict()
    if kind == "torch":
        path = folder / "tiny.bin"
        torch.save(state, path)
    elif kind == "safetensors":
        from safetensors.torch import save_file

        path = folder / "tiny.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    elif kind == "wrapped":  # an OpenCLIP training checkpoint saved under DDP
        path = folder / "epoch_32.pt"
        wrapped = {f"module.{k}": v for k, v in state.items()}
        torch.save({"epoch": 32, "name": "tiny", "state_dict": wrapped}, path)
    else:
        path = folder / "tiny-openai.pt"
        _save_torchscript(model, path)
    return path


@pytest.mark.parametrize("kind", ["torch", "safetensors", "wrapped", "torchscript"])
def test_checkpoint_round_trip(tiny_model, tmp_path, kind):
    path = _save(tiny_model, tmp_path, kind)
    state, info = load_checkpoint(path)
    original = tiny_model.state_dict()
    assert set(state) == set(original)
    for key, value in original.items():
        assert torch.equal(state[key], value), key
    assert info.format == ("torch" if kind == "wrapped" else kind)
    assert config_from_state_dict(state, info.activation) == arch_config(
        "tiny-test", info.activation
    )
    if kind == "torchscript":
        assert info.activation == "quick_gelu"
        assert {"input_resolution", "context_length", "vocab_size"} <= set(info.dropped)
    loaded = clip_from_state_dict(state, config_from_state_dict(state))
    pixels, ids = _inputs(TINY, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(pixels), tiny_model.encode_image(pixels))
        torch.testing.assert_close(loaded.encode_text(ids), tiny_model.encode_text(ids))


@pytest.mark.parametrize(
    "name, activation",
    [
        ("open_clip_pytorch_model.bin", "gelu"),
        ("ViT-B-32-quickgelu-laion400m_e32.pt", "quick_gelu"),
        ("vit_base_patch32_clip_224.openai.safetensors", "quick_gelu"),
    ],
)
def test_activation_is_guessed_from_the_file_name(tiny_model, tmp_path, name, activation):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, path)
    else:
        torch.save(tiny_model.state_dict(), path)
    _, info = load_checkpoint(path)
    assert info.activation == activation
    assert info.activation_reason


def test_garbage_files_are_clear_errors(tmp_path):
    # Random bytes make torch's unpickler fail in many ways (seen: IndexError); try a range.
    rng = np.random.default_rng(0)
    for i in range(50):
        garbage = tmp_path / f"garbage{i}.bin"
        garbage.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(ExportError, match=f"garbage{i}.bin"):
            load_checkpoint(garbage)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ExportError, match="cut.safetensors.*safetensors"):
        load_checkpoint(truncated)
    with pytest.raises(ExportError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": torch.zeros(2), "hook": Path("x")}, path)
    with pytest.raises(
        ExportError, match="evil.pt: refused .*pathlib.PosixPath was not an allowed"
    ):
        load_checkpoint(path)


def test_a_dict_of_non_tensors_is_refused(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"visual.proj": torch.zeros(2), "epoch": 3}, path)
    with pytest.raises(ExportError, match="'epoch' is a int, not a tensor"):
        load_checkpoint(path)


def test_missing_unexpected_and_misshapen_keys_are_listed(tiny_model):
    state = dict(tiny_model.state_dict())
    config = config_from_state_dict(state)
    del state["visual.proj"]
    state["visual.extra_head.weight"] = torch.zeros(3)
    state["ln_final.bias"] = torch.zeros(65)
    with pytest.raises(ExportError) as caught:
        clip_from_state_dict(state, config, source="ckpt.bin")
    message = str(caught.value)
    assert message.startswith("ckpt.bin does not match the CLIP architecture")
    assert "1 missing key(s): visual.proj" in message
    assert "1 unexpected key(s): visual.extra_head.weight" in message
    assert "ln_final.bias (65,) (expected (64,))" in message


def test_non_clip_and_resnet_state_dicts_are_refused():
    with pytest.raises(ExportError, match="no 'visual.conv1.weight'"):
        config_from_state_dict({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ExportError, match="ResNet"):
        config_from_state_dict({"visual.layer1.0.conv1.weight": torch.zeros(1)})


# ---- ONNX package -----------------------------------------------------------------------


def test_package_is_complete_and_verifiable(torch_package):
    spec = read_manifest(torch_package)
    paths = verify_files(torch_package, spec)
    assert {p.name for p in paths.values()} == {"visual.onnx", "textual.onnx", VOCAB_NAME}
    assert (spec.embed_dim, spec.image_size, spec.context_length, spec.vocab_size) == (
        32,
        32,
        77,
        49408,
    )
    assert spec.arch == "tiny-test"
    assert spec.logit_scale == pytest.approx(1 / 0.07)
    assert spec.extra["normalized"] is True
    assert spec.extra["activation"] == "quick_gelu"
    assert not list(torch_package.glob("*.tmp"))
    assert (torch_package / VOCAB_NAME).read_bytes() == find_clip_vocab().read_bytes()


def test_onnx_matches_torch(torch_package, tiny_model):
    result = check_package(tiny_model, torch_package, n_images=4, n_texts=6, seed=3)
    assert result["min_cosine"] >= 0.9999
    assert result["max_abs_diff"] < 1e-4


def test_graph_signatures_and_dynamic_batch(torch_package, tiny_model):
    import onnxruntime as ort

    sessions = {
        role: ort.InferenceSession(
            str(torch_package / f"{role}.onnx"), providers=["CPUExecutionProvider"]
        )
        for role in ("visual", "textual")
    }
    visual_in = sessions["visual"].get_inputs()[0]
    textual_in = sessions["textual"].get_inputs()[0]
    assert (visual_in.name, visual_in.type, visual_in.shape[1:]) == (
        "pixel_values",
        "tensor(float)",
        [3, 32, 32],
    )
    assert (textual_in.name, textual_in.type) == ("input_ids", "tensor(int64)")
    assert isinstance(textual_in.shape[1], str)  # symbolic: ids may be cut after the last EOT
    assert read_manifest(torch_package).extra["textual_dynamic_length"] is True
    for session in sessions.values():
        out = session.get_outputs()[0]
        assert (out.name, out.type, out.shape[1]) == ("embeddings", "tensor(float)", 32)
        assert isinstance(out.shape[0], str)  # symbolic: the batch axis is dynamic

    pixels, ids = _inputs(TINY, 5)
    with torch.no_grad():
        want_image = torch.nn.functional.normalize(tiny_model.encode_image(pixels), dim=-1)
        want_text = torch.nn.functional.normalize(tiny_model.encode_text(ids), dim=-1)
    for name, inputs, want in (
        ("visual", pixels.numpy(), want_image.numpy()),
        ("textual", ids.numpy(), want_text.numpy()),
    ):
        session = sessions[name]
        input_name = session.get_inputs()[0].name
        five = session.run(None, {input_name: inputs})[0]
        one = session.run(None, {input_name: inputs[:1]})[0]
        assert five.shape == (5, 32) and one.shape == (1, 32)
        assert five.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(five, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(five, want, atol=1e-5)
        np.testing.assert_allclose(one[0], five[0], atol=1e-5)

    # Cut after the last end-of-text token, the rows give the vectors of the full 77.
    length = int(ids.argmax(dim=-1).max()) + 1
    assert length < 77
    cut = sessions["textual"].run(None, {"input_ids": ids[:, :length].numpy()})[0]
    np.testing.assert_allclose(cut, want_text.numpy(), atol=1e-5)


def test_export_refuses_a_missing_vocab(tiny_model, tmp_path):
    with pytest.raises(ExportError, match="vocabulary .*absent.txt.gz does not exist"):
        export_package(
            tiny_model, TINY, tmp_path / "m", name="x", vocab_path=tmp_path / "absent.txt.gz"
        )


# ---- the CLI ----------------------------------------------------------------------------


def test_importing_export_and_its_help_need_no_torch():
    code = (
        "import sys; import export, export.vocab; from export.__main__ import build_parser; "
        "build_parser(None)[0].format_help(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_cli_convert_random_init(tmp_path):
    out = tmp_path / "pkg"
    done = _run_cli(
        "convert",
        "--arch",
        "tiny-test",
        "--random-init",
        "--seed",
        "3",
        "--out",
        out,
        "--check",
        "--name",
        "tiny three",
    )
    assert done.returncode == 0, done.stderr
    assert "activation: quick_gelu" in done.stdout
    assert "min cosine" in done.stdout
    spec = read_manifest(out)
    verify_files(out, spec)
    assert spec.name == "tiny three"


def test_cli_convert_checkpoint_with_activation_override(tiny_model, tmp_path):
    checkpoint = _save(tiny_model, tmp_path, "safetensors")
    out = tmp_path / "pkg"
    done = _run_cli(
        "convert",
        "--arch",
        "tiny-test",
        "--checkpoint",
        checkpoint,
        "--out",
        out,
        "--check",
        "--activation",
        "quick_gelu",
    )
    assert done.returncode == 0, done.stderr
    assert "activation: quick_gelu (set with --activation" in done.stdout
    spec = read_manifest(out)
    assert spec.name == "tiny" and spec.source == "tiny.safetensors"
    assert spec.extra["activation"] == "quick_gelu"


def test_cli_refuses_an_arch_mismatch_in_one_line(tiny_model, tmp_path):
    checkpoint = _save(tiny_model, tmp_path, "torch")
    done = _run_cli(
        "convert", "--arch", "ViT-B-32", "--checkpoint", checkpoint, "--out", tmp_path / "pkg"
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "is not a ViT-B-32" in lines[0]
    assert "vision_width 128 (the vision_width of the arch is 768)" in lines[0]
    assert not (tmp_path / "pkg").exists()


def test_cli_bad_checkpoint_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    garbage = tmp_path / "broken.pt"
    garbage.write_bytes(b"not a checkpoint")
    args = ("convert", "--arch", "tiny-test", "--checkpoint", garbage, "--out", tmp_path / "pkg")
    done = _run_cli(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "broken.pt" in done.stderr
    assert "refused to load (it is corrupt or holds more than tensors): Unsupported" in done.stderr
    verbose = _run_cli("-v", *args)
    assert "Traceback" in verbose.stderr


@pytest.mark.slow
def test_cli_convert_vit_b32_random_init_passes_its_check(tmp_path):
    start = time.perf_counter()
    done = _run_cli(
        "convert",
        "--arch",
        "ViT-B-32",
        "--random-init",
        "--seed",
        "0",
        "--out",
        tmp_path / "M",
        "--check",
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\nViT-B-32 export + check: {elapsed:.1f} s\n{done.stdout}")
    spec = read_manifest(tmp_path / "M")
    assert (spec.embed_dim, spec.image_size, spec.arch) == (512, 224, "ViT-B-32")


@pytest.mark.slow
def test_vitb32_fixture_package_matches_torch(vitb32_package):
    spec = read_manifest(vitb32_package)
    verify_files(vitb32_package, spec)
    result = check_package(random_init_model(ARCHS["ViT-B-32"], seed=0), vitb32_package, 2, 2)
    assert result["min_cosine"] >= 0.9999
