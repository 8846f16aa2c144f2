"""Fine level: window cropping and the soft-argmax expectation, against exact answers."""

import math

import torch
import torch.nn.functional as F

from models.matching.fine import crop_windows, fine_expectation


def test_windows_equal_the_official_unfold():
    """LoFTR unfolds the whole fine map (kernel w, stride 4, padding w // 2) and picks the matched cells."""
    feat = torch.randn(2, 16, 30, 38)  # a fine map whose coarse grid (8 x 10) is not 1/4 of it
    grid_width, window, step = 10, 5, 4
    unfolded = F.unfold(feat, window, stride=step, padding=window // 2)  # (B, C*w*w, cells)
    unfolded = unfolded.view(2, 16, window * window, -1).permute(0, 3, 2, 1)  # (B, cells, w*w, C)
    assert unfolded.shape[1] == 8 * 10
    b = torch.tensor([0, 0, 1, 1, 1])
    cells = torch.tensor([0, 79, 11, 42, 70])  # corners and inside
    assert torch.equal(crop_windows(feat, b, cells, grid_width, window, step), unfolded[b, cells])


def test_peaked_heatmap_gives_the_peak_position():
    centre = torch.randn(1, 32)
    win0 = torch.zeros(1, 25, 32)
    win0[:, 12] = centre
    win1 = torch.zeros(1, 25, 32)
    win1[:, 1 * 5 + 3] = centre * 100  # row 1, column 3 of the 5x5 window
    out = fine_expectation(win0, win1)
    # normalised coordinates run -1, -0.5, 0, 0.5, 1 across the window
    assert torch.allclose(out.expectation, torch.tensor([[0.5, -0.5]]), atol=1e-5)
    assert out.std.item() < 1e-3


def test_flat_heatmap_gives_the_centre_and_the_uniform_spread():
    win0 = torch.randn(3, 25, 16)
    win1 = torch.zeros(3, 25, 16)  # every position correlates 0: a uniform heatmap
    out = fine_expectation(win0, win1)
    assert torch.allclose(out.expectation, torch.zeros(3, 2), atol=1e-6)
    variance = (1 + 0.25 + 0 + 0.25 + 1) / 5  # of a uniform distribution over -1, -0.5, 0, 0.5, 1
    assert torch.allclose(out.std, torch.full((3,), 2 * math.sqrt(variance)), atol=1e-6)


def test_std_gradient_is_finite_for_a_one_hot_heatmap():
    win0 = torch.zeros(1, 25, 8)
    win0[:, 12] = 1.0
    win1 = torch.zeros(1, 25, 8, requires_grad=True)
    with torch.no_grad():
        win1[:, 0] = 1e4  # softmax saturates: variance exactly 0
    out = fine_expectation(win0, win1)
    out.std.sum().backward()
    assert torch.isfinite(win1.grad).all()


def test_query_radius_picks_the_sharpest_position_near_the_centre():
    """The centre of image 0's window sees a flat heatmap; position (row -1, col +1) a peak at image 1's
    (row 1, col 3); the corner (row -2, col -2) an even sharper one, but two fine pixels out."""
    feature = torch.randn(1, 32)
    win0, win1 = torch.zeros(1, 25, 32), torch.zeros(1, 25, 32)
    near = 1 * 5 + 3  # row -1, column +1 from the centre (12)
    win0[:, near] = feature
    win1[:, 1 * 5 + 3] = feature * 100
    win0[:, 0] = -feature * 3  # the corner peaks on the (empty) positions: its softmax is sharper still
    win1[:, 4 * 5 + 0] = -feature * 200

    centre = fine_expectation(win0, win1)
    assert centre.query.tolist() == [12] and torch.allclose(centre.expectation, torch.zeros(1, 2), atol=1e-6)
    chosen = fine_expectation(win0, win1, query_radius=1)
    assert chosen.query.tolist() == [near]
    assert torch.allclose(chosen.expectation, torch.tensor([[0.5, -0.5]]), atol=1e-5) and chosen.std.item() < 1e-3
    assert fine_expectation(win0, win1, query_radius=2).query.tolist() == [0]


def test_window_heatmaps_hold_every_position_and_the_centre_row_is_the_matchs():
    win0, win1 = torch.randn(4, 25, 16), torch.randn(4, 25, 16)
    out = fine_expectation(win0, win1, all_queries=True)
    assert out.window_log_heatmaps.shape == (4, 25, 25)
    assert torch.allclose(out.window_log_heatmaps[:, 12], out.log_heatmap, atol=1e-6)
    assert torch.allclose(out.window_log_heatmaps.exp().sum(-1), torch.ones(4, 25), atol=1e-5)
    for position in (0, 7, 24):  # row q is the heatmap of image 0's position q
        alone = fine_expectation(win0[:, [position] * 25], win1)
        assert torch.allclose(out.window_log_heatmaps[:, position], alone.log_heatmap, atol=1e-5)
    assert fine_expectation(win0, win1).window_log_heatmaps is None
