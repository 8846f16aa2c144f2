"""Fine level: crop windows of the stride-2 features around each coarse match, refine with a small
transformer, and locate the match in image 1 by the expectation of a correlation heatmap."""

from dataclasses import dataclass, field

import torch
from torch import nn

from ..transformer.encoder import TransformerConfig
from ..transformer.linear import linear


@dataclass
class FineConfig:
    window_size: int = 5  # w in LoFTR sec. 3.4 (odd: the window has a centre)
    concat_coarse_feat: bool = True  # merge the coarse token into each window (official)
    transformer: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(d_model=128, num_heads=8, layer_names=("self", "cross"))
    )  # LoFTR: N_f = 1


@dataclass
class FineMatches:
    """Sub-pixel refinement of each coarse match (aligned with `CoarseMatches` entries)."""

    expectation: torch.Tensor  # (M, 2) offset of the match in image 1's window, normalised to [-1, 1]
    std: torch.Tensor  # (M,) sum of the heatmap's standard deviations along x and y (normalised units)
    log_heatmap: torch.Tensor  # (M, w*w) log-probabilities of the heatmap, row-major over image 1's window


def crop_windows(feat: torch.Tensor, batch_index: torch.Tensor, cell: torch.Tensor, grid_width: int,
                 window: int, step: int) -> torch.Tensor:
    """The (window x window) patches of `feat` (B, C, H, W) centred on fine cell `step * (row, col)` of each
    coarse `cell` (row-major on a grid `grid_width` wide), zero outside the map: (M, window**2, C).

    Only the requested windows are gathered (the official unfold of the whole map is window**2 times larger),
    and without a padded copy of the map: outside positions read the border and are zeroed.
    """
    height, width = feat.shape[2:]
    offsets = torch.arange(window, device=cell.device) - window // 2
    rows = (cell // grid_width * step)[:, None] + offsets  # (M, w)
    cols = (cell % grid_width * step)[:, None] + offsets
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    patches = feat.permute(0, 2, 3, 1)[batch_index[:, None, None], rows[:, :, None], cols[:, None, :]]
    patches = patches.masked_fill_(~inside[..., None], 0)  # (M, w, w, C)
    return patches.reshape(len(cell), window * window, feat.shape[1])


class FinePreprocess(nn.Module):
    """Windows around coarse matches, each fine feature merged with its match's coarse token."""

    def __init__(self, config: FineConfig, coarse_dim: int):
        super().__init__()
        self.window = config.window_size
        fine_dim = config.transformer.d_model
        self.concat_coarse_feat = config.concat_coarse_feat
        if self.concat_coarse_feat:
            self.down_proj = nn.Linear(coarse_dim, fine_dim, bias=True)
            self.merge_feat = nn.Linear(2 * fine_dim, fine_dim, bias=True)
        for p in self.parameters():  # the official initialisation
            if p.dim() > 1:
                nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")

    def forward(self, fine0, fine1, coarse0, coarse1, b, i, j, grid0, grid1, step):
        """Windows (M, w*w, Cf) of matches (b, i, j) in each image. fine0/1: (B, Cf, Hf, Wf) maps; coarse0/1:
        (B, L, Cc) transformed tokens on grids `grid0`/`grid1`; `step`: fine cells per coarse cell."""
        win0 = crop_windows(fine0, b, i, grid0[1], self.window, step)
        win1 = crop_windows(fine1, b, j, grid1[1], self.window, step)
        if not self.concat_coarse_feat or len(b) == 0:
            return win0, win1
        fine_dim = win0.shape[-1]
        # merge_feat([window, coarse]) = window W_a^T + (coarse W_b^T + bias): the coarse half once per match
        # rather than once per window pixel.
        w_window, w_coarse = self.merge_feat.weight.split(fine_dim, dim=1)
        context = linear(torch.cat([coarse0[b, i], coarse1[b, j]]), self.down_proj.weight, self.down_proj.bias)
        context = linear(context, w_coarse, self.merge_feat.bias)  # (2M, Cf)
        merged = linear(torch.cat([win0, win1]), w_window) + context[:, None]
        return merged.chunk(2)


def window_grid(window: int, device, dtype) -> torch.Tensor:
    """(window**2, 2) normalised (x, y) of each window pixel, row-major, from -1 to 1."""
    axis = torch.linspace(-1, 1, window, device=device, dtype=dtype)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], -1).reshape(-1, 2)


def fine_expectation(win0: torch.Tensor, win1: torch.Tensor) -> FineMatches:
    """Correlate the centre feature of each window of image 0 with the window of image 1 (M, w*w, C);
    the soft-argmax of the heatmap is the match, its spread a confidence for the loss weighting."""
    num, ww, channels = win0.shape
    window = int(round(ww**0.5))
    centre = win0[:, ww // 2]
    heatmap = torch.einsum("mc,mrc->mr", centre, win1).mul_(channels**-0.5)
    log_heatmap = heatmap.to(torch.promote_types(heatmap.dtype, torch.float32)).log_softmax(dim=1)  # fp32 under autocast
    heatmap = log_heatmap.exp()
    grid = window_grid(window, heatmap.device, heatmap.dtype)
    expectation = heatmap @ grid  # (M, 2)
    variance = heatmap @ grid**2 - expectation**2
    # sqrt has an infinite slope at 0: differentiate it only above the floor the official code clamps to.
    floor = 1e-10
    safe = torch.where(variance > floor, variance, torch.ones_like(variance)).sqrt()
    std = torch.where(variance > floor, safe, torch.full_like(variance, floor**0.5)).sum(-1)
    return FineMatches(expectation, std, log_heatmap)
