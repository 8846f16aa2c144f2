"""Efficient LoFTR against its official code (efficientloftr-inference) with the same seeded weights: the same
coarse confidence matrix, the same matches and fine keypoints within 1e-3 px, at two sizes, before and after
re-parameterisation."""

import copy
from dataclasses import replace

import pytest
import torch

from models.checkpoint import convert_state_dict
from models.eloftr import EfficientLoFTR
from models.matching.two_stage import match_windows
from tests.eloftr_helpers import randomize_norms_, upstream_eloftr
from tests.helpers import calibrate_norms_, shifted_pair, tiny_eloftr_config


@pytest.fixture(scope="module")
def models():
    eloftr = upstream_eloftr()
    torch.manual_seed(0)
    theirs = eloftr.LoFTR(eloftr.full_config())
    batch = {key: image.float() for key, image in shifted_pair(256, 320).items()}
    calibrate_norms_(theirs, lambda: theirs(batch.copy()))
    ours = EfficientLoFTR().eval()
    ours.load_state_dict(convert_state_dict(theirs.state_dict()))  # strict: every key fits
    # float64: the calibrated model's dual-softmax at temperature 0.1 turns float32's rounding of the two
    # (equal) similarity formulas into 5e-5 of confidence
    return eloftr, theirs.double(), ours.double()


def compare(theirs, ours, batch: dict) -> int:
    data = dict(batch)
    with torch.no_grad():
        theirs(data)
        result = ours(batch)
    assert (result.coarse.confidence_matrix - data["conf_matrix"]).abs().max() < 1e-5
    expected = sorted(zip(data["b_ids"].tolist(), data["i_ids"].tolist(), data["j_ids"].tolist()))
    got = sorted(zip(result.batch_index.tolist(), result.coarse.index0.tolist(), result.coarse.index1.tolist()))
    assert got == expected
    mine = (result.batch_index * 10**6 + result.coarse.index0).argsort()  # one match per cell of image 0
    upstream = (data["b_ids"] * 10**6 + data["i_ids"]).argsort()
    assert (result.keypoints0[mine] - data["mkpts0_f"][upstream]).abs().max() < 1e-3
    assert (result.keypoints1[mine] - data["mkpts1_f"][upstream]).abs().max() < 1e-3
    return len(got)


@pytest.mark.parametrize(("height", "width"), [(256, 320), (192, 288)])
def test_parity_with_upstream(models, height, width):
    _, theirs, ours = models
    assert compare(theirs, ours, shifted_pair(height, width)) >= 100


def test_parity_after_reparameterisation(models):
    eloftr, theirs, ours = models

    theirs, ours = eloftr.reparameter(copy.deepcopy(theirs)), copy.deepcopy(ours).reparameterize()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ours.backbone.modules())
    assert compare(theirs, ours, shifted_pair(256, 320)) >= 100


def test_an_official_checkpoint_runs_in_match_py(models, tmp_path, capfd):
    """Upstream's weights in a Lightning file (`matcher.` keys, as its released eloftr_outdoor.ckpt) load with
    weights_only, are recognised as Efficient LoFTR, folded, and match.py gives upstream's matches."""
    import cv2
    import numpy as np

    import match

    _, theirs, _ = models
    checkpoint = tmp_path / "eloftr_outdoor.ckpt"
    torch.save({"state_dict": {f"matcher.{k}": v.float() for k, v in theirs.state_dict().items()}}, checkpoint)
    pair = {key: (image[0, 0].numpy() * 255).round().astype(np.uint8) for key, image in shifted_pair(256, 320).items()}
    for key, image in pair.items():
        assert cv2.imwrite(str(tmp_path / f"{key}.png"), image)
    out = tmp_path / "matches.npz"
    code = match.main([str(tmp_path / "image0.png"), str(tmp_path / "image1.png"), "--checkpoint", str(checkpoint),
                       "--out", str(out), "--resize", "0", "--device", "cpu"])
    assert code == 0, capfd.readouterr().err
    written = np.load(out)

    reference = copy.deepcopy(theirs).float()
    data = {key: torch.from_numpy(image).float()[None, None] / 255 for key, image in pair.items()}
    with torch.no_grad():
        reference(data)
    assert len(written["keypoints0"]) == len(data["mkpts0_f"]) >= 100
    order = np.lexsort(written["keypoints0"].T[::-1])
    expected = data["mkpts0_f"].numpy()
    expected_order = np.lexsort(expected.T[::-1])
    assert np.abs(written["keypoints0"][order] - expected[expected_order]).max() < 1e-3
    assert np.abs(written["keypoints1"][order] - data["mkpts1_f"].numpy()[expected_order]).max() < 1e-3


def test_padding_changes_nothing(models):
    """A pair on a larger canvas with its masks, alone and in a batch beside an unpadded pair: the same matches
    and keypoints as the pair alone (valid sides multiples of 32, as the attention's pooling needs)."""
    _, _, ours = models
    small, large = shifted_pair(192, 256), shifted_pair(256, 320)
    with torch.no_grad():
        alone = ours(small)
        canvas = {}
        for side in (0, 1):
            image = torch.zeros(2, 1, 256, 320, dtype=torch.float64)
            image[0, :, :192, :256] = small[f"image{side}"][0]
            image[1] = large[f"image{side}"][0]
            mask = torch.zeros(2, 256, 320, dtype=torch.bool)
            mask[0, :192, :256], mask[1] = True, True
            canvas[f"image{side}"], canvas[f"mask{side}"] = image, mask
        padded = ours(canvas)
        large_alone = ours(large)
    first = padded.batch_index == 0
    assert len(alone.keypoints0) >= 100
    for result, chosen in ((alone, first), (large_alone, ~first)):
        order_a = (result.keypoints0[:, 1] * 1e4 + result.keypoints0[:, 0]).argsort()
        kpts0, kpts1 = padded.keypoints0[chosen], padded.keypoints1[chosen]
        order_p = (kpts0[:, 1] * 1e4 + kpts0[:, 0]).argsort()
        assert len(order_a) == len(order_p)
        assert (result.keypoints0[order_a] - kpts0[order_p]).abs().max() < 1e-6
        assert (result.keypoints1[order_a] - kpts1[order_p]).abs().max() < 1e-6
    with pytest.raises(ValueError, match="multiples of 32"):
        ours({"image0": small["image0"][..., :200], "image1": small["image1"][..., :200]})


def test_no_coarse_match_gives_an_empty_result():
    """Blank images: no cell passes the threshold, and the fine level takes zero windows without failing."""
    torch.manual_seed(0)
    model = EfficientLoFTR(tiny_eloftr_config()).eval()
    blank = torch.zeros(1, 1, 64, 96)
    with torch.no_grad():
        result = model({"image0": blank, "image1": blank.clone()})
    assert result.keypoints0.shape == (0, 2) and result.fine.heatmap.shape == (0, 64, 64)


def test_training_reports_its_own_matches_and_pads_the_fine_level():
    """With ground truth in training, the fine level sees the pads too; the keypoints are the model's own."""
    torch.manual_seed(0)
    model = EfficientLoFTR(tiny_eloftr_config()).train()
    batch = {key: image.float() for key, image in shifted_pair(96, 128).items()}
    cells = torch.arange(40)
    result = model(batch, ground_truth=(torch.zeros_like(cells), cells, cells))
    pads = result.coarse.is_ground_truth_pad
    assert pads.sum() >= 20 and len(result.fine.heatmap) == len(pads)
    assert len(result.keypoints0) == int((~pads).sum()) == len(result.confidence)


def test_parity_of_the_optimised_models_coarse_matching(models):
    """eloftr_optimized.py's SKIP_SOFTMAX: the mutual nearest neighbours of the logits, thresholded at 25."""
    _, theirs, ours = models
    theirs, ours = copy.deepcopy(theirs), copy.deepcopy(ours)
    theirs.coarse_matching.skip_softmax, theirs.coarse_matching.thr = True, 25.0
    ours.coarse_matching.config = replace(ours.coarse_matching.config, skip_softmax=True, threshold=25.0)
    batch = {key: image.double() for key, image in shifted_pair(256, 320).items()}
    assert compare(theirs, ours, batch) >= 50


def test_fine_tuning_starts_from_an_official_checkpoint(models, tmp_path):
    """`model=eloftr init_checkpoint=eloftr_outdoor.ckpt`: upstream's Lightning file loads into the training
    module's (multi-branch) model, every weight as upstream's."""
    from lightning_modules.config import TrainingConfig
    from lightning_modules.loftr_module import LoFTRModule
    from models.eloftr import EfficientLoFTRConfig

    _, theirs, _ = models
    checkpoint = tmp_path / "eloftr_outdoor.ckpt"
    torch.save({"state_dict": {f"matcher.{k}": v.float() for k, v in theirs.state_dict().items()}}, checkpoint)
    module = LoFTRModule(TrainingConfig(model=EfficientLoFTRConfig(), init_checkpoint=str(checkpoint)))
    expected = convert_state_dict(theirs.state_dict())
    loaded = module.model.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[key], expected[key].float()) for key in expected)


@pytest.mark.parametrize("cells, share", [
    ([0, 39, 1240, 1279], 0.5),  # the corners
    ([295, 296, 335, 336], 0.85),  # rows 7-8, columns 15-16: on the edges of four tiles
    ([130, 131, 170], 0.3),  # three neighbours inside one tile
    (list(range(0, 1280, 3)), 1.0),  # everywhere: the whole map
])
def test_the_lazy_fine_map_equals_the_whole_map_wherever_a_window_reads(cells, share):
    """In inference the fine map is computed only on the tiles around the matched cells, with context beyond
    the FPN's reach: every window of those cells (image 0's, and image 1's reaching one pixel past its cell,
    into the neighbouring tiles) equals the whole map's to float64 rounding, in a full sample and in a padded
    one up to its edge. A few cells cost a `share` of the map's pixels; many fall back to the whole map."""
    torch.manual_seed(0)
    model = randomize_norms_(EfficientLoFTR(tiny_eloftr_config())).eval().double()
    rows, cols = 32, 40  # the coarse grid of a 256 x 320 canvas
    size = torch.tensor([[256, 320], [192, 256]])  # sample 1 padded: 24 x 32 cells of its own
    maps = [torch.randn(2, channels, 8 * rows // stride, 8 * cols // stride, dtype=torch.float64)
            for channels, stride in zip(model.config.backbone.block_dims[::-1], (8, 4, 2))]
    for m, stride in zip(maps, (8, 4, 2)):  # zero beyond the padded sample's region, as _backbone_maps gives
        m[1, :, 192 // stride:] = 0
        m[1, :, :, 256 // stride:] = 0
    image = torch.zeros(2, 1, 8 * rows, 8 * cols, dtype=torch.float64)
    index = torch.tensor(cells).repeat(2)
    batch_index = torch.arange(2).repeat_interleave(len(cells))
    inside = (batch_index == 0) | ((index // cols < 24) & (index % cols < 32))
    batch_index, index = batch_index[inside], index[inside]
    computed = []
    model.fine_preprocess.register_forward_hook(lambda m, inputs, out: computed.append(out.shape[2] * out.shape[3]))
    with torch.no_grad():
        lazy = model._fine_map(*maps, size, image, batch_index, index)
        lazy_pixels, computed[:] = sum(computed), []
        whole = model._fine_map(*maps, size, image, torch.arange(2).repeat_interleave(rows * cols),
                                torch.arange(rows * cols).repeat(2))
    got = match_windows(lazy, lazy, batch_index, index, index)
    expected = match_windows(whole, whole, batch_index, index, index)
    assert all((a - b).abs().max() <= 1e-12 for a, b in zip(got, expected))
    assert sum(computed) == 256 * 320 + 192 * 256  # every cell: each sample whole
    assert lazy_pixels <= share * sum(computed)
