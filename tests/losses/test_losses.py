"""Losses: hand-computed values, empty ground truth, and finite gradients through the model."""

import math

import pytest
import torch

from geometry.ground_truth import coarse_supervision
from losses.coarse import dual_softmax_log_confidence, focal_loss, optimal_transport_nll
from losses.fine import bilinear_target, fine_heatmap_nll, fine_l2_with_std
from losses.loftr_loss import LoFTRLoss, LossConfig
from models.loftr import LoFTR, LoFTRConfig
from models.matching.fine import window_grid
from tests.ground_truth_helpers import FOCAL, Z, plane_batch, translation


def test_focal_loss_by_hand():
    conf = torch.tensor([[[0.5, 0.2], [0.1, 0.9]]])
    labels = torch.tensor([[[True, False], [False, False]]])
    valid = torch.tensor([[[True, True], [True, False]]])  # the last cell is padding
    alpha, gamma = 0.25, 2.0
    positive = -alpha * 0.5**2 * math.log(0.5)
    negative = [-alpha * p**2 * math.log(1 - p) for p in (0.2, 0.1)]
    expected = positive + sum(negative) / 2
    assert focal_loss(conf, labels, valid, alpha, gamma).item() == pytest.approx(expected, rel=1e-5)
    assert focal_loss(conf, labels, valid, alpha, gamma, sparse=True).item() == pytest.approx(positive, rel=1e-5)


def test_log_confidence_of_the_dual_softmax_trains_true_matches_below_the_clamp():
    """The positives' log-confidence from the logits equals log(dual softmax) where that is representable, and
    keeps a gradient where the confidence underflows: LoFTR's clamp at 1e-6 gives none there."""
    torch.manual_seed(0)
    logits = (torch.randn(1, 5, 6) * 3).requires_grad_()
    valid = torch.ones(1, 5, 6, dtype=torch.bool)
    valid[0, -1, :] = False  # a padded cell of image 0
    b, i, j = torch.tensor([0, 0]), torch.tensor([1, 3]), torch.tensor([2, 0])
    masked = logits.masked_fill(~valid, float("-inf"))
    expected = (masked.softmax(1) * masked.softmax(2))[b, i, j].log()
    assert torch.allclose(dual_softmax_log_confidence(logits, valid, b, i, j), expected, atol=1e-5)

    far = torch.zeros(1, 4, 4)
    far[0, 0, 0] = -40.0  # a true match the model finds very unlikely: p = e^-80 / ..., far below 1e-6
    far = far.requires_grad_()
    labels = torch.zeros(1, 4, 4, dtype=torch.bool)
    labels[0, 0, 0] = True
    every = torch.ones_like(labels)
    confidence = far.softmax(1) * far.softmax(2)
    clamped = focal_loss(confidence, labels, every, 0.25, 2.0, sparse=True)
    assert torch.autograd.grad(clamped, far)[0][0, 0, 0] == 0  # LoFTR's clamp: no signal
    log_p = dual_softmax_log_confidence(far, every, *torch.nonzero(labels, as_tuple=True))
    unclamped = focal_loss(confidence, labels, every, 0.25, 2.0, sparse=True, log_positive=log_p)
    assert torch.autograd.grad(unclamped, far)[0][0, 0, 0] < -0.1  # pushes the true match's logit up
    assert unclamped.item() == pytest.approx(-0.25 * log_p.item(), rel=1e-5)


def test_optimal_transport_nll_by_hand():
    log_p = torch.log(torch.tensor([[[0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.2, 0.4, 0.4]]]))  # 2 x 2 + dustbins
    b, i, j = torch.tensor([0]), torch.tensor([0]), torch.tensor([0])  # one match, (0, 0)
    valid = torch.tensor([[True, True]])
    expected = -math.log(0.6) + (-math.log(0.3) - math.log(0.4)) / 2  # row 1 and column 1 are unmatched
    assert optimal_transport_nll(log_p, b, i, j, valid, valid).item() == pytest.approx(expected, rel=1e-6)


def test_fine_loss_weights_by_inverse_std_and_drops_outside_targets():
    expectation = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    std = torch.tensor([1.0, 2.0, 4.0])
    target = torch.tensor([[0.5, 0.0], [0.0, 0.5], [1.5, 0.0]])  # the last lies outside the window
    known = torch.tensor([True, True, True])
    weights = torch.tensor([1.0, 0.5, 0.25]) / (1.75 / 3)
    expected = (0.25 * weights[0] + 0.25 * weights[1]) / 2
    assert fine_l2_with_std(expectation, std, target, known).item() == pytest.approx(expected.item(), rel=1e-6)
    nothing = fine_l2_with_std(expectation, std, target, torch.zeros(3, dtype=torch.bool))
    assert nothing.item() == 0.0


@pytest.mark.parametrize("window", [3, 5, 8])
def test_bilinear_target_is_a_distribution_with_the_exact_mean(window):
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(200, 2, generator=generator, dtype=torch.float64) * 2 - 1
    target = torch.cat([target, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)])
    dist = bilinear_target(target, window)
    assert (dist >= 0).all() and torch.allclose(dist.sum(-1), torch.ones(len(target), dtype=torch.float64))
    assert torch.allclose(dist @ window_grid(window, "cpu", torch.float64), target, atol=1e-12)
    assert ((dist > 0).sum(-1) <= 4).all()  # only the four pixels around the target


def test_heatmap_nll_is_smallest_at_the_bilinear_target_and_drops_outside_targets():
    target = torch.tensor([[0.3, -0.6], [0.9, 0.2], [1.5, 0.0]])  # the last lies outside the window
    known = torch.tensor([True, True, True])
    wanted = bilinear_target(target[:2], 5)
    logits = torch.log(wanted.clamp(min=1e-12)).requires_grad_(True)
    log_heatmap = torch.cat([logits, torch.zeros(1, 25)]).log_softmax(-1)
    loss = fine_heatmap_nll(log_heatmap, target, known)
    entropy = -(wanted * wanted.clamp(min=1e-12).log()).sum(-1).mean()
    assert loss.item() == pytest.approx(entropy.item(), abs=1e-5)  # cross-entropy = entropy: the minimum
    loss.backward()
    assert logits.grad.abs().max() < 1e-5
    uniform = fine_heatmap_nll(torch.full((3, 25), -math.log(25)), target, known)
    assert uniform.item() == pytest.approx(math.log(25)) and uniform > loss
    assert fine_heatmap_nll(log_heatmap, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def small_model_config(match_type: str = "dual_softmax") -> LoFTRConfig:
    config = LoFTRConfig()
    config.match_coarse.match_type = match_type
    config.match_coarse.train_pad_num_gt_min = 20
    return config


def training_step(batch: dict, match_type: str, fine_nll_weight: float = 0.0, fine_nll_queries: str = "centre"):
    model = LoFTR(small_model_config(match_type)).train()
    batch = {k: (v.float() if torch.is_tensor(v) else v) for k, v in batch.items()}
    batch["image0"] = torch.rand_like(batch["image0"])
    batch["image1"] = torch.rand_like(batch["image1"])
    grid = tuple(-(-s // 8) for s in batch["image0"].shape[2:])
    loss = LoFTRLoss(LossConfig(fine_nll_weight=fine_nll_weight, fine_nll_queries=fine_nll_queries))
    supervision = coarse_supervision(batch, grid, grid, fine_stride=2 if loss.config.needs_window else None)
    result = model(batch, ground_truth=(supervision.batch_index, supervision.index0, supervision.index1),
                   window_heatmaps=loss.config.needs_window)
    parts = loss(result, supervision)
    parts.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return parts, grads


@pytest.mark.parametrize("match_type", ["dual_softmax", "sinkhorn"])
@pytest.mark.parametrize("case", ["overlap", "no overlap", "depth holes"])
@pytest.mark.parametrize("fine_nll_weight, fine_nll_queries", [(0.0, "centre"), (1.0, "centre"), (1.0, "window")])
def test_gradients_are_finite(match_type, case, fine_nll_weight, fine_nll_queries):
    if case == "no overlap":  # the plane moves out of view: no ground truth at all
        batch = plane_batch(96, 128, translation(1000 * Z / FOCAL, 0.0))
    else:
        batch = plane_batch(96, 128, translation(3 * Z / FOCAL, 2 * Z / FOCAL))
    if case == "depth holes":
        batch["depth0"][0, :16] = float("nan")
        batch["depth1"][0, 80:] = 0.0
    parts, grads = training_step(batch, match_type, fine_nll_weight, fine_nll_queries)
    assert torch.isfinite(parts.total)
    assert all(torch.isfinite(g).all() for g in grads) and len(grads) > 0
    if case == "no overlap":
        assert parts.num_ground_truth == 0 and parts.num_fine_supervised == 0
    else:
        assert parts.num_ground_truth > 50 and parts.num_fine_supervised > 0
        assert parts.coarse > 0 and parts.fine > 0


def test_window_cross_entropy_needs_the_window_heatmaps_and_fine_grid_ground_truth():
    batch = plane_batch(96, 128, translation(3 * Z / FOCAL, 2 * Z / FOCAL), dtype=torch.float32)
    model = LoFTR(small_model_config()).train()
    loss = LoFTRLoss(LossConfig(fine_nll_weight=1.0, fine_nll_queries="window"))
    fine_grid = coarse_supervision(batch, (12, 16), (12, 16), fine_stride=2)
    cells_only = coarse_supervision(batch, (12, 16), (12, 16))
    gt = (fine_grid.batch_index, fine_grid.index0, fine_grid.index1)
    with pytest.raises(ValueError, match="window_heatmaps=True"):
        loss(model(batch, ground_truth=gt), fine_grid)
    with_window = model(batch, ground_truth=gt, window_heatmaps=True)
    with pytest.raises(ValueError, match="fine_stride"):
        loss(with_window, cells_only)
    assert torch.isfinite(loss(with_window, fine_grid).fine)
    with pytest.raises(ValueError, match="fine_nll_queries"):
        LossConfig(fine_nll_queries="all")
