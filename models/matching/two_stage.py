"""Efficient LoFTR's fine level (Wang et al., CVPR 2024, sec. 3.3): a full-resolution feature map from a small
FPN over the coarse, 1/4 and 1/2 maps, then a two-stage refinement of each coarse match.

Stage 1: the 8x8 window of image 0's cell against the (8+2)x(8+2) window around image 1's cell (one pixel of
context each side); the dual-softmax of their correlation, cropped to the inner 8x8 of image 1, and its
arg-max picks a pixel match inside both windows. Stage 2: the last `regress_channels` channels of the two
windows are correlated at that pixel of image 0 against the 3x3 pixels of image 1 around the stage-1 match,
turned into a heatmap by a softmax at `regress_temperature`, and its expectation moves image 1's point by up to
a pixel: sub-pixel matches.

Conventions are upstream's (zju3dv/EfficientLoFTR, src/loftr/utils/fine_matching.py), which the official
weights were trained with: the k-th pixel of a window sits at k - W/2 + 0.5 pixels from the coarse point, and
stage 2's 3x3 neighbourhood is read at window rows and columns (r - 1 .. r + 1) of the padded (W+2) window for
the stage-1 pixel (r, c) of the inner one, with torch's wrap-around for r = 0 (index -1 is the last row).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TwoStageFineConfig:
    window: int = 8  # Efficient LoFTR FINE_WINDOW_SIZE: the coarse stride, one window a cell
    regress_channels: int = 8  # MATCH_FINE.LOCAL_REGRESS_SLICEDIM: the channels stage 2 correlates
    regress_temperature: float = 10.0  # MATCH_FINE.LOCAL_REGRESS_TEMPERATURE


@dataclass
class TwoStageMatches:
    """The fine level's result for M coarse matches, in pixels of the full-resolution fine map."""

    offset0: torch.Tensor  # (M, 2) (x, y) of image 0's point from its coarse point (stage 1)
    offset1: torch.Tensor  # (M, 2) image 1's, stage 1 plus stage 2's sub-pixel move
    heatmap: torch.Tensor  # (M, W*W, W*W) stage 1's dual-softmax, image 0's window x image 1's inner window
    regress_logits: torch.Tensor  # (M, W*W, (W+2)^2) stage 2's correlations, before the temperature (its loss)
    stage1_index0: torch.Tensor  # (M,) long: the stage-1 pixel of image 0's window, row-major
    stage1_index1: torch.Tensor  # (M,) long: that of image 1's inner window
    expectation: torch.Tensor  # (M, 2) stage 2's expectation in [-1, 1] (one pixel per unit)


class FineFPN(nn.Module):
    """The full-resolution fine map from the transformed coarse map (1/8) and the backbone's 1/4 and 1/2
    maps: lateral 1x1 convolutions, each sum refined by conv-BN-LeakyReLU-conv, upsampled 2x bilinearly at
    each step. Names are upstream's FinePreprocess, so its weights load as they are."""

    def __init__(self, block_dims: tuple[int, int, int] = (64, 128, 256)):
        super().__init__()
        half, quarter, coarse = block_dims
        self.layer3_outconv = nn.Conv2d(coarse, coarse, 1, bias=False)
        self.layer2_outconv = nn.Conv2d(quarter, coarse, 1, bias=False)
        self.layer2_outconv2 = self._refine(coarse, quarter)
        self.layer1_outconv = nn.Conv2d(half, quarter, 1, bias=False)
        self.layer1_outconv2 = self._refine(quarter, half)
        for parameter in self.parameters():  # upstream's initialisation
            if parameter.dim() > 1:
                nn.init.kaiming_normal_(parameter, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _refine(channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                             nn.LeakyReLU(), nn.Conv2d(channels, out_channels, 3, padding=1, bias=False))

    def forward(self, coarse: torch.Tensor, quarter: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        """coarse (B, C2, H/8, W/8), quarter (B, C1, H/4, W/4), half (B, C0, H/2, W/2) -> (B, C0, H, W)."""
        x = _upsample(self.layer3_outconv(coarse))
        x = _upsample(self.layer2_outconv2(self.layer2_outconv(quarter) + x))
        return _upsample(self.layer1_outconv2(self.layer1_outconv(half) + x))


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def match_windows(fine0: torch.Tensor, fine1: torch.Tensor, batch_index: torch.Tensor, index0: torch.Tensor,
                  index1: torch.Tensor, window: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of M coarse matches (b, i, j) from full-resolution maps (B, C, H, W): image 0's W x W block
    of cell i (M, W*W, C) and image 1's (W+2) x (W+2) block around cell j, zero-padded at the border
    (M, (W+2)^2, C); row-major pixels. Cells are W pixels apart (the coarse stride). Gathered by index, so the
    cost follows the matches, not the map (upstream unfolds every cell's window, then picks)."""
    windows0 = _gather_windows(fine0, batch_index, index0, window, 0)
    windows1 = _gather_windows(fine1, batch_index, index1, window, 1)
    return windows0, windows1


def _gather_windows(fine: torch.Tensor, batch_index: torch.Tensor, index: torch.Tensor, window: int,
                    margin: int) -> torch.Tensor:
    """(M, (W+2m)^2, C): the blocks of `fine` (B, C, H, W') from `margin` m pixels before the cells `index`
    (row-major, `window` pixels apart) to m pixels past them, zero outside the map (no padded copy of it)."""
    columns = fine.shape[3] // window
    offsets = torch.arange(-margin, window + margin, device=fine.device)
    row = index // columns
    rows = (row * window)[:, None, None] + offsets[None, :, None]
    # index - row * columns, not index % columns: the ONNX exporter cannot take % by a size known only at run time
    cols = ((index - row * columns) * window)[:, None, None] + offsets[None, None, :]
    # (M, side, side, C): the indexed dimensions first
    blocks = fine[batch_index[:, None, None], :, rows.clamp(0, fine.shape[2] - 1), cols.clamp(0, fine.shape[3] - 1)]
    if margin:  # the pixels past the map's border read as zero
        inside = (rows >= 0) & (rows < fine.shape[2]) & (cols >= 0) & (cols < fine.shape[3])  # (M, side, side)
        blocks = torch.where(inside[..., None], blocks, blocks.new_zeros(()))
    return blocks.reshape(len(index), len(offsets) ** 2, fine.shape[1])


class TwoStageFineMatching(nn.Module):
    def __init__(self, config: TwoStageFineConfig | None = None):
        super().__init__()
        self.config = config if config is not None else TwoStageFineConfig()

    def forward(self, windows0: torch.Tensor, windows1: torch.Tensor) -> TwoStageMatches:
        """windows0 (M, W*W, C), windows1 (M, (W+2)^2, C) from `match_windows` -> `TwoStageMatches`."""
        cfg = self.config
        count, pixels, channels = windows0.shape
        side = int(round(pixels**0.5))
        sliced = cfg.regress_channels
        # batched matmuls, not einsum: ONNX Runtime's Einsum dies (SIGFPE) on M = 0 windows, an exported pair
        # with no match
        scores = (windows0[..., :-sliced] / channels**0.5) @ (windows1[..., :-sliced] / channels**0.5).transpose(1, 2)
        regress_logits = windows0[..., -sliced:] @ (windows1[..., -sliced:] / sliced**0.5).transpose(1, 2)
        heatmap = F.softmax(scores, 1) * F.softmax(scores, 2)
        heatmap = heatmap.reshape(count, pixels, side + 2, side + 2)[..., 1:-1, 1:-1].reshape(count, pixels, pixels)

        best = heatmap.reshape(count, pixels * pixels).argmax(-1)
        index0, index1 = best // pixels, best % pixels
        offset0, offset1 = window_offset(index0, side, scores.dtype), window_offset(index1, side, scores.dtype)
        rows = torch.arange(count, device=windows0.device)
        expectation = regress(regress_logits, rows, index0, index1, cfg.regress_temperature)
        return TwoStageMatches(offset0, offset1 + expectation, heatmap, regress_logits, index0, index1, expectation)


def regress(regress_logits: torch.Tensor, match: torch.Tensor, index0: torch.Tensor, index1: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Stage 2 at N pixel pairs: for match `match` (N,) of `regress_logits` (M, W*W, (W+2)^2), image 0's pixel
    `index0` (N,) against the 3x3 pixels of image 1 around its inner-window pixel `index1` (N,), read on the
    padded window as upstream does (module docstring): the softmax at `temperature` and its expectation, (N, 2)
    (x, y) in [-1, 1], one pixel per unit. The model runs it at its stage-1 matches, the loss at the true ones."""
    count, pixels = regress_logits.shape[:2]
    side = int(round(pixels**0.5))
    shift = torch.arange(-1, 2, device=regress_logits.device)
    rows = (index1 // side)[:, None, None] + shift[None, :, None]  # (N, 3, 3)
    cols = (index1 % side)[:, None, None] + shift[None, None, :]
    logits = regress_logits.reshape(count, pixels, side + 2, side + 2)
    logits = logits[match[:, None, None], index0[:, None, None], rows, cols]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # the softmax in at least float32
    weights = F.softmax(logits.reshape(len(match), 9) / temperature, -1).reshape(len(match), 3, 3)
    grid = shift.to(weights.dtype)
    return torch.stack([(weights.sum(1) * grid).sum(-1), (weights.sum(2) * grid).sum(-1)], -1)


def window_offset(index: torch.Tensor, side: int, dtype: torch.dtype) -> torch.Tensor:
    """(M, 2) (x, y) of window pixels `index` (M,) (row-major) from the window's centre: k - side / 2 + 0.5."""
    return torch.stack([index % side, index // side], -1).to(dtype) - side // 2 + 0.5
