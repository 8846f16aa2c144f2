"""The LoFTR transformer: interleaved self- and cross-attention layers over two token sets."""

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .attention import build_attention
from .linear import linear


@dataclass
class TransformerConfig:
    d_model: int = 256  # LoFTR coarse level; the fine level uses 128
    num_heads: int = 8  # LoFTR paper sec. 4
    layer_names: tuple[str, ...] = ("self", "cross") * 4  # LoFTR: N_c = 4 repetitions at the coarse level
    attention: str = "linear"  # "linear" (official) or "full" (softmax through SDPA)


class EncoderLayer(nn.Module):
    """One LoFTR attention layer: x + norm(mlp([x, norm(merge(attention(x, source)))])).

    Parameter names follow the official release so checkpoints load without renaming.
    """

    def __init__(self, d_model: int, num_heads: int, attention: str):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.attention = build_attention(attention)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(2 * d_model, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, source, x_mask=None, source_mask=None):
        """x: (N, L, C), source: (N, S, C), masks (N, L) / (N, S) bool, True = valid -> (N, L, C)."""
        heads = self.num_heads
        query = linear(x, self.q_proj.weight).unflatten(-1, (heads, -1))
        key = linear(source, self.k_proj.weight).unflatten(-1, (heads, -1))
        value = linear(source, self.v_proj.weight).unflatten(-1, (heads, -1))
        message = self.attention(query, key, value, x_mask, source_mask).flatten(-2)
        message = self.norm1(linear(message, self.merge.weight))
        # mlp([x, message]) with the first weight split in two: no concatenated copy of every token
        w_x, w_message = self.mlp[0].weight.split(x.shape[-1], dim=1)
        hidden = torch.relu_(linear(x, w_x).add_(linear(message, w_message)))
        message = self.norm2(linear(hidden, self.mlp[2].weight))
        return x + message


class LocalFeatureTransformer(nn.Module):
    """A stack of layers; a "self" layer attends within each image, a "cross" layer to the other image.

    In a cross layer image 1 attends to the already-updated image 0 tokens, as in the official code.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        for name in config.layer_names:
            if name not in ("self", "cross"):
                raise ValueError(f"layer_names may only hold 'self' and 'cross', got {name!r}")
        self.d_model = config.d_model
        self.layer_names = tuple(config.layer_names)
        layer = EncoderLayer(config.d_model, config.num_heads, config.attention)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in self.layer_names)
        for p in self.parameters():  # the official initialisation
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, feat0, feat1, mask0=None, mask1=None):
        """feat0: (N, L, C), feat1: (N, S, C), masks bool (N, L) / (N, S) -> updated (feat0, feat1)."""
        if feat0.shape[-1] != self.d_model or feat1.shape[-1] != self.d_model:
            raise ValueError(f"expected {self.d_model} channels, got {feat0.shape[-1]} and {feat1.shape[-1]}")
        for layer, name in zip(self.layers, self.layer_names):
            if name == "self":
                feat0 = layer(feat0, feat0, mask0, mask0)
                feat1 = layer(feat1, feat1, mask1, mask1)
            else:
                feat0 = layer(feat0, feat1, mask0, mask1)
                feat1 = layer(feat1, feat0, mask1, mask0)
        return feat0, feat1
