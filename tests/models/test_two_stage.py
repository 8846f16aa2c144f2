"""Efficient LoFTR's fine level: exact answers for the window offsets and the stage-2 expectation, the
windows cut from the maps, and parity with upstream's FinePreprocess and FineMatching on the same inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from models.matching.two_stage import FineFPN, TwoStageFineMatching, match_windows
from tests.eloftr_helpers import randomize_norms_, upstream_eloftr


def test_a_peaked_stage_two_heatmap_moves_by_its_expectation():
    """Windows whose stage-2 channels correlate only at one neighbour of the stage-1 pixel: the softmax at
    temperature 10 puts weight e^(s/10) there, e^0 elsewhere, so the expectation is known in closed form."""
    side, channels = 8, 16
    windows0 = torch.zeros(1, side * side, channels, dtype=torch.float64)
    windows1 = torch.zeros(1, (side + 2) ** 2, channels, dtype=torch.float64)
    # stage 1: pixel (x 3, y 2) of window 0 matches inner pixel (x 5, y 4) of window 1 (padded (6, 5))
    windows0[0, 2 * side + 3, 0] = windows1[0, 5 * (side + 2) + 6, 0] = 20.0
    # stage 2: window 1's padded (r - 1 .. r + 1, c - 1 .. c + 1) for inner (r 4, c 5): rows 3..5, columns 4..6;
    # a score of 30 at row 3, column 6 (dx +1, dy -1)
    windows0[0, 2 * side + 3, -1] = 1.0
    windows1[0, 3 * (side + 2) + 6, -1] = 30.0 * math.sqrt(8)  # stage 2 divides by sqrt(8)
    result = TwoStageFineMatching()(windows0, windows1)
    assert result.stage1_index0.tolist() == [2 * side + 3] and result.stage1_index1.tolist() == [4 * side + 5]
    assert result.offset0.tolist() == [[3 - 3.5, 2 - 3.5]]
    peak = math.exp(3.0)
    # x: the peak at +1, the other eight cells' x sum to -1 (the peak's row lacks its +1); y alike, mirrored
    expected = (peak - 1) / (peak + 8)
    assert result.expectation[0].tolist() == pytest.approx([expected, -expected], abs=1e-12)
    assert result.offset1[0].tolist() == pytest.approx([5 - 3.5 + expected, 4 - 3.5 - expected], abs=1e-12)


def test_windows_are_the_cells_blocks_and_their_padded_surroundings():
    fine = torch.arange(16 * 24, dtype=torch.float64).reshape(1, 1, 16, 24)
    windows0, windows1 = match_windows(fine, fine, torch.tensor([0]), torch.tensor([4]), torch.tensor([0]))
    assert torch.equal(windows0[0, :, 0].reshape(8, 8), fine[0, 0, 8:16, 8:16])  # cell 4 = (x 1, y 1)
    padded = torch.nn.functional.pad(fine, (1, 1, 1, 1))
    assert torch.equal(windows1[0, :, 0].reshape(10, 10), padded[0, 0, 0:10, 0:10])  # cell 0, zero border


def test_gathered_windows_equal_every_window_unfolded_then_picked():
    """The windows are gathered by index; upstream unfolds every cell's window and picks (the reference here):
    the same values and the same gradients, at borders and corners too."""
    torch.manual_seed(0)
    fine0, fine1 = (torch.randn(3, 5, 24, 40, dtype=torch.float64, requires_grad=True) for _ in range(2))
    cells = 3 * 5
    b, i, j = torch.randint(0, 3, (50,)), torch.randint(0, cells, (50,)), torch.randint(0, cells, (50,))
    i[:3], j[:3] = torch.tensor([0, 4, cells - 1]), torch.tensor([cells - 1, 10, 0])
    ours = match_windows(fine0, fine1, b, i, j)
    unfolded0 = rearrange(F.unfold(fine0, 8, stride=8), "n (c p) l -> n l p c", p=64)[b, i]
    unfolded1 = rearrange(F.unfold(fine1, 10, padding=1, stride=8), "n (c p) l -> n l p c", p=100)[b, j]
    assert torch.equal(ours[0], unfolded0) and torch.equal(ours[1], unfolded1)
    weights = [torch.randn_like(window) for window in ours]
    grads = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, ours)), (fine0, fine1))
    expected = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (unfolded0, unfolded1))),
                                   (fine0, fine1))
    assert all(torch.allclose(g, e, atol=1e-12) for g, e in zip(grads, expected))


def test_parity_with_upstream_on_the_same_inputs():
    eloftr = upstream_eloftr()
    from efficientloftr_inference.loftr.loftr_module.fine_preprocess import FinePreprocess
    from efficientloftr_inference.loftr.utils.fine_matching import FineMatching

    torch.manual_seed(0)
    config = eloftr.full_config()
    theirs_fpn = randomize_norms_(FinePreprocess(config)).eval()
    ours_fpn = FineFPN().eval()
    ours_fpn.load_state_dict(theirs_fpn.state_dict())
    coarse, quarter, half = torch.randn(2, 256, 4, 6), torch.randn(2, 128, 8, 12), torch.randn(2, 64, 16, 24)
    with torch.no_grad():
        fine = ours_fpn(coarse, quarter, half)
        assert (fine - theirs_fpn.inter_fpn(coarse, quarter, half, 8)).abs().max() < 1e-5
    assert fine.shape == (2, 64, 32, 48)

    b, i, j = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 7, 23, 11]), torch.tensor([1, 7, 20, 0])
    windows0, windows1 = match_windows(fine[:1].repeat(2, 1, 1, 1), fine[1:].repeat(2, 1, 1, 1), b, i, j)
    coarse_points = torch.zeros(4, 2)
    data = {"hw0_i": (32, 48), "hw0_f": (32, 48), "bs": 2, "b_ids": b, "mconf": torch.ones(4),
            "mkpts0_c": coarse_points.clone(), "mkpts1_c": coarse_points.clone()}
    upstream = FineMatching(config).eval()
    with torch.no_grad():
        upstream(windows0, windows1, data)
        ours = TwoStageFineMatching()(windows0, windows1)
    assert (ours.offset0 - data["mkpts0_f"]).abs().max() < 1e-5
    assert (ours.offset1 - data["mkpts1_f"]).abs().max() < 1e-5
