"""Coarse matching: a confidence matrix between the coarse cells of two images, and matches read off it."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from geometry.grid import cell_pixels, valid_extent

from .optimal_transport import log_optimal_transport

_MASKED_LOGIT = -1e9  # similarity of a padded cell (official INF)


@dataclass
class CoarseMatchingConfig:
    match_type: str = "dual_softmax"  # "dual_softmax" or "sinkhorn" (LoFTR sec. 3.3)
    threshold: float = 0.2  # confidence threshold theta_c (LoFTR official config)
    border_removal: int = 2  # cells dropped at each image border (official BORDER_RM)
    dual_softmax_temperature: float = 0.1  # LoFTR sec. 3.3
    sinkhorn_iterations: int = 3  # official SKH_ITERS
    sinkhorn_init_bin_score: float = 1.0  # official SKH_INIT_BIN_SCORE
    sinkhorn_prefilter: bool = False  # drop cells whose best entry is the dustbin (official default off)
    train_coarse_percent: float = 0.2  # share of cells sent to the fine level in training (official default)
    train_pad_num_gt_min: int = 200  # ground-truth matches always added in training (official default)
    # Efficient LoFTR's optimised model (its configs/loftr/eloftr_optimized.py): at inference the mutual nearest
    # neighbours of the logits themselves, thresholded there (it uses 25), skipping the dual softmax
    skip_softmax: bool = False  # MATCH_COARSE.SKIP_SOFTMAX
    # the similarity matmul in the autocast precision (MATCH_COARSE.FP16MATMUL, true in the optimised model);
    # false: in float32 at least even under fp16/bf16 autocast, which logits sharpened by the temperature need
    half_precision_similarity: bool = False


@dataclass
class CoarseMatches:
    """Coarse matches of a batch; in training they also hold the ground-truth pads the fine loss needs.

    Cells are indexed row-major on each image's coarse grid: index = row * grid_width + column.
    """

    confidence_matrix: torch.Tensor  # (B, L, S) in [0, 1]; the logits at inference with skip_softmax
    log_assignment: torch.Tensor | None  # (B, L+1, S+1) with dustbins, Sinkhorn only
    logits: torch.Tensor | None  # (B, L, S) similarity / temperature, dual-softmax training only (the loss's log p)
    batch_index: torch.Tensor  # (M,) long
    index0: torch.Tensor  # (M,) cell of image 0
    index1: torch.Tensor  # (M,) cell of image 1
    confidence: torch.Tensor  # (M,) coarse confidence; 0 for ground-truth pads
    is_ground_truth_pad: torch.Tensor  # (M,) bool

    def pixels(self, grid0: tuple[int, int], grid1: tuple[int, int], stride: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 2) network-input pixels of the matched cells of each image (`geometry.grid.cell_pixels` on the
        grids (rows, columns)), in the confidence's float type, at least float32: where the fine stage starts,
        and the keypoints of coarse matches alone."""
        dtype = torch.promote_types(self.confidence.dtype, torch.float32)
        return cell_pixels(self.index0, grid0, stride, dtype), cell_pixels(self.index1, grid1, stride, dtype)


def off_border(extent: torch.Tensor, height: int, width: int, border: int) -> torch.Tensor:
    """(B, height * width) bool: cells at least `border` cells inside the valid extent (B, 2) of each sample."""
    rows = torch.arange(height, device=extent.device)[None, :, None]
    cols = torch.arange(width, device=extent.device)[None, None, :]
    keep = (rows >= border) & (cols >= border)
    keep = keep & (rows < extent[:, 0, None, None] - border) & (cols < extent[:, 1, None, None] - border)
    return keep.reshape(-1, height * width)


@torch.no_grad()
def mutual_nearest_matches(
    confidence: torch.Tensor, threshold: float, keep0: torch.Tensor, keep1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matches (b, i, j, confidence) where entry (i, j) is the maximum of its row and of its column, above
    `threshold`, with both cells allowed by `keep0` (B, L) / `keep1` (B, S).

    Reads one row and one column maximum instead of materialising (B, L, S) boolean masks.
    """
    row_max, best_j = confidence.max(dim=2)  # (B, L)
    col_max = confidence.amax(dim=1)  # (B, S)
    match = (
        (row_max > threshold)
        & (torch.gather(col_max, 1, best_j) == row_max)
        & keep0
        & torch.gather(keep1, 1, best_j)
    )
    b, i = torch.nonzero(match, as_tuple=True)
    return b, i, best_j[b, i], row_max[b, i]


def mask_pairs(matrix: torch.Tensor, padded: tuple[torch.Tensor | None, torch.Tensor | None], value: float
               ) -> torch.Tensor:
    """`matrix` (B, L, S) with `value` at every pair of a padded cell: `padded` = (B, L, 1) and (B, 1, S) bool,
    True on padding, or None. Broadcast, never a (B, L, S) mask; in place in inference (no gradient)."""
    for mask in padded:
        if mask is not None:
            matrix = matrix.masked_fill(mask, value) if matrix.requires_grad else matrix.masked_fill_(mask, value)
    return matrix


def dual_softmax(similarity: torch.Tensor, padded: tuple[torch.Tensor | None, torch.Tensor | None]) -> torch.Tensor:
    """softmax over rows times softmax over columns of (B, L, S) logits; pairs of a padded cell (`mask_pairs`)
    get 0.

    Computed in float32 at least: under fp16/bf16 autocast the logits arrive in half precision, and the
    confidences feed the threshold and the focal loss, where bf16's 3 significant digits are too few.
    """
    similarity = mask_pairs(similarity.to(torch.promote_types(similarity.dtype, torch.float32)), padded,
                            _MASKED_LOGIT)
    if similarity.requires_grad:
        confidence = F.softmax(similarity, 1) * F.softmax(similarity, 2)
    else:
        # Inference: the column softmax as exp(x - column max) / column sum, in place. PyTorch's
        # softmax over dim 1 of a (L, S) matrix is several times slower than these contiguous passes, and
        # working in place keeps two (B, L, S) matrices alive instead of four.
        confidence = F.softmax(similarity, 2)
        column = similarity.sub_(similarity.amax(dim=1, keepdim=True)).exp_()
        confidence.mul_(column.div_(column.sum(dim=1, keepdim=True)))
    return mask_pairs(confidence, padded, 0.0)


class CoarseMatching(nn.Module):
    def __init__(self, config: CoarseMatchingConfig | None = None):
        super().__init__()
        config = config if config is not None else CoarseMatchingConfig()
        if config.match_type not in ("dual_softmax", "sinkhorn"):
            raise ValueError(f"match_type must be 'dual_softmax' or 'sinkhorn', got {config.match_type!r}")
        self.config = config
        if config.match_type == "sinkhorn":
            self.bin_score = nn.Parameter(torch.tensor(config.sinkhorn_init_bin_score))

    def forward(
        self,
        feat0: torch.Tensor,
        feat1: torch.Tensor,
        grid0: tuple[int, int],
        grid1: tuple[int, int],
        mask0: torch.Tensor | None = None,
        mask1: torch.Tensor | None = None,
        ground_truth: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> CoarseMatches:
        """Match transformed coarse tokens.

        Args:
            feat0, feat1: (B, L, C) and (B, S, C) tokens of grids `grid0` = (h0, w0), `grid1` = (h1, w1).
            mask0, mask1: optional (B, L) / (B, S) bool, True for cells of the real image (padding is False).
            ground_truth: in training, the ground-truth matches (b, i, j) used to pad the fine-level samples.
        """
        cfg = self.config
        batch, channels = feat0.shape[0], feat0.shape[-1]
        if cfg.half_precision_similarity:
            similarity = torch.einsum("blc,bsc->bls", feat0, feat1) / channels  # = <f0/sqrt(C), f1/sqrt(C)>
        else:
            dtype = torch.promote_types(feat0.dtype, torch.float32)
            with torch.autocast(feat0.device.type, enabled=False):
                similarity = torch.einsum("blc,bsc->bls", feat0.to(dtype), feat1.to(dtype)) / channels
        padded = (None if mask0 is None else ~mask0[:, :, None], None if mask1 is None else ~mask1[:, None, :])

        log_assignment = logits = None
        if cfg.match_type == "dual_softmax":
            similarity = similarity.div_(cfg.dual_softmax_temperature)
            # training keeps the logits: a true match's confidence can underflow (1e-30 and below at the
            # start of training), its log-confidence from the logits cannot
            logits = similarity if similarity.requires_grad else None
            if cfg.skip_softmax and not self.training:  # the logits are the confidence
                confidence = mask_pairs(similarity, padded, float("-inf"))
            else:
                confidence = dual_softmax(similarity, padded)
        else:
            log_assignment = log_optimal_transport(
                similarity, self.bin_score, cfg.sinkhorn_iterations, mask0, mask1
            )
            confidence = log_assignment[:, :-1, :-1].exp()
            if cfg.sinkhorn_prefilter and not self.training:
                best = log_assignment.argmax(dim=2)[:, :-1] == similarity.shape[2]  # row prefers its dustbin
                best_col = log_assignment.argmax(dim=1)[:, :-1] == similarity.shape[1]
                confidence = confidence.masked_fill(best[:, :, None] | best_col[:, None, :], 0.0)

        keep0 = off_border(valid_extent(mask0, grid0, batch, feat0.device), *grid0, cfg.border_removal)
        keep1 = off_border(valid_extent(mask1, grid1, batch, feat1.device), *grid1, cfg.border_removal)
        b, i, j, conf = mutual_nearest_matches(confidence.detach(), max(cfg.threshold, 0.0), keep0, keep1)
        is_pad = torch.zeros_like(b, dtype=torch.bool)
        if self.training and ground_truth is not None:
            b, i, j, conf, is_pad = self._pad_with_ground_truth(b, i, j, conf, ground_truth, mask0, mask1, feat0, feat1)
        return CoarseMatches(confidence, log_assignment, logits, b, i, j, conf, is_pad)

    def _pad_with_ground_truth(self, b, i, j, conf, ground_truth, mask0, mask1, feat0, feat1):
        """Sub-sample predictions and add random ground-truth matches, so the fine level always trains on
        true correspondences (LoFTR's training trick; the cap bounds fine-level memory)."""
        cfg = self.config
        count0 = mask0.sum(1) if mask0 is not None else torch.full((feat0.shape[0],), feat0.shape[1], device=b.device)
        count1 = mask1.sum(1) if mask1 is not None else torch.full((feat1.shape[0],), feat1.shape[1], device=b.device)
        budget = int(torch.minimum(count0, count1).sum().item() * cfg.train_coarse_percent)
        if cfg.train_pad_num_gt_min >= budget:
            raise ValueError(
                f"train_pad_num_gt_min ({cfg.train_pad_num_gt_min}) must be below the fine-level training budget "
                f"({budget} = train_coarse_percent x cells); lower it for small images"
            )
        gt_b, gt_i, gt_j = ground_truth
        if len(b) > budget - cfg.train_pad_num_gt_min:
            pick = torch.randint(len(b), (budget - cfg.train_pad_num_gt_min,), device=b.device)
            b, i, j, conf = b[pick], i[pick], j[pick], conf[pick]
        num_pad = max(budget - len(b), cfg.train_pad_num_gt_min) if len(gt_b) else 0
        pad = torch.randint(max(len(gt_b), 1), (num_pad,), device=b.device)
        is_pad = torch.cat([torch.zeros_like(b, dtype=torch.bool), torch.ones_like(pad, dtype=torch.bool)])
        return (
            torch.cat([b, gt_b[pad]]),
            torch.cat([i, gt_i[pad]]),
            torch.cat([j, gt_j[pad]]),
            torch.cat([conf, conf.new_zeros(num_pad)]),
            is_pad,
        )
