"""Coarse-level losses on the confidence matrix (LoFTR sec. 3.5)."""

import torch


def _mean_or_zero(values: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of `values`, or a zero still attached to `anchor`'s graph when there are none (no overlap)."""
    return values.mean() if values.numel() else anchor.sum() * 0.0


def dual_softmax_log_confidence(logits: torch.Tensor, valid: torch.Tensor, b: torch.Tensor, i: torch.Tensor,
                                j: torch.Tensor) -> torch.Tensor:
    """log p(i, j) of the dual softmax at the entries (b, i, j), from its (B, L, S) logits: the row and
    column log-softmax, each over the valid entries of `valid` (B, L, S). Exact where p itself underflows."""
    logits = logits.float().masked_fill(~valid, float("-inf"))
    rows = torch.logsumexp(logits, dim=2)  # (B, L)
    columns = torch.logsumexp(logits, dim=1)  # (B, S)
    return 2 * logits[b, i, j] - rows[b, i] - columns[b, j]


def focal_loss(
    confidence: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    alpha: float,
    gamma: float,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
    sparse: bool = False,
    log_positive: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
    positive_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al., ICCV 2017) on a dual-softmax confidence matrix, as LoFTR trains it.

    confidence: (B, L, S) in [0, 1]; labels: (B, L, S) bool ground truth; valid: (B, L, S) bool, False on
    padded cells, which take no part. Positives: -alpha (1 - p)^gamma log p; negatives: -alpha p^gamma
    log(1 - p) (LoFTR applies alpha to both). Each part is averaged over its own entries; `sparse` drops the
    negatives. A batch without ground truth gives a finite loss.

    LoFTR clamps p to [1e-6, 1 - 1e-6], which stops the gradient of every true match below 1e-6: at the
    start of training that can be all of them, and the coarse loss then stalls. `log_positive` (the
    log-confidences of the positives, in the order of `labels & valid`, from `dual_softmax_log_confidence`)
    scores them unclamped instead; within the clamp range the value is LoFTR's.

    `negatives` (B, L, S) bool, optional: the only entries that may be scored as negatives (sparse labels,
    which cannot tell an unlabelled true match from a wrong one: `Supervision.negatives`).

    `positive_weights`, optional: a weight per positive, in the order of `labels & valid` (Efficient LoFTR's
    overlap weights, `overlap_weights`); the positives' term is then the mean of the weighted losses.
    """
    p = confidence.clamp(1e-6, 1 - 1e-6)
    if log_positive is None:
        positive = p[labels & valid]
        log_positive = positive.log()
    else:
        positive = log_positive.exp()
    positive_loss = -alpha * (1 - positive) ** gamma * log_positive
    if positive_weights is not None:
        positive_loss = positive_loss * positive_weights.to(positive_loss.dtype)
    loss = pos_weight * _mean_or_zero(positive_loss, confidence)
    if not sparse:
        scored = ~labels & valid if negatives is None else ~labels & valid & negatives
        negative = p[scored]
        loss = loss + neg_weight * _mean_or_zero(-alpha * negative**gamma * (1 - negative).log(), confidence)
    return loss


def overlap_weights(points: torch.Tensor) -> torch.Tensor:
    """(1 - 2|dx|)(1 - 2|dy|) of points (..., 2) in grid units, d their distance to the nearest grid point: 1 on
    a grid point, 0 half-way between two (Efficient LoFTR's COARSE_ and FINE_OVERLAP_WEIGHT, which weigh each
    true match's loss by how squarely it falls on its cell or pixel)."""
    return (1 - 2 * (points - points.round()).abs()).prod(-1)


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
