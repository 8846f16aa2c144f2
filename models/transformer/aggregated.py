"""Aggregated attention, Efficient LoFTR's coarse transformer layer (Wang et al., CVPR 2024, sec. 3.2).

Attention over every coarse token is what makes LoFTR slow; neighbouring tokens carry nearly the same message,
so Efficient LoFTR attends between pooled tokens: the queries are aggregated by a depthwise convolution
(kernel = stride = `query_pool`, 4 in the paper), the keys and values max-pooled (`key_pool`, 4), softmax
attention runs on the pooled grids (16x fewer tokens each side), and its message is upsampled bilinearly to the
full grid and fused with each token's own feature by an MLP:

    x + norm2(mlp([x, up(merge(attention(rope(q(norm1(aggregate(x)))), rope(k(norm1(pool(s)))), v(...)))]))

with RoPE (`RotaryPositionEncoding`) on the queries and keys of the self-attention layers only. Parameter names
follow upstream's AG_RoPE_EncoderLayer, so its weights load without renaming.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from geometry.grid import valid_extent

from .attention import FullAttention
from .position import RotaryPositionEncoding


class AggregatedAttentionLayer(nn.Module):
    """One layer; `rope`: the rotary encoding of a self-attention layer, None in a cross-attention one."""

    def __init__(self, d_model: int = 256, num_heads: int = 8, query_pool: int = 4, key_pool: int = 4,
                 rope: RotaryPositionEncoding | None = None):
        super().__init__()
        self.num_heads, self.query_pool, self.key_pool = num_heads, query_pool, key_pool
        self.aggregate = (nn.Conv2d(d_model, d_model, query_pool, stride=query_pool, groups=d_model, bias=False)
                          if query_pool > 1 else nn.Identity())
        self.max_pool = nn.MaxPool2d(key_pool, key_pool) if key_pool > 1 else nn.Identity()
        self.rope = rope
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.attention = FullAttention()  # softmax through SDPA: flash / memory-efficient kernels where they exist
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False),
            nn.LeakyReLU(inplace=True),
            nn.Linear(2 * d_model, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, source: torch.Tensor, x_mask: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C, H, W) attends to source (N, C, H', W'); masks (N, H, W) and (N, H', W') bool, True on the
        image. H, W must be multiples of `query_pool` (and H', W' of `key_pool`): the message is upsampled
        back by exactly that factor. Returns (N, C, H, W)."""
        height, width = x.shape[2:]
        if height % self.query_pool or width % self.query_pool:
            raise ValueError(f"the coarse grid {height}x{width} is not a multiple of the query pooling "
                             f"{self.query_pool}: give images whose sides are multiples of {8 * self.query_pool}")
        query = self.norm1(self.aggregate(x).permute(0, 2, 3, 1))  # (N, h, w, C)
        source = self.norm1(self.max_pool(source).permute(0, 2, 3, 1))  # (N, h', w', C)
        query, key, value = self.q_proj(query), self.k_proj(source), self.v_proj(source)
        if self.rope is not None:
            query, key = self.rope(query), self.rope(key)
        pooled_height, pooled_width = query.shape[1:3]
        # a pooled cell is on the image where any of its cells is (upstream max-pools the masks alike)
        query_mask = None if x_mask is None else self._pooled_mask(x_mask, self.query_pool)
        key_mask = None if source_mask is None else self._pooled_mask(source_mask, self.key_pool)
        query, key, value = (rearrange(t, "n h w (k d) -> n (h w) k d", k=self.num_heads) for t in (query, key, value))
        message = self.attention(query, key, value, query_mask, key_mask)
        message = self.merge(rearrange(message, "n l k d -> n l (k d)"))
        message = rearrange(message, "n (h w) c -> n c h w", h=pooled_height, w=pooled_width)
        if query_mask is not None:
            message = _replicate_edges(message, query_mask)
        if self.query_pool > 1:
            message = F.interpolate(message, scale_factor=self.query_pool, mode="bilinear", align_corners=False)
        fused = self.norm2(self.mlp(torch.cat([x, message], dim=1).permute(0, 2, 3, 1)))
        return x + fused.permute(0, 3, 1, 2)

    @staticmethod
    def _pooled_mask(mask: torch.Tensor, pool: int) -> torch.Tensor:
        """(N, H, W) bool -> (N, H / pool * W / pool): True where any cell of the pooled block is."""
        return F.max_pool2d(mask[:, None].float(), pool, pool)[:, 0].flatten(1).bool()


def _replicate_edges(message: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """message (N, C, h, w) with each sample's cells beyond its valid rectangle (mask (N, h * w), True on it)
    copied from the rectangle's last row and column: the bilinear upsampling then sees at the valid border what
    it sees at the border of an unpadded map (its clamp), so padding changes nothing on the image (upstream
    crops each sample instead)."""
    n, c, h, w = message.shape
    extent = valid_extent(mask, (h, w), n, message.device)  # (N, 2) valid (rows, columns)
    rows = torch.minimum(torch.arange(h, device=message.device)[None], extent[:, :1] - 1)  # (N, h)
    cols = torch.minimum(torch.arange(w, device=message.device)[None], extent[:, 1:] - 1)  # (N, w)
    message = message.gather(2, rows[:, None, :, None].expand(-1, c, -1, w))
    return message.gather(3, cols[:, None, None, :].expand(-1, c, h, -1))


@dataclass
class AggregatedTransformerConfig:
    d_model: int = 256  # Efficient LoFTR COARSE.D_MODEL
    num_heads: int = 8  # COARSE.NHEAD
    layer_names: tuple[str, ...] = ("self", "cross") * 4  # COARSE.LAYER_NAMES
    query_pool: int = 4  # COARSE.AGG_SIZE0
    key_pool: int = 4  # COARSE.AGG_SIZE1
    rope: bool = True  # COARSE.ROPE: rotary encoding in the self-attention layers
    rope_reference_size: tuple[int, int] = (832, 832)  # COARSE.NPE[:2], the training size
    rope_test_size: tuple[int, int] = (832, 832)  # COARSE.NPE[2:]; upstream suggests the test image's longer side


class AggregatedTransformer(nn.Module):
    """Efficient LoFTR's coarse transformer: `layer_names` of aggregated self- and cross-attention, each
    updating both maps (image 1's cross-attention reads image 0's updated map, as upstream's does)."""

    def __init__(self, config: AggregatedTransformerConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else AggregatedTransformerConfig()
        for name in config.layer_names:
            if name not in ("self", "cross"):
                raise ValueError(f"layer_names: {name!r} is neither 'self' nor 'cross'")

        def layer(name: str) -> AggregatedAttentionLayer:
            rope = None
            if config.rope and name == "self":
                rope = RotaryPositionEncoding(config.d_model, config.rope_reference_size, config.rope_test_size)
            return AggregatedAttentionLayer(config.d_model, config.num_heads, config.query_pool, config.key_pool,
                                            rope)

        self.layers = nn.ModuleList(layer(name) for name in config.layer_names)
        for parameter in self.parameters():  # upstream's initialisation
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, mask0: torch.Tensor | None = None,
                mask1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """feat0 (B, C, H0, W0), feat1 (B, C, H1, W1); masks (B, H, W) bool at the coarse grid."""
        for name, layer in zip(self.config.layer_names, self.layers):
            if name == "self":
                feat0, feat1 = layer(feat0, feat0, mask0, mask0), layer(feat1, feat1, mask1, mask1)
            else:
                feat0 = layer(feat0, feat1, mask0, mask1)
                feat1 = layer(feat1, feat0, mask1, mask0)
        return feat0, feat1
