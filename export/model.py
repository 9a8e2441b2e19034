"""Our own torch implementation of the CLIP ViT architecture (Radford et al., 2021).

Parameter names follow OpenAI's released state dicts exactly, so a checkpoint from OpenAI or
OpenCLIP loads with ``load_state_dict(strict=True)`` and no renaming. The layout differs from
OpenAI's code in one harmless way: tensors are batch-first ([N, L, D]) throughout, which keeps
the exported ONNX graphs free of transposes around every block.

Attention is written with plain matmuls instead of ``nn.MultiheadAttention``: the legacy ONNX
exporter turns it into a handful of MatMul/Softmax nodes with a dynamic batch axis, which
onnxruntime runs well on CPU and GPU alike.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from export import ExportError

ACTIVATIONS = ("quick_gelu", "gelu")
# OpenAI and OpenCLIP size their heads at 64 channels each; a state dict does not store it.
HEAD_WIDTH = 64


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    activation: str = "quick_gelu"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ExportError(
                f"unknown activation {self.activation!r}: expected one of {', '.join(ACTIVATIONS)}"
            )
        if self.image_size % self.patch_size:
            raise ExportError(
                f"image size {self.image_size} is not a multiple of patch size {self.patch_size}"
            )
        for width, heads, tower in (
            (self.vision_width, self.vision_heads, "vision"),
            (self.text_width, self.text_heads, "text"),
        ):
            if heads < 1 or width % heads:
                raise ExportError(f"{tower} width {width} cannot be split into {heads} heads")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)

    def structure(self) -> dict:
        """Everything but the activation: what a state dict's shapes can tell."""
        data = self.to_dict()
        data.pop("activation")
        return data


# Published hyper-parameters (OpenAI CLIP paper, table 20; OpenCLIP model_configs/*.json).
ARCHS: dict[str, CLIPConfig] = {
    "ViT-B-32": CLIPConfig(
        embed_dim=512,
        image_size=224,
        patch_size=32,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        context_length=77,
        vocab_size=49408,
        text_width=512,
        text_layers=12,
        text_heads=8,
    ),
    "ViT-B-16": CLIPConfig(
        embed_dim=512,
        image_size=224,
        patch_size=16,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        context_length=77,
        vocab_size=49408,
        text_width=512,
        text_layers=12,
        text_heads=8,
    ),
    "ViT-L-14": CLIPConfig(
        embed_dim=768,
        image_size=224,
        patch_size=14,
        vision_width=1024,
        vision_layers=24,
        vision_heads=16,
        context_length=77,
        vocab_size=49408,
        text_width=768,
        text_layers=12,
        text_heads=12,
    ),
    # Small enough for unit tests (a few MB, most of it the full-size token embedding, kept so
    # that the real tokenizer's ids are all valid), yet every part of the real architecture.
    "tiny-test": CLIPConfig(
        embed_dim=32,
        image_size=32,
        patch_size=8,
        vision_width=128,
        vision_layers=2,
        vision_heads=2,
        context_length=77,
        vocab_size=49408,
        text_width=64,
        text_layers=2,
        text_heads=1,
    ),
}


def arch_config(name: str, activation: str | None = None) -> CLIPConfig:
    try:
        config = ARCHS[name]
    except KeyError:
        raise ExportError(
            f"unknown architecture {name!r}: known ones are {', '.join(ARCHS)}"
        ) from None
    return replace(config, activation=activation) if activation else config


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the approximation OpenAI's released weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _activation(name: str) -> nn.Module:
    return QuickGELU() if name == "quick_gelu" else nn.GELU()


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim**-0.5
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.reset_parameters()

    def reset_parameters(self):
        # The same defaults nn.MultiheadAttention uses.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(n, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q * self.scale) @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, activation: str):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width),
                gelu=_activation(activation),
                c_proj=nn.Linear(4 * width, width),
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, activation: str):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, activation) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        width = config.vision_width
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(config.grid_size**2 + 1, width)
        )
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(
            width, config.vision_layers, config.vision_heads, config.activation
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, config.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = self._patch_embed_matmul(x)
        else:
            x = self.conv1(x)  # [N, width, grid, grid]
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid², width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0, :]) @ self.proj

    def _patch_embed_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1`` as the matrix product it is (stride = kernel): the same numbers up to
        rounding, and on the CPU its backward takes half the time of the convolution's
        (10 vs 20 ms a step for the tiny model). Training only: exported graphs keep Conv."""
        n, channels, size, _ = x.shape
        patch = self.conv1.kernel_size[0]
        grid = size // patch
        patches = (
            x.reshape(n, channels, grid, patch, grid, patch)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(n, grid * grid, channels * patch * patch)
        )
        return F.linear(patches, self.conv1.weight.reshape(self.conv1.out_channels, -1))


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTransformer(config)
        self.transformer = Transformer(
            config.text_width, config.text_layers, config.text_heads, config.activation
        )
        self.token_embedding = nn.Embedding(config.vocab_size, config.text_width)
        self.positional_embedding = nn.Parameter(
            torch.empty(config.context_length, config.text_width)
        )
        self.ln_final = nn.LayerNorm(config.text_width)
        self.text_projection = nn.Parameter(torch.empty(config.text_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        # Additive causal mask; not persistent so the state dict keeps OpenAI's key set.
        mask = torch.full((config.context_length, config.context_length), float("-inf"))
        self.register_buffer("attn_mask", mask.triu_(1), persistent=False)
        self.initialize_parameters()

    def initialize_parameters(self):
        """OpenAI's initialisation (CLIP.initialize_parameters in openai/CLIP model.py)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width = self.transformer.width
        proj_std = (width**-0.5) * ((2 * self.transformer.layers) ** -0.5)
        attn_std = width**-0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """float [N, 3, S, S] (already normalised with CLIP's mean/std) -> [N, D], not unit length."""
        return self.visual(pixel_values)

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """int64 [N, L] -> [N, D], not unit length; L ≤ context_length.

        Rows may be cut after the batch's last end-of-text token: the causal mask means no
        position sees those after it, so the result is the same and a short query costs a
        sixth of the full 77 tokens. The length is read from the input, so an ONNX export
        with a dynamic second axis keeps that saving.
        """
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = self.transformer(x, self.attn_mask[:length, :length])
        x = self.ln_final(x)
        # The feature sits at the end-of-text token, which has the largest id in each row.
        # gather rather than x[arange, eot]: it exports to one GatherElements node.
        eot = input_ids.argmax(dim=-1).reshape(-1, 1, 1).expand(-1, 1, self.config.text_width)
        x = x.gather(1, eot).reshape(-1, self.config.text_width)
        return x @ self.text_projection

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor):
        return self.encode_image(pixel_values), self.encode_text(input_ids)


class NormalizedImageEncoder(nn.Module):
    """What ``visual.onnx`` holds: pixel_values -> L2-normalised embeddings."""

    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(pixel_values), dim=-1)


class NormalizedTextEncoder(nn.Module):
    """What ``textual.onnx`` holds: input_ids -> L2-normalised embeddings."""

    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(input_ids), dim=-1)


def random_init_model(config: CLIPConfig, seed: int = 0) -> CLIP:
    """A CLIP with OpenAI's initialisation drawn from ``seed``, independent of global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(config)
    return model.eval()


_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.")


def _count_blocks(keys, visual: bool) -> int:
    indices = set()
    for key in keys:
        match = _BLOCK.match(key)
        if match and bool(match.group(1)) == visual:
            indices.add(int(match.group(2)))
    return len(indices)


def _shape(state_dict: Mapping, key: str) -> tuple[int, ...]:
    try:
        return tuple(state_dict[key].shape)
    except KeyError:
        raise ExportError(
            f"the state dict has no '{key}': it is not a CLIP ViT checkpoint"
        ) from None


def config_from_state_dict(
    state_dict: Mapping,
    activation: str = "quick_gelu",
    *,
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> CLIPConfig:
    """Read every hyper-parameter off the tensor shapes (meta tensors are fine).

    Head counts are not stored anywhere; like OpenAI and OpenCLIP we take width // 64 unless
    told otherwise.
    """
    keys = list(state_dict)
    if any(key.startswith("visual.layer1.") for key in keys):
        raise ExportError("this is a ResNet CLIP checkpoint; only ViT CLIP models are supported")
    if any(key.startswith("visual.trunk.") for key in keys):
        raise ExportError(
            "this is an OpenCLIP timm-tower checkpoint; only OpenAI-style ViT CLIP is supported"
        )
    width, _, patch, _ = _shape(state_dict, "visual.conv1.weight")
    positions = _shape(state_dict, "visual.positional_embedding")[0]
    grid = round(math.sqrt(positions - 1))
    if grid * grid + 1 != positions:
        raise ExportError(
            f"visual.positional_embedding has {positions} rows, not a square grid plus one"
        )
    text_width = _shape(state_dict, "ln_final.weight")[0]
    return CLIPConfig(
        embed_dim=_shape(state_dict, "text_projection")[1],
        image_size=grid * patch,
        patch_size=patch,
        vision_width=width,
        vision_layers=_count_blocks(keys, visual=True),
        vision_heads=vision_heads or max(1, width // HEAD_WIDTH),
        context_length=_shape(state_dict, "positional_embedding")[0],
        vocab_size=_shape(state_dict, "token_embedding.weight")[0],
        text_width=text_width,
        text_layers=_count_blocks(keys, visual=False),
        text_heads=text_heads or max(1, text_width // HEAD_WIDTH),
        activation=activation,
    )


def expected_shapes(config: CLIPConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a CLIP with ``config``, built on the meta device (no memory used)."""
    with torch.device("meta"):
        model = CLIP(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_state_dict(state_dict: Mapping, config: CLIPConfig, source: str = "checkpoint") -> None:
    """Raise a clear ExportError when keys are missing, unexpected or of the wrong shape."""
    expected = expected_shapes(config)
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} (expected {shape})"
        for key, shape in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")
            problems.append(f"{len(items)} {label} key(s): {shown}")
    if problems:
        raise ExportError(f"{source} does not match the CLIP architecture: " + "; ".join(problems))


def clip_from_state_dict(
    state_dict: Mapping, config: CLIPConfig, source: str = "checkpoint"
) -> CLIP:
    """Build a float32 CLIP for ``config`` and load ``state_dict`` into it, strictly."""
    check_state_dict(state_dict, config, source)
    with torch.device("meta"):
        model = CLIP(config)
    # assign=True replaces the meta tensors, so the weights are allocated once, not twice.
    floats = {key: value.to(torch.float32) for key, value in state_dict.items()}
    model.load_state_dict(floats, strict=True, assign=True)
    # The mask is a non-persistent buffer: the meta one has to be rebuilt for real.
    mask = torch.full((config.context_length, config.context_length), float("-inf"))
    model.attn_mask = mask.triu_(1)
    return model.eval()
