"""Our LoFTR against kornia's with the same weights: same confidence matrix, same matches."""

import copy

import pytest
import torch

from models.checkpoint import load_weights
from models.loftr import LoFTR, LoFTRConfig
from tests.helpers import image_pair, sharpen_

kornia_loftr = pytest.importorskip("kornia.feature.loftr.loftr")


def make_pair_of_models(temp_bug_fix: bool, sharpen: bool, dtype=torch.float32):
    """kornia's LoFTR with seeded random weights, and ours loaded from them as an official checkpoint."""
    torch.manual_seed(0)
    config = copy.deepcopy(kornia_loftr.default_cfg)
    config["coarse"]["temp_bug_fix"] = temp_bug_fix
    reference = kornia_loftr.LoFTR(pretrained=None, config=config).eval()
    if sharpen:
        sharpen_(reference)
    ours = LoFTR(LoFTRConfig(temp_bug_fix=temp_bug_fix)).eval()
    load_weights(ours, {f"matcher.{k}": v for k, v in reference.state_dict().items()})
    return reference.to(dtype), ours.to(dtype)


def run_reference(model, image0, image1):
    """kornia's outputs plus the confidence matrix it keeps internal."""
    captured = {}
    original = model.coarse_matching.get_coarse_match

    def capture(conf_matrix, data):
        captured["conf"] = conf_matrix.clone()
        return original(conf_matrix, data)

    model.coarse_matching.get_coarse_match = capture
    with torch.inference_mode():
        out = model({"image0": image0, "image1": image1})
    return out, captured["conf"]


def sort_matches(kpts0, kpts1):
    order = torch.argsort(kpts0[:, 1] * 1e5 + kpts0[:, 0])
    return kpts0[order], kpts1[order]


@pytest.mark.parametrize("temp_bug_fix", [False, True])
@pytest.mark.parametrize("size", [(240, 320), (236, 314)])
def test_confidence_matrix_matches_kornia_float32(temp_bug_fix, size):
    """Unmodified random weights in float32: the confidence matrices agree to 1e-5."""
    reference, ours = make_pair_of_models(temp_bug_fix, sharpen=False)
    image0, image1 = image_pair(*size)
    _, conf_ref = run_reference(reference, image0, image1)
    with torch.inference_mode():
        result = ours({"image0": image0, "image1": image1})
    assert result.coarse.confidence_matrix.shape == conf_ref.shape
    assert (result.coarse.confidence_matrix - conf_ref).abs().max() < 1e-5


# each encoding and each kind of side once (the float32 test above crosses them all)
@pytest.mark.parametrize("temp_bug_fix, size", [(False, (176, 240)), (True, (172, 236))])
def test_matches_equal_kornia(temp_bug_fix, size):
    """Sharpened weights, so that hundreds of matches exist: same confidence matrix, same match set, same
    fine-level keypoints. Run in float64 so that the comparison measures the maths, not the rounding of two
    equivalent summation orders (at these logit scales float32 rounding alone moves confidences by ~1e-4)."""
    reference, ours = make_pair_of_models(temp_bug_fix, sharpen=True, dtype=torch.float64)
    image0, image1 = image_pair(*size, dtype=torch.float64)
    out_ref, conf_ref = run_reference(reference, image0, image1)
    with torch.inference_mode():
        result = ours({"image0": image0, "image1": image1})

    assert (result.coarse.confidence_matrix - conf_ref).abs().max() < 1e-5
    assert len(out_ref["keypoints0"]) >= 50
    assert len(result.keypoints0) == len(out_ref["keypoints0"])
    ref0, ref1 = sort_matches(out_ref["keypoints0"], out_ref["keypoints1"])
    our0, our1 = sort_matches(result.keypoints0, result.keypoints1)
    assert torch.equal(our0, ref0)  # same coarse cells: the same match set
    assert (our1 - ref1).abs().max() < 1e-3  # fine refinement within 1e-3 px
    assert ((our1 % 8) != 0).any()  # the fine level moved points off the coarse grid, so it was compared too
