"""Fine-level losses: L2 on the expected position, weighted by the predicted certainty (LoFTR sec. 3.5), and
optionally the heatmap's cross-entropy against the true position (`fine_heatmap_nll`)."""

import torch


def fine_l2_with_std(
    expectation: torch.Tensor,
    std: torch.Tensor,
    target: torch.Tensor,
    known: torch.Tensor,
    correct_threshold: float = 1.0,
) -> torch.Tensor:
    """sum ||target - expectation||^2 / std over the matches whose true position lies inside the window.

    expectation, target: (M, 2) in window units ([-1, 1] spans the window); std: (M,) predicted spread;
    known: (M,) bool where the target exists; a target with an inf-norm >= `correct_threshold` lies outside
    the window and is dropped. The weights 1/std are normalised to mean 1 and detached, as in LoFTR, so they
    rank matches without pulling the std itself. No correct match gives a finite zero.
    """
    correct = known & (target.abs().amax(dim=-1) < correct_threshold)
    if not correct.any():
        return expectation.sum() * 0.0
    inverse_std = 1.0 / std.clamp(min=1e-10)
    weight = (inverse_std / inverse_std.mean()).detach()
    # select before subtracting: a target that is not known may hold anything, and 0 * nan is nan
    squared = (target[correct] - expectation[correct]).square().sum(-1)
    return (squared * weight[correct]).mean()


def bilinear_target(target: torch.Tensor, window: int) -> torch.Tensor:
    """(M, window**2) distribution over the window's pixels (row-major) whose mean is exactly `target`
    (M, 2), in window units: the bilinear weights of the four pixels around it. `target` must lie inside."""
    pixel = (target.clamp(-1, 1) + 1) * (window - 1) / 2  # (x, y) in window pixels
    low = pixel.floor().clamp(max=window - 2)
    frac = pixel - low
    low = low.long()
    dist = target.new_zeros(len(target), window, window)
    rows = torch.arange(len(target), device=target.device)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            dist[rows, low[:, 1] + dy, low[:, 0] + dx] += weight
    return dist.reshape(len(target), -1)


def fine_heatmap_nll(
    log_heatmap: torch.Tensor,
    target: torch.Tensor,
    known: torch.Tensor,
    correct_threshold: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy between the heatmap (M, w*w log-probabilities) and the bilinear distribution of the true
    position, over the matches whose true position lies inside the window.

    The L2 loss on the expectation alone has a cheap optimum for a model that cannot localise: a broad
    heatmap whose mean is pulled towards the window centre. Cross-entropy rewards putting mass on the right
    pixels, and its optimum, the bilinear target itself, has exactly the true position as its mean.
    """
    correct = known & (target.abs().amax(dim=-1) < correct_threshold)
    if not correct.any():
        return log_heatmap.sum() * 0.0
    window = int(round(log_heatmap.shape[1] ** 0.5))
    wanted = bilinear_target(target[correct].to(log_heatmap.dtype), window)
    return -(wanted * log_heatmap[correct]).sum(-1).mean()
