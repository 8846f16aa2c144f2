"""Efficient LoFTR's fine targets against exact warps: decoded the way the model decodes its matches, every
target lands on the true match of its pixel (upstream's half-window convention included), from dense ground
truth and from sparse labels alike."""

import pytest
import torch

from geometry.grid import cell_pixels
from geometry.ground_truth import coarse_supervision, sparse_supervision
from geometry.warp import warp_homography
from losses.coarse import focal_loss, overlap_weights
from losses.targets import FineWindow, two_stage_targets
from models.matching.two_stage import window_offset
from tests.ground_truth_helpers import GRID, labelled_batch

BLOCK = FineWindow(coarse_stride=8, fine_stride=1, size=8, block=True)
ZOOM = torch.tensor([[[1.25, 0.05, -6.0], [-0.04, 1.2, -3.0], [1e-4, 0.0, 1.0]]], dtype=torch.float64)


def dense_targets(H: torch.Tensor):
    batch = labelled_batch(H)
    batch = {k: v for k, v in batch.items() if not k.startswith("correspondences")}
    supervision = coarse_supervision(batch, GRID, GRID, fine_stride=1, fine_origin=BLOCK.origin)
    matches = (supervision.batch_index, supervision.index0, supervision.index1)
    return supervision, matches, two_stage_targets(supervision, *matches, BLOCK)


def test_window_positions_are_the_models_decoding():
    """The pixel k of a block window stands k - 3.5 px from its cell's point, in the targets as in the model."""
    assert BLOCK.origin == -3.5
    index = torch.arange(64)
    assert torch.equal(BLOCK.positions("cpu"), window_offset(index, 8, torch.float64))


def test_dense_targets_decode_to_the_exact_match_under_a_zoom():
    supervision, (b, i, j), targets = dense_targets(ZOOM)
    known = targets.known
    assert len(i) > 100 and 0.3 < known.float().mean() < 0.95  # a 1.25 zoom pushes window edges out
    # the model's keypoints: cell point + window offset of the stage-1 pixel (+ the stage-2 rest in image 1)
    point0 = cell_pixels(i, GRID, 8, torch.float64)[:, None] + window_offset(torch.arange(64), 8, torch.float64)
    truth = warp_homography(point0.reshape(1, -1, 2), ZOOM).reshape(len(i), 64, 2)
    point1 = (cell_pixels(j, GRID, 8, torch.float64)[:, None] + window_offset(targets.index1.clamp(min=0), 8,
              torch.float64).reshape(len(i), 64, 2) + targets.residual)
    assert (point1 - truth)[known].abs().max() < 1e-9
    assert targets.residual[known].abs().max() <= 0.5
    # unknown exactly where the true match rounds outside image 1's window (all of image 0's pixels are on it)
    offset = (truth - cell_pixels(j, GRID, 8, torch.float64)[:, None]) + 3.5
    inside = ((offset.round() >= 0) & (offset.round() <= 7)).all(-1)
    on_image = ((truth > -0.5) & (truth < torch.tensor([159.5, 119.5], dtype=torch.float64))).all(-1)
    on_image0 = ((point0 > -0.5) & (point0 < torch.tensor([159.5, 119.5], dtype=torch.float64))).all(-1)
    assert torch.equal(known, inside & on_image & on_image0)
    assert torch.allclose(targets.overlap, overlap_weights(offset))


def test_sparse_labels_give_the_dense_targets():
    """The same pixels' targets from labelled correspondences (the fitted Jacobian): the same stage-1 pixel
    wherever both are known and not on a rounding edge, the rest within hundredths of a pixel."""
    batch = labelled_batch(ZOOM)
    sparse = sparse_supervision(batch, GRID, GRID)
    dense = coarse_supervision(batch, GRID, GRID, fine_stride=1, fine_origin=BLOCK.origin)
    matches = (sparse.batch_index, sparse.index0, sparse.index1)
    ours, truth = two_stage_targets(sparse, *matches, BLOCK), two_stage_targets(dense, *matches, BLOCK)
    both = ours.known & truth.known & sparse.warped0_valid[sparse.batch_index, sparse.index0][:, None]
    assert both.float().mean() > 0.3
    clear = both & (truth.residual.abs().amax(-1) < 0.45)  # off the rounding edge
    assert torch.equal(ours.index1[clear], truth.index1[clear])
    assert (ours.residual - truth.residual)[clear].abs().max() < 0.05


def test_a_centred_grid_does_not_serve_block_windows():
    batch = {k: v for k, v in labelled_batch(ZOOM).items() if not k.startswith("correspondences")}
    supervision = coarse_supervision(batch, GRID, GRID, fine_stride=1)  # origin 0: LoFTR's fine pixels
    with pytest.raises(ValueError, match="origin"):
        two_stage_targets(supervision, supervision.batch_index, supervision.index0, supervision.index1, BLOCK)
    with pytest.raises(ValueError, match="block"):
        two_stage_targets(supervision, supervision.batch_index, supervision.index0, supervision.index1, FineWindow())


def test_overlap_weights_and_weighted_focal_loss_by_hand():
    assert torch.allclose(overlap_weights(torch.tensor([[3.25, -0.1], [2.0, 5.5]])), torch.tensor([0.4, 0.0]))
    confidence = torch.tensor([[[0.5, 0.1], [0.2, 0.8]]])
    labels = torch.tensor([[[True, False], [False, True]]])
    valid = torch.ones_like(labels)
    weights = torch.tensor([1.0, 0.5])  # the positives in the order of labels & valid: (0, 0), then (1, 1)
    expected = -0.25 * (0.5**2 * torch.log(torch.tensor(0.5)) + 0.5 * 0.2**2 * torch.log(torch.tensor(0.8))) / 2
    loss = focal_loss(confidence, labels, valid, 0.25, 2.0, sparse=True, positive_weights=weights)
    assert torch.isclose(loss, expected)
