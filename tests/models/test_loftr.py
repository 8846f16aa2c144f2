"""The composed model: Sinkhorn variant, training mode with ground-truth pads, input checks."""

import numpy as np
import pytest
import torch

from geometry.grid import cell_pixels, nearest_cell
from geometry.warp import apply_homography
from models.loftr import LoFTR, LoFTRConfig
from models.matching.coarse import CoarseMatching, CoarseMatchingConfig
from tests.helpers import WARP, content_only_, image_pair, sharpen_, warp_errors


def small_config(match_type="dual_softmax") -> LoFTRConfig:
    config = LoFTRConfig()
    config.match_coarse.match_type = match_type
    config.match_coarse.train_pad_num_gt_min = 20  # a 96 x 128 pair has 192 cells
    return config


@pytest.mark.parametrize("match_type", ["dual_softmax", "sinkhorn"])
def test_training_forward_pads_with_ground_truth_and_backpropagates(match_type):
    model = LoFTR(small_config(match_type)).train()
    image0, image1 = image_pair(96, 128)
    cells = torch.arange(40)
    ground_truth = (torch.zeros(40, dtype=torch.long), cells + 30, cells + 31)
    result = model({"image0": image0, "image1": image1}, ground_truth=ground_truth)

    coarse = result.coarse
    budget = int(192 * model.config.match_coarse.train_coarse_percent)
    assert len(coarse.batch_index) >= budget  # predictions + pads fill the fine-level budget
    assert coarse.is_ground_truth_pad.sum() >= 20
    padded = coarse.is_ground_truth_pad
    assert (coarse.confidence[padded] == 0).all()
    # every pad is one of the ground-truth matches
    pairs = set(zip(coarse.index0[padded].tolist(), coarse.index1[padded].tolist()))
    assert pairs <= set(zip(ground_truth[1].tolist(), ground_truth[2].tolist()))
    # pads are not reported as matches
    assert len(result.keypoints0) == int((~padded).sum())

    loss = coarse.confidence_matrix.sum() + result.fine.expectation.sum() + result.fine.std.sum()
    if coarse.log_assignment is not None:
        loss = loss + coarse.log_assignment.logsumexp(dim=(1, 2)).sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    if match_type == "sinkhorn":
        assert model.coarse_matching.bin_score.grad is not None


def test_sinkhorn_model_matches_a_warped_copy():
    """A random LoFTR made to match by content (`content_only_`) on a copy warped by WARP: the Sinkhorn
    coarse matches are the cells the warp takes image 0's cells to, and the fine matches stay within the fine
    window of the truth (the random fine stage only moves them inside it)."""
    torch.manual_seed(0)
    model = content_only_(sharpen_(LoFTR(small_config("sinkhorn")).eval()))
    with torch.no_grad():
        # Sinkhorn reads logits without the dual-softmax temperature: scale the descriptors up instead
        model.loftr_coarse.layers[-1].norm2.weight.mul_(3.0)
    image0, image1 = image_pair(176, 240)
    with torch.inference_mode():
        result = model({"image0": image0, "image1": image1})
    conf = result.coarse.confidence_matrix
    assert conf.shape == (1, 22 * 30, 22 * 30)
    # columns are normalised last, so each cell of image 1 holds at most its unit mass outside the dustbin
    assert conf.sum(1).max() <= 1 + 1e-5
    assert len(result.keypoints0) >= 20
    coarse, grid = result.coarse, result.coarse_grid0
    cells0 = cell_pixels(coarse.index0, grid, 8, torch.float64)
    true_cells, _ = nearest_cell(torch.from_numpy(apply_homography(WARP, cells0.numpy()))[None], grid, 8)
    # 0.89 to 0.91 for seeds 0-5; the same cell's place in image 1 (what the encoding made it match): 0.01-0.03
    assert (true_cells[0] == coarse.index1).double().mean() > 0.8
    errors = warp_errors(WARP, result.keypoints0, result.keypoints1)
    assert np.quantile(errors, 0.9) < 10  # one coarse cell's half-diagonal (5.7 px) and the window's reach (4)


def test_input_errors_name_the_input():
    model = LoFTR().eval()
    with pytest.raises(ValueError, match="image1"):
        model({"image0": torch.rand(1, 1, 64, 64), "image1": torch.rand(1, 3, 64, 64)})
    with pytest.raises(ValueError, match="smaller than one coarse cell"):
        model({"image0": torch.rand(1, 1, 64, 64), "image1": torch.rand(1, 1, 6, 64)})
    with pytest.raises(ValueError, match="batch sizes"):
        model({"image0": torch.rand(2, 1, 64, 64), "image1": torch.rand(1, 1, 64, 64)})


def test_images_of_different_sizes_match_in_one_call():
    model = LoFTR().eval()
    with torch.inference_mode():
        result = model({"image0": torch.rand(1, 1, 96, 128), "image1": torch.rand(1, 1, 120, 88)})
    assert result.coarse_grid0 == (12, 16) and result.coarse_grid1 == (15, 11)
    assert result.coarse.confidence_matrix.shape == (1, 192, 165)


def test_bf16_autocast_finds_the_float32_matches():
    """Mixed precision (what GPU users run) keeps most matches: the precision-sensitive parts (dual-softmax
    statistics, the fine heatmap, Sinkhorn) stay in float32 or are formulated to survive bf16."""
    model = sharpen_(LoFTR().eval())
    image0, image1 = image_pair(96, 128)
    with torch.inference_mode():
        reference = model({"image0": image0, "image1": image1})
        with torch.autocast("cpu", torch.bfloat16):
            mixed = model({"image0": image0, "image1": image1})
    assert len(reference.keypoints0) >= 30
    def cells(result):
        return {tuple(p) for p in result.keypoints0.round().long().tolist()}
    shared = cells(reference) & cells(mixed)
    assert len(shared) >= 0.8 * len(reference.keypoints0)
    assert mixed.keypoints1.dtype == torch.float32


def test_fine_level_in_chunks_equals_one_pass(monkeypatch):
    import models.loftr

    # float64: in float32 the GEMMs of a 7-row and a 60-row chunk round differently (~1e-4 px here)
    model = sharpen_(LoFTR().eval()).double()
    image0, image1 = image_pair(96, 128, dtype=torch.float64)
    with torch.inference_mode():
        whole = model({"image0": image0, "image1": image1})
        monkeypatch.setattr(models.loftr, "CPU_FINE_CHUNK", 7)
        chunked = model({"image0": image0, "image1": image1})
    assert len(whole.keypoints0) > 3 * 7
    assert torch.equal(chunked.keypoints0, whole.keypoints0)
    assert torch.allclose(chunked.keypoints1, whole.keypoints1, atol=1e-9)
    assert torch.allclose(chunked.fine.std, whole.fine.std, atol=1e-12)


def test_query_radius_moves_image0_points_by_whole_fine_pixels_at_inference_only():
    model = sharpen_(LoFTR(small_config()).eval())
    image0, image1 = image_pair(96, 128)
    with torch.inference_mode():
        centres = model({"image0": image0, "image1": image1})
        model.config.fine.query_radius = 1
        chosen = model({"image0": image0, "image1": image1})
    assert len(centres.keypoints0) > 20
    assert torch.equal(centres.keypoints0 % 8, torch.zeros_like(centres.keypoints0))  # LoFTR: the cell corners
    shift = chosen.keypoints0 - centres.keypoints0  # the same coarse matches, each from a query near its centre
    assert set(shift.flatten().tolist()) <= {-2.0, 0.0, 2.0} and (shift != 0).any()
    moved = chosen.fine.query != 12
    assert torch.equal(moved, (shift != 0).any(-1))
    model.train()  # training always queries the centre: the loss's targets are the cells'
    result = model({"image0": image0, "image1": image1},
                   ground_truth=(torch.zeros(20, dtype=torch.long), torch.arange(20) + 30, torch.arange(20) + 31))
    assert (result.fine.query == 12).all()


def test_the_coarse_similarity_stays_float32_under_autocast_unless_asked():
    """Under bf16 autocast the similarity matmul runs in float32 (Efficient LoFTR's full model, FP16MATMUL off):
    the confidences equal float32's; `half_precision_similarity` (its optimised model) runs it in bf16."""
    torch.manual_seed(0)
    feat0, feat1 = torch.randn(1, 48, 64) * 3, torch.randn(1, 40, 64) * 3
    exact = CoarseMatching().eval()(feat0, feat1, (6, 8), (5, 8)).confidence_matrix
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = CoarseMatching().eval()(feat0, feat1, (6, 8), (5, 8)).confidence_matrix
        half = CoarseMatching(CoarseMatchingConfig(half_precision_similarity=True)).eval()(
            feat0, feat1, (6, 8), (5, 8)).confidence_matrix
    assert (full - exact).abs().max() < 1e-6
    assert (half - exact).abs().max() > 1e-3
