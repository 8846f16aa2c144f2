"""What every composition of the family returns: one type, so that the losses, the evaluation and the
training read the same fields whichever model made them."""

from dataclasses import dataclass

import torch

from .matching.coarse import CoarseMatches
from .matching.fine import FineMatches
from .matching.subpixel import SubpixelMatches
from .matching.two_stage import TwoStageMatches


@dataclass
class MatchResult:
    """A batch's matches. Keypoints are (x, y) pixels of each image as given to the model, multiplied by the
    batch's `scale0` / `scale1` (original size / network input size) when the batch has them. Coarse cell (c, r)
    sits on pixel (8c, 8r), LoFTR's convention; the grids are `geometry.grid.grid_size` (ceil(side / 8)).

    `fine` is the family member's own fine stage, aligned with `coarse`: LoFTR's window expectation
    (`FineMatches`) or Efficient LoFTR's two stages (`TwoStageMatches`); each model's loss reads its own. None
    when the forward was asked for coarse matches only (`refine=False`)."""

    keypoints0: torch.Tensor  # (N, 2) float
    keypoints1: torch.Tensor  # (N, 2) float
    confidence: torch.Tensor  # (N,) coarse confidence of each match
    batch_index: torch.Tensor  # (N,) long
    coarse: CoarseMatches  # everything the coarse loss needs, ground-truth pads included in training
    fine: FineMatches | TwoStageMatches | None  # (M,) entries aligned with `coarse`
    coarse_grid0: tuple[int, int]  # (rows, columns) of image 0's coarse grid
    coarse_grid1: tuple[int, int]
    subpixel: SubpixelMatches | None = None  # LoFTR's stride-1 stage, when the model has one
