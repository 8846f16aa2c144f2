"""The stride-1 refinement stage: exact upsampling, exact integer and half-pixel answers, its ground truth."""

import pytest
import torch

from geometry.ground_truth import coarse_supervision
from losses.loftr_loss import LoFTRLoss, LossConfig
from losses.targets import fine_targets, subpixel_targets
from models.loftr import LoFTR, LoFTRConfig
from models.matching.subpixel import PixelFeatures, SubpixelConfig, subpixel_refine, upsample_to_pixels
from tests.ground_truth_helpers import FOCAL, Z, plane_batch, translation
from tests.helpers import image_pair, sharpen_


def test_upsampling_puts_each_cell_on_its_pixel():
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(9.0), indexing="ij")
    fine = (2 * cols + 7 * 2 * rows)[None, None]  # a plane in pixel coordinates, sampled on the stride-2 cells
    up = upsample_to_pixels(fine, 12, 18, stride=2)  # sides 2x the map: the last pixel lies past the last cell
    y, x = torch.meshgrid(torch.arange(12.0), torch.arange(18.0), indexing="ij")
    expected = x.clamp(max=16) + 7 * y.clamp(max=10)
    assert up.shape == (1, 1, 12, 18)
    assert torch.allclose(up[0, 0], expected, atol=1e-5)


def shifted_maps(shift: tuple[int, int], channels: int = 32, size: int = 24, seed: int = 0):
    """Distinctive random stride-1 maps with image 1 = image 0 moved by `shift` (dx, dy) pixels."""
    generator = torch.Generator().manual_seed(seed)
    maps0 = 8 * torch.randn(1, channels, size, size, generator=generator)
    maps1 = torch.roll(maps0, shifts=(shift[1], shift[0]), dims=(2, 3))
    return maps0, maps1


@pytest.mark.parametrize("error", [(0.0, 0.0), (0.4, -0.3), (1.6, 1.2), (-2.4, 0.0)])
def test_integer_shift_is_found_exactly_from_an_estimate_within_the_window(error):
    maps0, maps1 = shifted_maps((3, -2))
    points0 = torch.tensor([[8, 9], [12, 11], [10, 14]])
    truth = points0 + torch.tensor([3, -2])
    estimates = truth.float() + torch.tensor(error)
    sub = subpixel_refine(maps0, maps1, torch.zeros(3, dtype=torch.long), points0, estimates, window=5)
    assert torch.equal(sub.anchor, estimates.round().long())
    refined = sub.anchor + sub.expectation * 2
    assert torch.allclose(refined, truth.float(), atol=1e-3)


def test_a_match_between_two_pixels_lies_halfway():
    channels = 4
    maps0 = torch.zeros(1, channels, 9, 9)
    maps1 = torch.zeros(1, channels, 9, 9)
    maps0[0, :, 4, 4] = torch.tensor([10.0, 10.0, 0.0, 0.0])
    maps1[0, :, 4, 5] = torch.tensor([10.0, 0.0, 0.0, 0.0])  # the query correlates equally with (5, 4) ...
    maps1[0, :, 4, 6] = torch.tensor([0.0, 10.0, 0.0, 0.0])  # ... and (6, 4): the match is at x = 5.5
    sub = subpixel_refine(maps0, maps1, torch.zeros(1, dtype=torch.long), torch.tensor([[4, 4]]),
                          torch.tensor([[5.2, 4.1]]), window=3)
    assert torch.equal(sub.anchor, torch.tensor([[5, 4]]))
    assert torch.allclose(sub.anchor + sub.expectation * 1, torch.tensor([[5.5, 4.0]]), atol=1e-3)


def test_subpixel_target_is_the_true_match_from_the_anchor():
    """A fronto-parallel plane moved by (3.25, -1.5) px: every true match is its point plus that shift."""
    batch = plane_batch(96, 128, translation(3.25 * Z / FOCAL, -1.5 * Z / FOCAL))
    supervision = coarse_supervision(batch, (12, 16), (12, 16))
    b, i, j = supervision.batch_index, supervision.index0, supervision.index1
    assert len(i) > 100
    target, known = fine_targets(supervision, b, i, j)
    assert known.all()
    points0 = torch.stack([i % 16, i // 16], -1).double() * 8
    # an anchor one pixel off the nearest, as a first stage may leave it
    anchor = (points0 + torch.tensor([3.25, -1.5], dtype=torch.float64)).round().long() + torch.tensor([1, 0])
    offset = subpixel_targets(target, j, supervision.grid1, anchor, subpixel_window=5)
    assert torch.allclose(anchor + offset * 2, points0 + torch.tensor([3.25, -1.5], dtype=torch.float64), atol=1e-6)


def test_config_rejects_windows_without_a_centre():
    with pytest.raises(ValueError, match="window_size"):
        SubpixelConfig(enabled=True, window_size=4)


def test_only_a_model_with_the_stage_has_the_stride1_head():
    config = LoFTRConfig()
    config.subpixel = SubpixelConfig(enabled=True, dim=8)
    model = LoFTR(config).eval()
    assert isinstance(model.pixel_features, PixelFeatures)
    image = torch.rand(1, 1, 64, 80)
    fine = torch.rand(1, config.backbone.block_dims[0], 32, 40)
    with torch.no_grad():
        features = model.pixel_features(image, fine)
    assert features.shape == (1, 8, 64, 80)
    assert LoFTR(LoFTRConfig()).pixel_features is None  # official layout: no extra parameters


def test_inference_skips_only_fine_cells_that_neither_stage_reads(monkeypatch):
    """Inference leaves the fine map's border cells zero (LoFTR._fine_margin); the stride-1 features of the
    windows it reads must come out as if the whole map had been computed."""
    config = LoFTRConfig()
    config.subpixel = SubpixelConfig(enabled=True, dim=8)
    model = sharpen_(LoFTR(config).eval()).double()
    image0, image1 = image_pair(160, 224, seed=3, dtype=torch.float64)
    batch = {"image0": image0, "image1": image1}
    assert model._fine_margin() > 0
    with torch.inference_mode():
        skipped = model(batch)
        monkeypatch.setattr(LoFTR, "_fine_margin", lambda self: 0)
        whole = model(batch)
    assert len(whole.keypoints0) >= 50
    x, y = whole.keypoints1.unbind(1)
    near_border = (x < 24) | (y < 24) | (x > 224 - 24) | (y > 160 - 24)
    assert near_border.sum() >= 5
    assert torch.equal(skipped.keypoints0, whole.keypoints0)
    assert torch.allclose(skipped.keypoints1, whole.keypoints1, atol=1e-9)


def test_training_loss_trains_the_stride1_features():
    batch = plane_batch(96, 128, translation(3.25 * Z / FOCAL, -1.5 * Z / FOCAL), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    batch["image0"] = torch.rand(1, 1, 96, 128, generator=generator)
    batch["image1"] = torch.roll(batch["image0"], shifts=(-2, 3), dims=(2, 3))  # about the plane's motion
    config = LoFTRConfig()
    config.match_coarse.train_pad_num_gt_min = 20
    config.subpixel = SubpixelConfig(enabled=True, dim=8)
    model = LoFTR(config).train()
    supervision = coarse_supervision(batch, (12, 16), (12, 16))
    result = model(batch, ground_truth=(supervision.batch_index, supervision.index0, supervision.index1))
    assert result.subpixel is not None and len(result.subpixel.anchor) == len(result.coarse.index0)
    with_stage = LoFTRLoss(LossConfig(subpixel_weight=1.0))(result, supervision)
    without = LoFTRLoss(LossConfig(subpixel_weight=0.0))(result, supervision)
    assert with_stage.fine > without.fine  # the stage's cross-entropy is positive wherever a target is inside
    with_stage.total.backward()
    grads = [p.grad for p in model.pixel_features.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
