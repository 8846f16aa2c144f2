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
    # At inference, image 0's point is the window position within this many fine pixels of the cell centre
    # whose heatmap is sharpest (smallest std), not the centre itself: in weakly textured cells the centre
    # cannot be localised, a nearby corner can. 0: LoFTR's cell centre. Training always queries the centre.
    query_radius: int = 0
    concat_coarse_feat: bool = True  # merge the coarse token into each window (official)
    transformer: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(d_model=128, num_heads=8, layer_names=("self", "cross"))
    )  # LoFTR: N_f = 1

    def __post_init__(self):
        if not 0 <= self.query_radius <= self.window_size // 2:
            raise ValueError(f"fine.query_radius must be in [0, {self.window_size // 2}] (inside the window of "
                             f"{self.window_size}), got {self.query_radius}")


@dataclass
class FineMatches:
    """Sub-pixel refinement of each coarse match (aligned with `CoarseMatches` entries)."""

    expectation: torch.Tensor  # (M, 2) offset of the match in image 1's window, normalised to [-1, 1]
    std: torch.Tensor  # (M,) sum of the heatmap's standard deviations along x and y (normalised units)
    log_heatmap: torch.Tensor  # (M, w*w) log-probabilities of the heatmap, row-major over image 1's window
    query: torch.Tensor  # (M,) long: the image-0 window position (row-major) the match is for; w*w // 2: the centre
    # (M, w*w, w*w): the heatmap of every image-0 window position (rows) over image 1's window, when asked for
    window_log_heatmaps: torch.Tensor | None = None


def crop_windows(feat: torch.Tensor, batch_index: torch.Tensor, cell: torch.Tensor, grid_width: int,
                 window: int, step: int) -> torch.Tensor:
    """The (window x window) patches of `feat` (B, C, H, W) centred on fine cell `step * (row, col)` of each
    coarse `cell` (row-major on a grid `grid_width` wide), zero outside the map: (M, window**2, C)."""
    return crop_windows_at(feat, batch_index, cell // grid_width * step, cell % grid_width * step, window)


def crop_windows_at(feat: torch.Tensor, batch_index: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
                    window: int) -> torch.Tensor:
    """The (window x window) patches of `feat` (B, C, H, W) centred on cells (row, col) (M,) long, zero
    outside the map: (M, window**2, C), row-major.

    Only the requested windows are gathered (the official unfold of the whole map is window**2 times larger),
    and without a padded copy of the map: outside positions read the border and are zeroed.
    """
    height, width = feat.shape[2:]
    offsets = torch.arange(window, device=row.device) - window // 2
    rows = row[:, None] + offsets  # (M, w)
    cols = col[:, None] + offsets
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    patches = feat.permute(0, 2, 3, 1)[batch_index[:, None, None], rows[:, :, None], cols[:, None, :]]
    patches = patches.masked_fill_(~inside[..., None], 0)  # (M, w, w, C)
    return patches.reshape(len(row), window * window, feat.shape[1])


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


def fine_expectation(win0: torch.Tensor, win1: torch.Tensor, query_radius: int = 0,
                     all_queries: bool = False) -> FineMatches:
    """Correlate a feature of each window of image 0 with the window of image 1 (M, w*w, C); the soft-argmax
    of the heatmap is the match, its spread a confidence for the loss weighting.

    The feature is the window's centre (LoFTR), or with `query_radius` r > 0 the one among the positions at
    most r fine pixels from the centre whose heatmap has the smallest std. `all_queries`: also return every
    position's heatmap (`window_log_heatmaps`), which the window cross-entropy trains.
    """
    num, ww, channels = win0.shape
    window = int(round(ww**0.5))
    centre = ww // 2
    if query_radius == 0 and not all_queries:
        heatmaps = log_heatmaps(win0[:, centre:centre + 1], win1, channels)
        query = torch.full((num,), centre, dtype=torch.long, device=win0.device)
        expectation, std = soft_argmax(heatmaps[:, 0], window)
        return FineMatches(expectation, std, heatmaps[:, 0], query)
    if query_radius < 0 or query_radius > window // 2:
        raise ValueError(f"query_radius must be in [0, {window // 2}] for a window of {window}, got {query_radius}")
    heatmaps = log_heatmaps(win0, win1, channels)  # (M, w*w, w*w)
    expectations, stds = soft_argmax(heatmaps, window)
    offsets = window_grid(window, win0.device, torch.float32) * (window // 2)  # fine pixels from the centre
    allowed = offsets.abs().amax(-1) <= query_radius
    query = stds.masked_fill(~allowed, float("inf")).argmin(1)
    rows = torch.arange(num, device=win0.device)
    return FineMatches(expectations[rows, query], stds[rows, query], heatmaps[rows, query], query,
                       heatmaps if all_queries else None)


def log_heatmaps(queries: torch.Tensor, win1: torch.Tensor, channels: int) -> torch.Tensor:
    """(M, Q, w*w) log-softmax of each query's (M, Q, C) correlation with image 1's window, in fp32 under autocast."""
    heatmap = torch.einsum("mqc,mrc->mqr", queries, win1).mul_(channels**-0.5)
    return heatmap.to(torch.promote_types(heatmap.dtype, torch.float32)).log_softmax(dim=-1)


def soft_argmax(log_heatmap: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expectation (..., 2) and std (...,) of heatmaps (..., w*w) over the normalised window grid."""
    heatmap = log_heatmap.exp()
    grid = window_grid(window, heatmap.device, heatmap.dtype)
    expectation = heatmap @ grid
    variance = heatmap @ grid**2 - expectation**2
    # sqrt has an infinite slope at 0: differentiate it only above the floor the official code clamps to.
    floor = 1e-10
    safe = torch.where(variance > floor, variance, torch.ones_like(variance)).sqrt()
    std = torch.where(variance > floor, safe, torch.full_like(variance, floor**0.5)).sum(-1)
    return expectation, std
