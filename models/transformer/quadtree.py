"""QuadTree attention (Tang et al., ICLR 2022) in PyTorch alone: no custom kernel, so it runs on any device.

Queries, keys and values are pooled into pyramids by 2x2 averages (over valid tokens only). The coarsest level
attends fully; each query there keeps the K keys with the highest attention. At every finer level the four
children of a query attend only to the four children of each key its parent kept (4K candidates, gathered, so
no (L x S) tensor is built below the coarsest level), and each child keeps its own K for the level below.

    kind "B" (the official LoFTR variant's): every level's message is softmax attention over its candidates;
             the output is the sum of the levels' messages (each coarse one given to its children), mixed by
             softmax(w), w one learned weight a level (coarsest first, as the official parameter `weight`).
    kind "A": a child's weight is its parent's attention times a softmax among the parent's four children, so
             the weights of a query over all levels are one distribution; at every level but the finest the
             kept keys are left out of the message (their weight passes to their children); the output is the
             plain sum.

Exact identities (tests/models/test_quadtree.py): with K covering every key, kind B is the softmax(w) mixture
of full attention at each level of the same pyramids, and kind A is full attention at the finest level with
the tree-factored distribution P(j) = A_top(q, anc(j)) * prod_levels softmax_siblings(q_l . k_l).

Tensors are (N, L, H, D) like the other kernels, with each image's token grid (h, w) given: grids whose sides
are not multiples of 2^(levels - 1) are padded inside, as masked tokens.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

QUADTREE_KINDS = ("A", "B")


@dataclass
class QuadtreeConfig:
    kind: str = "B"  # the official LoFTR variant's (configs/loftr/*/loftr_ds_quadtree.py: ATTN_TYPE = "B")
    topks: tuple[int, ...] = (16, 8, 8)  # keys kept a query, coarsest level first; outdoor official, indoor 32/16/16

    def __post_init__(self):
        self.topks = tuple(self.topks)  # a list from a YAML file or a stored config
        if self.kind not in QUADTREE_KINDS:
            raise ValueError(f"quadtree.kind={self.kind!r} is not one of {', '.join(QUADTREE_KINDS)}")
        if len(self.topks) < 1 or any(int(k) < 1 for k in self.topks):
            raise ValueError(f"quadtree.topks={list(self.topks)} needs one whole number >= 1 a level")


def pyramid(x: torch.Tensor, mask: torch.Tensor, levels: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """x (Z, h, w, D) with mask (Z, h, w) bool, sides multiples of 2^(levels - 1) -> `levels` maps, finest
    first, each the mean of the valid tokens of its 2x2 block below, and their masks (a block with a valid
    token is valid). Without padding this is 2x2 average pooling."""
    maps, masks = [x * mask[..., None]], [mask]
    for _ in range(levels - 1):
        weight = F.avg_pool2d(masks[-1][:, None].to(x.dtype), 2)[:, 0]  # share of valid children
        total = F.avg_pool2d(maps[-1].permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        maps.append(total / weight.clamp_min(1e-12)[..., None] * (weight > 0)[..., None])
        masks.append(weight > 0)
    return maps, masks


def _by_parent(x: torch.Tensor) -> torch.Tensor:
    """(Z, h, w, ...) -> (Z, h/2 * w/2, 4, ...): each 2x2 block's tokens, in raster order of the blocks."""
    return rearrange(x, "z (h t1) (w t2) ... -> z (h w) (t1 t2) ...", t1=2, t2=2)


def _to_raster(x: torch.Tensor, width: int) -> torch.Tensor:
    """(Z, blocks, 4, ...) -> (Z, h * w, ...): the inverse of _by_parent, flattened; `width` the child grid's."""
    return rearrange(x, "z (h w) (t1 t2) ... -> z (h t1 w t2) ...", w=width // 2, t1=2, t2=2)


def _masked(scores: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """Scores with padded keys at the lowest finite value of their dtype (under autocast too), not -inf: a
    softmax over four children that are all padding stays finite."""
    return scores.masked_fill(padded, torch.finfo(scores.dtype).min)


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (Z, S, D), index (Z, ...) into S -> (Z, ..., D): whole rows copied (index_select on the flattened
    batch, several times faster on the CPU than torch.gather with the index expanded over D)."""
    offsets = torch.arange(x.shape[0], device=x.device).view(-1, *[1] * (index.dim() - 1)) * x.shape[1]
    return x.reshape(-1, x.shape[-1]).index_select(0, (index + offsets).flatten()).view(*index.shape, x.shape[-1])


class QuadtreeAttention(nn.Module):
    """The kernel: softmax-scaled dot products over a key quadtree (module docstring). Kind B holds the
    learned level weights, named `weight` as in the official checkpoints."""

    def __init__(self, config: QuadtreeConfig):
        super().__init__()
        self.kind, self.topks = config.kind, tuple(int(k) for k in config.topks)
        self.levels = len(self.topks)
        if self.kind == "B":
            self.weight = nn.Parameter(torch.randn(self.levels))  # the official initialisation

    def forward(self, query, key, value, query_mask=None, key_mask=None, query_grid=None, key_grid=None):
        """query (N, L, H, D), key and value (N, S, H, D), masks (N, L) / (N, S) bool (True = valid), grids
        (h, w) with h * w = L and S -> (N, L, H, D); padded queries return zeros."""
        if query_grid is None or key_grid is None:
            raise ValueError("quadtree attention needs the token grids (h, w) of both images")
        n, length, heads, dim = query.shape
        q, q_mask = self._grid(query, query_mask, query_grid)
        k, k_mask = self._grid(key, key_mask, key_grid)
        v, _ = self._grid(value, key_mask, key_grid)
        qs, _ = pyramid(q, q_mask, self.levels)
        ks, k_masks = pyramid(k, k_mask, self.levels)
        vs, _ = pyramid(v, k_mask, self.levels)
        out = self._attend(qs, ks, vs, k_masks)  # (Z, h', w', D) on the padded query grid
        out = out[:, : query_grid[0], : query_grid[1]].reshape(n, heads, length, dim).transpose(1, 2)
        return out if query_mask is None else out * query_mask[:, :, None, None]

    def _grid(self, x, mask, grid):
        """(N, L, H, D) -> (N * H, h', w', D) padded to multiples of 2^(levels - 1), and its mask."""
        n, _, heads, dim = x.shape
        h, w = grid
        step = 2 ** (self.levels - 1)
        padded = (math.ceil(h / step) * step, math.ceil(w / step) * step)
        x = x.transpose(1, 2).reshape(n * heads, h, w, dim)
        valid = torch.ones(n, h, w, dtype=torch.bool, device=x.device) if mask is None else mask.view(n, h, w)
        x = F.pad(x, (0, 0, 0, padded[1] - w, 0, padded[0] - h))
        valid = F.pad(valid, (0, padded[1] - w, 0, padded[0] - h)).repeat_interleave(heads, 0)
        return x, valid

    def _attend(self, qs, ks, vs, k_masks):
        scale = qs[0].shape[-1] ** -0.5
        top = self.levels - 1
        z, hq, wq, dim = qs[top].shape
        q, k, v = qs[top].reshape(z, -1, dim), ks[top].reshape(z, -1, dim), vs[top].reshape(z, -1, dim)
        scores = torch.einsum("zld,zsd->zls", q, k) * scale
        attention = _masked(scores, ~k_masks[top].reshape(z, 1, -1)).softmax(-1)  # (Z, L, S)
        kept_score, kept = attention.topk(min(self.topks[0], attention.shape[-1]), dim=-1)  # (Z, L, K)
        if self.kind == "A" and top > 0:
            attention = attention.scatter(-1, kept, 0.0)  # the kept keys speak through their children
        messages = [torch.einsum("zls,zsd->zld", attention, v).view(z, hq, wq, dim)]
        for level, topk in zip(range(top - 1, -1, -1), self.topks[1:]):
            z, hq, wq, _ = qs[level].shape
            width = ks[level].shape[2]
            # each parent query's candidates: the 4 children of each key it kept, as raster indices
            row, col = kept // (width // 2), kept % (width // 2)
            children = torch.stack([(2 * row + t1) * width + 2 * col + t2 for t1 in (0, 1) for t2 in (0, 1)], -1)
            candidates = children.flatten(-2)  # (Z, parents, 4K)
            keys, values = _rows(ks[level].flatten(1, 2), candidates), _rows(vs[level].flatten(1, 2), candidates)
            valid = torch.gather(k_masks[level].flatten(1), 1, candidates.flatten(1)).view(candidates.shape)
            scores = torch.einsum("zpcd,zpkd->zpck", _by_parent(qs[level]), keys) * scale  # (Z, parents, 4, 4K)
            scores = _masked(scores, ~valid[:, :, None])
            if self.kind == "B":
                attention = scores.softmax(-1)
            else:  # each kept key's weight shared among its four children by a softmax over them
                siblings = scores.unflatten(-1, (-1, 4)).softmax(-1)
                attention = (siblings * kept_score[:, :, None, :, None]).flatten(-2)
            if level > 0:  # each child query keeps its own K for the level below
                kept_score, slot = attention.topk(min(topk, attention.shape[-1]), dim=-1)  # (Z, parents, 4, K)
                kept = torch.gather(candidates[:, :, None].expand(-1, -1, 4, -1), -1, slot)
                if self.kind == "A":
                    attention = attention.scatter(-1, slot, 0.0)
                kept, kept_score = _to_raster(kept, wq), _to_raster(kept_score, wq)
            message = torch.einsum("zpck,zpkd->zpcd", attention, values)
            messages.append(_to_raster(message, wq).view(z, hq, wq, dim))
        return self._merge(messages)

    def _merge(self, messages: list[torch.Tensor]) -> torch.Tensor:
        """Sum the levels' messages (coarsest first) on the finest grid, each coarse token's to its children;
        kind B weighs them by softmax(weight)."""
        weights = self.weight.softmax(0) if self.kind == "B" else None
        out = messages[0] * (weights[0] if weights is not None else 1)
        for index, message in enumerate(messages[1:], start=1):
            out = out.repeat_interleave(2, 1).repeat_interleave(2, 2)
            out = out + message * (weights[index] if weights is not None else 1)
        return out
