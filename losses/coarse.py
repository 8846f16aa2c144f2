"""Coarse-level losses on the confidence matrix (LoFTR sec. 3.5)."""

import torch


def _mean_or_zero(values: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of `values`, or a zero still attached to `anchor`'s graph when there are none (no overlap)."""
    return values.mean() if values.numel() else anchor.sum() * 0.0


def focal_loss(
    confidence: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    alpha: float,
    gamma: float,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
    sparse: bool = False,
) -> torch.Tensor:
    """Focal loss (Lin et al., ICCV 2017) on a dual-softmax confidence matrix, as LoFTR trains it.

    confidence: (B, L, S) in [0, 1]; labels: (B, L, S) bool ground truth; valid: (B, L, S) bool, False on
    padded cells, which take no part. Positives: -alpha (1 - p)^gamma log p; negatives: -alpha p^gamma
    log(1 - p) (LoFTR applies alpha to both). Each part is averaged over its own entries; `sparse` drops the
    negatives. A batch without ground truth gives a finite loss.
    """
    p = confidence.clamp(1e-6, 1 - 1e-6)
    positive = p[labels & valid]
    loss = pos_weight * _mean_or_zero(-alpha * (1 - positive) ** gamma * positive.log(), confidence)
    if not sparse:
        negative = p[~labels & valid]
        loss = loss + neg_weight * _mean_or_zero(-alpha * negative**gamma * (1 - negative).log(), confidence)
    return loss


def optimal_transport_nll(
    log_assignment: torch.Tensor,
    batch_index: torch.Tensor,
    index0: torch.Tensor,
    index1: torch.Tensor,
    valid0: torch.Tensor,
    valid1: torch.Tensor,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
) -> torch.Tensor:
    """Negative log-likelihood of the Sinkhorn assignment (SuperGlue's loss): -log P(i, j) of the true matches,
    and -log P(i, dustbin) / -log P(dustbin, j) of the valid cells that have no match.

    log_assignment: (B, L+1, S+1); (b, i, j): true matches; valid0, valid1: (B, L) / (B, S) real cells.
    """
    matched0 = torch.zeros_like(valid0)
    matched0[batch_index, index0] = True
    matched1 = torch.zeros_like(valid1)
    matched1[batch_index, index1] = True
    positive = -log_assignment[batch_index, index0, index1]
    unmatched = torch.cat([
        -log_assignment[:, :-1, -1][valid0 & ~matched0],  # cells of image 0 that go to the dustbin
        -log_assignment[:, -1, :-1][valid1 & ~matched1],
    ])
    return pos_weight * _mean_or_zero(positive, log_assignment) + neg_weight * _mean_or_zero(unmatched, log_assignment)
