"""Log-domain Sinkhorn with a dustbin (SuperGlue, Sarlin et al. CVPR 2020), honouring padding masks."""

import torch

# Log-mass of padded rows/columns: exp() of it is exactly 0 in float32 and it never makes inf - inf.
_NO_MASS = -1e4


def log_optimal_transport(
    scores: torch.Tensor,
    bin_score: torch.Tensor,
    iterations: int,
    valid0: torch.Tensor | None = None,
    valid1: torch.Tensor | None = None,
) -> torch.Tensor:
    """Entropic optimal transport between the cells of two images, each with a dustbin for unmatched cells.

    Args:
        scores: (B, M, N) similarity logits.
        bin_score: scalar logit of every dustbin entry (learnable in LoFTR-OT).
        iterations: Sinkhorn iterations (LoFTR: 3).
        valid0, valid1: optional (B, M) / (B, N) bool, True for real (unpadded) cells. Padded cells get no
            mass at all, so each sample is solved over its own m valid rows and n valid columns.

    Returns:
        (B, M + 1, N + 1) log assignment. With m, n valid cells the marginals are 1 for every valid row and
        column, n for the row dustbin and m for the column dustbin; the column marginals hold exactly after
        every iteration (the last update is the column one), the row ones as the iterations converge.
    """
    b, m, n = scores.shape
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # fp32 at least, also under autocast
    if valid0 is None:
        valid0 = scores.new_ones(b, m, dtype=torch.bool)
    if valid1 is None:
        valid1 = scores.new_ones(b, n, dtype=torch.bool)
    count0 = valid0.sum(1, keepdim=True).to(scores.dtype)  # (B, 1) valid rows
    count1 = valid1.sum(1, keepdim=True).to(scores.dtype)
    bins0 = bin_score.to(scores.dtype).expand(b, m, 1)
    bins1 = bin_score.to(scores.dtype).expand(b, 1, n + 1)
    couplings = torch.cat([torch.cat([scores, bins0], 2), bins1], 1)  # (B, M+1, N+1)
    rows = torch.cat([valid0, valid0.new_ones(b, 1)], 1)  # (B, M+1), the dustbin always valid
    cols = torch.cat([valid1, valid1.new_ones(b, 1)], 1)
    real = rows[:, :, None] & cols[:, None, :]
    couplings = couplings.masked_fill(~real, _NO_MASS)

    log_norm = -torch.log(count0 + count1)  # (B, 1): total mass m + n normalised to 1
    log_mu = torch.cat([log_norm.expand(b, m), torch.log(count1) + log_norm], 1)
    log_nu = torch.cat([log_norm.expand(b, n), torch.log(count0) + log_norm], 1)
    log_mu = log_mu.masked_fill(~rows, _NO_MASS)
    log_nu = log_nu.masked_fill(~cols, _NO_MASS)

    u = torch.zeros_like(log_mu)
    v = torch.zeros_like(log_nu)
    for _ in range(iterations):
        u = log_mu - torch.logsumexp(couplings + v[:, None, :], dim=2)
        v = log_nu - torch.logsumexp(couplings + u[:, :, None], dim=1)
    log_assignment = couplings + u[:, :, None] + v[:, None, :] - log_norm[:, :, None]
    return log_assignment.masked_fill(~real, _NO_MASS)  # padded cells: exactly zero mass
