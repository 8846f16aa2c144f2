"""Multi-head attention kernels of the LoFTR transformer: linear (the official one), full softmax and
QuadTree (models/transformer/quadtree.py).

Each takes `query` (N, L, H, D), `key` and `value` (N, S, H, D), optional boolean padding masks `query_mask`
(N, L) and `key_mask` (N, S), True where valid, and the token grids (h, w) of both sides, which only QuadTree
uses; they return (N, L, H, D). Padded keys get no weight and padded queries return zeros, so padding never
changes the valid tokens' results.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .quadtree import QuadtreeAttention, QuadtreeConfig


class LinearAttention(nn.Module):
    """Linear attention with the elu(x) + 1 feature map (Katharopoulos et al., ICML 2020), as in LoFTR.

    out_l = phi(q_l) sum_s phi(k_s) v_s^T / (phi(q_l) . sum_s phi(k_s)): linear in L and S.
    """

    def __init__(self, eps: float = 1e-6):  # eps: the official value
        super().__init__()
        self.eps = eps

    def forward(self, query, key, value, query_mask=None, key_mask=None, query_grid=None, key_grid=None):
        q = F.elu(query).add_(1)
        k = F.elu(key).add_(1)
        if query_mask is not None:
            q = q * query_mask[:, :, None, None]
        if key_mask is not None:
            k = k * key_mask[:, :, None, None]
            value = value * key_mask[:, :, None, None]
        source = value.shape[1]
        if value.dtype == torch.float16:
            value = value / source  # the sum over S may pass fp16's 65504 (the official safeguard), undone below
        kv = torch.einsum("nshd,nshv->nhdv", k, value)  # (N, H, D, D)
        normaliser = 1 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + self.eps)  # (N, L, H)
        out = torch.einsum("nlhd,nhdv->nlhv", q, kv) * normaliser[..., None]
        return out * source if value.dtype == torch.float16 else out


class FullAttention(nn.Module):
    """Softmax attention softmax(q k^T / sqrt(D)) v through `F.scaled_dot_product_attention`.

    SDPA dispatches to flash / memory-efficient kernels on GPU and a fused kernel on CPU.
    """

    def forward(self, query, key, value, query_mask=None, key_mask=None, query_grid=None, key_grid=None):
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # (N, 1, 1, S)
        out = F.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=attn_mask
        ).transpose(1, 2)
        if query_mask is not None:
            out = out * query_mask[:, :, None, None]
        return out


ATTENTION = {"linear": LinearAttention, "full": FullAttention, "quadtree": QuadtreeAttention}


def build_attention(name: str, quadtree: QuadtreeConfig | None = None) -> nn.Module:
    """The kernel `name`; "quadtree" with `quadtree`'s settings (the paper's by default)."""
    if name not in ATTENTION:
        raise ValueError(f"Unknown attention {name!r}; choose one of {sorted(ATTENTION)}")
    if name == "quadtree":
        return QuadtreeAttention(quadtree if quadtree is not None else QuadtreeConfig())
    return ATTENTION[name]()
