"""A CLIP text tower that reads a Hugging Face tokenizer's ids and attention mask.

:class:`export.model.CLIP` finds its end-of-text token by ``argmax`` over the ids, which holds
only for CLIP's BPE vocabulary (the end-of-text id is the largest). A tokenizer trained by
``tokenizers`` puts its special tokens anywhere (here first: ``<pad>`` 0, ``<s>`` 1, ``</s>``
2), so this tower takes the attention mask as a second input and reads the feature at the
last position the mask marks (the ``</s>`` the post-processor appends). That is the input
pair M-CLIP's and the Hugging Face text encoders' graphs take.

The blocks are :class:`export.model.Transformer`'s (pre-norm, causal): padding after the last
real token changes nothing before it, so the graph may be fed ids cut at the batch's longest
row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from export import ExportError
from export.model import Transformer


@dataclass(frozen=True)
class TextTowerConfig:
    vocab_size: int
    context_length: int
    width: int
    layers: int
    heads: int
    embed_dim: int
    activation: str = "gelu"

    def __post_init__(self):
        if self.heads < 1 or self.width % self.heads:
            raise ExportError(f"text width {self.width} cannot be split into {self.heads} heads")

    def to_dict(self) -> dict:
        return asdict(self)


class MaskedTextTower(nn.Module):
    def __init__(self, config: TextTowerConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.activation)
        self.ln_final = nn.LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.empty(config.width, config.embed_dim))
        mask = torch.full((config.context_length, config.context_length), float("-inf"))
        self.register_buffer("attn_mask", mask.triu_(1), persistent=False)
        self.initialize_parameters()

    def initialize_parameters(self):
        """OpenAI's text-tower initialisation (as :meth:`export.model.CLIP.initialize_parameters`)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.config.width, self.config.layers
        proj_std = (width**-0.5) * ((2 * layers) ** -0.5)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """int64 ids and mask [N, L] (L ≤ context_length) -> [N, embed_dim], not unit length."""
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = self.transformer(x, self.attn_mask[:length, :length])
        x = self.ln_final(x)
        # The last marked position; a row with an empty mask reads position 0, not -1.
        last = (attention_mask.to(torch.int64).sum(dim=-1) - 1).clamp(min=0)
        index = last.reshape(-1, 1, 1).expand(-1, 1, self.config.width)
        return x.gather(1, index).reshape(-1, self.config.width) @ self.text_projection


class NormalizedMaskedTextEncoder(nn.Module):
    """What the package's ``textual.onnx`` holds: (input_ids, attention_mask) -> unit vectors."""

    def __init__(self, tower: MaskedTextTower):
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.tower(input_ids, attention_mask), dim=-1)
