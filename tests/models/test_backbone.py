"""ResNet-FPN: strides, and the fine-map margin that inference skips."""

import pytest
import torch

from models.backbone.resnet_fpn import ResNetFPN
from models.loftr import LoFTR
from tests.helpers import image_pair, sharpen_


@pytest.mark.parametrize("size", [(64, 96), (61, 90)])
def test_output_strides(size):
    coarse, fine = ResNetFPN().eval()(torch.rand(2, 1, *size))
    assert coarse.shape == (2, 256, -(-size[0] // 8), -(-size[1] // 8))
    assert fine.shape == (2, 128, -(-size[0] // 2), -(-size[1] // 2))


@pytest.mark.parametrize("size", [(64, 96), (61, 90)])
def test_fine_margin_leaves_the_inside_unchanged(size):
    backbone = ResNetFPN().eval()
    image = torch.rand(1, 1, *size)
    with torch.inference_mode():
        _, full = backbone(image)
        _, cut = backbone(image, fine_margin=6)
    inside = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert torch.allclose(cut[inside], full[inside], atol=1e-5)
    cut = cut.clone()
    cut[inside] = 0
    assert cut.abs().max() == 0


def test_no_fine_window_reads_the_margin():
    """Matches with the margin skipped equal the matches with the whole fine map computed."""
    model = sharpen_(LoFTR().eval())
    assert model._fine_margin() == 6  # border removal 2 coarse cells = 8 fine cells, minus the window radius 2
    image0, image1 = image_pair(172, 236)
    with torch.inference_mode():
        skipped = model({"image0": image0, "image1": image1})
        model._fine_margin = lambda: 0
        whole = model({"image0": image0, "image1": image1})
    assert len(whole.keypoints0) >= 50
    assert torch.equal(skipped.keypoints0, whole.keypoints0)
    assert torch.allclose(skipped.keypoints1, whole.keypoints1, atol=1e-4)
