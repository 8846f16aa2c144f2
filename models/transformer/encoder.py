"""The LoFTR transformer: interleaved self- and cross-attention layers over two token sets.

Two layer layouts (`block`): LoFTR's ("loftr": attention, merge and norm, then an MLP on [x, message] and a
norm, added to x) and the official QuadTree-LoFTR's ("quadtree": pre-norm attention with a biased output
projection, then a pre-norm MLP whose hidden layer passes a 3x3 depthwise convolution over the token grid,
each added to x; Tang et al., ICLR 2022, as in the PVT v2 block).
"""

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .attention import build_attention
from .linear import linear
from .quadtree import QuadtreeConfig

BLOCKS = ("loftr", "quadtree")


@dataclass
class TransformerConfig:
    d_model: int = 256  # LoFTR coarse level; the fine level uses 128
    num_heads: int = 8  # LoFTR paper sec. 4
    layer_names: tuple[str, ...] = ("self", "cross") * 4  # LoFTR: N_c = 4 repetitions at the coarse level
    attention: str = "linear"  # "linear" (official), "full" (softmax through SDPA) or "quadtree"
    quadtree: QuadtreeConfig = field(default_factory=QuadtreeConfig)  # attention=quadtree: kind and top-K
    block: str = "loftr"  # the layer layout: "loftr", or "quadtree" (the official QuadTree-LoFTR's)
    mlp_ratio: int = 4  # block=quadtree: the MLP's hidden width over d_model (the official QuadtreeBlock's)

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"block={self.block!r} is not one of {', '.join(BLOCKS)}")
        if self.block == "quadtree" and self.attention != "quadtree":
            raise ValueError(f"block=quadtree is the QuadTree-LoFTR layer: it needs attention=quadtree, "
                             f"not {self.attention!r}")


class EncoderLayer(nn.Module):
    """One LoFTR attention layer: x + norm(mlp([x, norm(merge(attention(x, source)))])).

    Parameter names follow the official release so checkpoints load without renaming.
    """

    def __init__(self, d_model: int, num_heads: int, attention: str, quadtree: QuadtreeConfig | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.attention = build_attention(attention, quadtree)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(2 * d_model, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, source, x_mask=None, source_mask=None, x_grid=None, source_grid=None):
        """x: (N, L, C), source: (N, S, C), masks (N, L) / (N, S) bool, True = valid, grids (h, w) of the
        tokens (for quadtree attention) -> (N, L, C)."""
        heads = self.num_heads
        query = linear(x, self.q_proj.weight).unflatten(-1, (heads, -1))
        key = linear(source, self.k_proj.weight).unflatten(-1, (heads, -1))
        value = linear(source, self.v_proj.weight).unflatten(-1, (heads, -1))
        message = self.attention(query, key, value, x_mask, source_mask, x_grid, source_grid).flatten(-2)
        message = self.norm1(linear(message, self.merge.weight))
        # mlp([x, message]) with the first weight split in two: no concatenated copy of every token
        w_x, w_message = self.mlp[0].weight.split(x.shape[-1], dim=1)
        hidden = torch.relu_(linear(x, w_x).add_(linear(message, w_message)))
        message = self.norm2(linear(hidden, self.mlp[2].weight))
        return x + message


class QuadtreeMessage(nn.Module):
    """The QuadTree-LoFTR layer's attention: q/k/v 1x1 projections (stored as the official 1x1 convolutions),
    the QuadTree kernel (`py_att`, as the official module names it) and a biased output projection."""

    def __init__(self, d_model: int, num_heads: int, quadtree: QuadtreeConfig):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Conv2d(d_model, d_model, 1, bias=False)
        self.k_proj = nn.Conv2d(d_model, d_model, 1, bias=False)
        self.v_proj = nn.Conv2d(d_model, d_model, 1, bias=False)
        self.py_att = build_attention("quadtree", quadtree)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, source, x_mask, source_mask, x_grid, source_grid):
        def project(tokens, conv):
            return linear(tokens, conv.weight.flatten(1)).unflatten(-1, (self.num_heads, -1))

        message = self.py_att(project(x, self.q_proj), project(source, self.k_proj), project(source, self.v_proj),
                              x_mask, source_mask, x_grid, source_grid)
        return linear(message.flatten(-2), self.proj.weight, self.proj.bias)


class DepthwiseConv(nn.Module):
    """A 3x3 depthwise convolution over the token grid; padded tokens count as zeros, like the border."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, mask, grid):
        if mask is not None:
            x = x * mask[..., None]
        grid_x = x.transpose(1, 2).unflatten(-1, grid)  # (N, C, h, w)
        return self.dwconv(grid_x).flatten(2).transpose(1, 2)


class ConvMlp(nn.Module):
    """fc1, ReLU, the depthwise convolution, GELU, fc2: the official QuadTree-LoFTR MLP (no dropout)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, mask, grid):
        hidden = torch.relu(linear(x, self.fc1.weight, self.fc1.bias))
        hidden = F.gelu(self.dwconv(hidden, mask, grid))
        return linear(hidden, self.fc2.weight, self.fc2.bias)


class QuadtreeEncoderLayer(nn.Module):
    """x + proj(attention(norm1(x), norm1(source))), then + mlp(norm2(x)): the official QuadtreeBlock's
    layout and parameter names, so its checkpoints load without renaming."""

    def __init__(self, d_model: int, num_heads: int, quadtree: QuadtreeConfig, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = QuadtreeMessage(d_model, num_heads, quadtree)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = ConvMlp(d_model, d_model * mlp_ratio)

    def forward(self, x, source, x_mask=None, source_mask=None, x_grid=None, source_grid=None):
        if x_grid is None or source_grid is None:
            raise ValueError("the quadtree layer needs the token grids (h, w) of both images")
        x = x + self.attn(self.norm1(x), self.norm1(source), x_mask, source_mask, x_grid, source_grid)
        return x + self.mlp(self.norm2(x), x_mask, x_grid)

    def reset_parameters(self) -> None:
        """The official initialisation: linear weights truncated normal (std 0.02) with zero biases, the q/k/v
        projections likewise, the depthwise convolution normal with std sqrt(2 / fan_out), norms 1 and 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear) or module in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


class LocalFeatureTransformer(nn.Module):
    """A stack of layers; a "self" layer attends within each image, a "cross" layer to the other image.

    In a cross layer of LoFTR's layout image 1 attends to the already-updated image 0 tokens, as in the
    official code; in QuadTree-LoFTR's both images attend to the other's tokens from before the layer, as in
    its official code.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        for name in config.layer_names:
            if name not in ("self", "cross"):
                raise ValueError(f"layer_names may only hold 'self' and 'cross', got {name!r}")
        self.d_model = config.d_model
        self.layer_names = tuple(config.layer_names)
        self.simultaneous_cross = config.block == "quadtree"
        if config.block == "quadtree":  # the official code initialises one layer and copies it
            layer = QuadtreeEncoderLayer(config.d_model, config.num_heads, config.quadtree, config.mlp_ratio)
            layer.reset_parameters()
            self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in self.layer_names)
        else:
            layer = EncoderLayer(config.d_model, config.num_heads, config.attention, config.quadtree)
            self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in self.layer_names)
            for p in self.parameters():  # the official initialisation
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def forward(self, feat0, feat1, mask0=None, mask1=None, grid0=None, grid1=None):
        """feat0: (N, L, C), feat1: (N, S, C), masks bool (N, L) / (N, S), grids (h, w) of each image's tokens
        (needed by quadtree attention) -> updated (feat0, feat1)."""
        if feat0.shape[-1] != self.d_model or feat1.shape[-1] != self.d_model:
            raise ValueError(f"expected {self.d_model} channels, got {feat0.shape[-1]} and {feat1.shape[-1]}")
        for layer, name in zip(self.layers, self.layer_names):
            if name == "self":
                feat0 = layer(feat0, feat0, mask0, mask0, grid0, grid0)
                feat1 = layer(feat1, feat1, mask1, mask1, grid1, grid1)
            elif self.simultaneous_cross:
                feat0, feat1 = (layer(feat0, feat1, mask0, mask1, grid0, grid1),
                                layer(feat1, feat0, mask1, mask0, grid1, grid0))
            else:
                feat0 = layer(feat0, feat1, mask0, mask1, grid0, grid1)
                feat1 = layer(feat1, feat0, mask1, mask0, grid1, grid0)
        return feat0, feat1
