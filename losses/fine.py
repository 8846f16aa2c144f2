"""Fine-level loss: L2 on the expected position, weighted by the predicted certainty (LoFTR sec. 3.5)."""

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
