"""Padding: a padded batch gives the matches of the unpadded images, and none in the padding. A repeated image
(the affine simulation's image 1 against a batch of views): its features computed once, the same matches."""

import pytest
import torch
import torch.nn.functional as F

from models.eloftr import EfficientLoFTR
from models.loftr import LoFTR
from tests.helpers import image_pair, sharpen_, tiny_eloftr_config, tiny_model_config


def pad_to(image: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (1, 1, h, w) at the bottom/right; the mask (1, H, W) is True on the image."""
    h, w = image.shape[2:]
    mask = torch.zeros(1, height, width, dtype=torch.bool)
    mask[:, :h, :w] = True
    return F.pad(image, (0, width - w, 0, height - h)), mask


def sharp_model(attention: str = "linear", subpixel: bool = False) -> LoFTR:
    config = tiny_model_config()  # padding is handled the same at any width
    config.coarse.attention = attention
    config.fine.transformer.attention = "linear" if attention == "quadtree" else attention  # 5x5 windows
    config.subpixel.enabled = subpixel
    return sharpen_(LoFTR(config).eval()).double()


@pytest.mark.parametrize("attention, subpixel", [("linear", False), ("full", False), ("quadtree", False),
                                                ("linear", True)])
def test_padded_batch_gives_unpadded_matches(attention, subpixel):
    model = sharp_model(attention, subpixel)
    a0, a1 = image_pair(172, 236, seed=1, dtype=torch.float64)  # sides not multiples of 8
    b0, b1 = image_pair(200, 264, seed=2, dtype=torch.float64)
    with torch.inference_mode():
        alone = model({"image0": a0, "image1": a1})
        p0, m0 = pad_to(a0, 200, 264)
        p1, m1 = pad_to(a1, 200, 264)
        full = torch.ones(1, 200, 264, dtype=torch.bool)
        batch = {
            "image0": torch.cat([p0, b0]), "image1": torch.cat([p1, b1]),
            "mask0": torch.cat([m0, full]), "mask1": torch.cat([m1, full]),
        }
        padded = model(batch)
        b_alone = model({"image0": b0, "image1": b1})

    assert len(alone.keypoints0) >= 50
    first = padded.batch_index == 0
    assert torch.equal(padded.keypoints0[first], alone.keypoints0)
    assert torch.allclose(padded.keypoints1[first], alone.keypoints1, atol=1e-6)
    assert torch.allclose(padded.confidence[first], alone.confidence, atol=1e-9)
    # the unpadded sample of the batch is untouched by its neighbour's padding
    assert torch.equal(padded.keypoints0[~first], b_alone.keypoints0)
    # the coarse confidence of padded cells is zero
    conf = padded.coarse.confidence_matrix[0].view(25, 33, 25, 33)
    assert conf[22:].abs().max() == 0 and conf[:, 30:].abs().max() == 0


def test_no_match_in_padding_even_without_border_removal():
    config = tiny_model_config()
    config.match_coarse.border_removal = 0
    model = sharpen_(LoFTR(config).eval()).double()
    image0, image1 = image_pair(172, 236, dtype=torch.float64)
    p0, m0 = pad_to(image0, 200, 264)
    p1, m1 = pad_to(image1, 200, 264)
    with torch.inference_mode():
        out = model({"image0": p0, "image1": p1, "mask0": m0, "mask1": m1})
    assert len(out.keypoints0) >= 50
    for kpts in (out.keypoints0, out.keypoints1):
        assert (kpts >= 0).all() and (kpts[:, 0] <= 235).all() and (kpts[:, 1] <= 171).all()


def test_mask_must_be_a_top_left_rectangle():
    model = LoFTR().eval()
    image = torch.rand(1, 1, 64, 64)
    mask = torch.ones(1, 64, 64, dtype=torch.bool)
    mask[:, :8] = False  # padding on top
    try:
        model({"image0": image, "image1": image, "mask0": mask})
    except ValueError as error:
        assert "mask0" in str(error)
    else:
        raise AssertionError("a mask padding the top was accepted")


@pytest.mark.parametrize("family", ["loftr", "eloftr"])
@pytest.mark.parametrize("padded", [False, True])
def test_a_repeated_image_is_computed_once_with_the_same_matches(family, padded):
    """image 1 expanded along the batch (stride 0) against three different images 0 (padded to one size under
    masks, or of one size): the backbone sees image 1 once, and the matches equal those of image 1 copied."""
    torch.manual_seed(0)
    model = (sharp_model() if family == "loftr" else sharpen_(EfficientLoFTR(tiny_eloftr_config()).eval()).double())
    sizes = [(192, 256), (160, 224), (192, 224)] if padded else [(192, 256)] * 3
    views = [image_pair(h, w, seed=seed, dtype=torch.float64)[0] for seed, (h, w) in enumerate(sizes)]
    image1 = image_pair(192, 256, seed=0, dtype=torch.float64)[1]
    batch = {"image0": torch.cat([pad_to(view, 192, 256)[0] for view in views])}
    if padded:
        batch["mask0"] = torch.cat([pad_to(view, 192, 256)[1] for view in views])
    seen = []
    model.backbone.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    with torch.inference_mode():
        shared = model({**batch, "image1": image1.expand(3, 1, 192, 256)})
        shared_calls, seen[:] = list(seen), []
        copied = model({**batch, "image1": image1.repeat(3, 1, 1, 1)})
    assert sum(shared_calls) == sum(seen) - 2  # image 1 passed through the backbone once, not three times
    assert len(copied.keypoints0) >= 5
    assert torch.equal(shared.batch_index, copied.batch_index)
    assert torch.allclose(shared.keypoints0, copied.keypoints0, atol=1e-9)
    assert torch.allclose(shared.keypoints1, copied.keypoints1, atol=1e-9)
