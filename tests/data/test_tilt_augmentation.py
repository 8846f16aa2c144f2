"""The tilt augmentation (data/tilt.py): the ground truth of a tilted pair is the analytic warp followed by the
tilt's affine map, for depth + pose, homography and labelled pairs; the draws are reproducible per (seed, epoch,
pair); probability 0 changes nothing; `shown1` is False exactly off the tilted image."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, default_collate

from data.augment import RandomSwap, swap_sides
from data.datamodule import DataConfig, PairDataModule
from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.tilt import RandomTilt, TiltConfig, draw_tilt, tilt_item
from geometry.grid import cell_centres, grid_size, to_network, to_original
from geometry.ground_truth import coarse_supervision, sparse_supervision
from geometry.warp import warp_depth, warp_homography
from tests.ground_truth_helpers import GRID, labelled_batch

TOLERANCE_PX = 1e-6


def as_float64(item: dict) -> dict:
    """The item with every floating tensor in float64, so that the ground truth runs in float64."""
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in item.items()}


def mapped(points: torch.Tensor, warp: np.ndarray) -> torch.Tensor:
    """Points (B, N, 2) mapped by the affine `warp` (3, 3)."""
    A = torch.as_tensor(warp, dtype=points.dtype)
    return points @ A[:2, :2].T + A[:2, 2]


def homography_item(H: torch.Tensor, size=(120, 160), seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"image0": torch.rand(1, *size, generator=generator, dtype=torch.float64),
            "image1": torch.rand(1, *size, generator=generator, dtype=torch.float64), "H_0to1": H}


# a shift of 30 px: cells of image 0 land off image 1, and the tilt would bring some of them back onto its canvas
H_SHIFTED = torch.tensor([[0.95, 0.08, 30.0], [-0.05, 1.05, -12.0], [1e-4, -2e-4, 1.0]], dtype=torch.float64)


@pytest.fixture(scope="module")
def world_pairs(world) -> MegaDepthPairs:
    """The world's training pairs at 160x120, padded to 160x160 (mask1 a top-left rectangle)."""
    return MegaDepthPairs(MegaDepthConfig(root=str(world), scene_list=str(world / "train.txt"), longer_side=160,
                                          depth_pad_size=160, pad_to_square=True))


def test_depth_pose_ground_truth_is_the_warp_then_the_tilt(world_pairs):
    item = as_float64(world_pairs[0])
    tilted, warp = tilt_item(item, 4.0, 30.0)
    scale = item["scale1"].numpy()
    S = np.diag([scale[0], scale[1], 1.0])
    assert torch.allclose(tilted["K1"], torch.from_numpy(S @ warp @ np.linalg.inv(S)) @ item["K1"], atol=1e-12)
    assert torch.equal(tilted["mask1"], item["mask1"]) and tilted["image1"].shape == item["image1"].shape
    batch, plain = default_collate([tilted]), default_collate([item])
    grid = grid_size(batch["image0"].shape[2:], 8)
    supervision = coarse_supervision(batch, grid, grid, 8, fine_stride=2)
    assert len(supervision.index0) > 10  # ground-truth matches on the tilted view
    for points, warped, valid in (
        (cell_centres(grid, 8, 1, "cpu", torch.float64), supervision.warped0, supervision.warped0_valid),
        (cell_centres(supervision.fine_grid, 2, 1, "cpu", torch.float64), supervision.warped0_fine,
         supervision.warped0_fine_valid),
    ):
        # the analytic composition: image-0 pixels through depth and pose into the untilted image 1, then A
        known, landed = warp_depth(to_original(points, plain["scale0"]), plain["depth0"], plain["depth1"],
                                   plain["K0"], plain["K1"], plain["T_0to1"])
        expected = mapped(to_network(landed, plain["scale1"]), warp)
        # the depth test reads the resampled depth1: it may differ at the occlusion edges, nowhere else
        assert valid.sum() > 0.5 * known.sum() and (valid ^ known).sum() < 0.6 * known.sum()
        assert (warped - expected)[valid].norm(dim=-1).max() < TOLERANCE_PX
        shown = batch["shown1"][0][warped[valid].round().long().unbind(-1)[::-1]]
        assert shown.all()  # nothing lands on the black border


def test_float32_items_carry_the_tilt_to_float32_rounding(world_pairs):
    """The datasets' items are float32: the tilted K1 is rounded as K1 itself was, hundredths of a thousandth
    of a pixel, not more."""
    item = world_pairs[0]
    tilted, warp = tilt_item(item, 4.0, 30.0)
    assert all(tilted[key].dtype == item[key].dtype for key in item if torch.is_tensor(item[key]))
    grid = grid_size(item["image0"].shape[1:], 8)
    plain = coarse_supervision(default_collate([as_float64(item)]), grid, grid, 8)
    supervision = coarse_supervision(default_collate([as_float64(tilted)]), grid, grid, 8)
    both = plain.warped0_valid & supervision.warped0_valid
    assert both.sum() > 20
    assert (supervision.warped0 - mapped(plain.warped0, warp))[both].norm(dim=-1).max() < 1e-4


def test_homography_ground_truth_is_the_homography_then_the_tilt():
    item = homography_item(H_SHIFTED)
    tilted, warp = tilt_item(item, 3.0, 60.0)
    assert torch.allclose(tilted["H_0to1"], torch.from_numpy(warp) @ H_SHIFTED, atol=1e-12)
    batch = default_collate([tilted])
    supervision = coarse_supervision(batch, GRID, GRID, 8, fine_stride=2)
    centres = cell_centres(GRID, 8, 1, "cpu", torch.float64)
    plain = warp_homography(centres, H_SHIFTED[None])
    expected = mapped(plain, warp)
    valid = supervision.warped0_valid
    assert valid.sum() > 100 and len(supervision.index0) > 30  # mutual: 3 cells land on one
    assert (supervision.warped0 - expected)[valid].norm(dim=-1).max() < TOLERANCE_PX
    fine = cell_centres(supervision.fine_grid, 2, 1, "cpu", torch.float64)
    fine_valid = supervision.warped0_fine_valid
    expected_fine = mapped(warp_homography(fine, H_SHIFTED[None]), warp)
    assert (supervision.warped0_fine - expected_fine)[fine_valid].norm(dim=-1).max() < TOLERANCE_PX
    # cells whose partner lies off image 1 land, tilted, on the black border of its canvas: never labelled
    off_image = (plain[..., 0] < -0.5) | (plain[..., 0] >= 159.5) | (plain[..., 1] < -0.5) | (plain[..., 1] >= 119.5)
    on_canvas = (expected[..., 0] >= -0.5) & (expected[..., 0] < 159.5) & (expected[..., 1] >= -0.5) & (
        expected[..., 1] < 119.5)
    assert (off_image & on_canvas).sum() > 10
    assert not (valid & off_image).any()
    labelled = torch.zeros_like(valid)
    labelled[supervision.batch_index, supervision.index0] = True
    assert not (labelled & off_image).any()


def test_labelled_correspondences_are_mapped_by_the_tilt():
    """Labels of an affine map: the fitted ground truth is exact, and so is the tilted one."""
    H = torch.tensor([[[0.9, 0.15, 12.0], [-0.1, 1.05, -6.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    batch = labelled_batch(H)
    item = {key: value[0] for key, value in batch.items()}
    tilted, warp = tilt_item(item, 2.5, 110.0)
    assert (tilted["correspondences1"] - mapped(item["correspondences1"][None], warp)[0]).abs().max() < 1e-12
    assert torch.equal(tilted["correspondences0"], item["correspondences0"])
    supervision = sparse_supervision(default_collate([tilted]), GRID, GRID, 8)
    valid = supervision.warped0_valid
    assert valid.sum() > 50
    expected = mapped(warp_homography(cell_centres(GRID, 8, 1, "cpu", torch.float64), H), warp)
    assert (supervision.warped0 - expected)[valid].norm(dim=-1).max() < TOLERANCE_PX
    landed = supervision.warped0[supervision.batch_index, supervision.index0]
    assert batch_shown(tilted, landed).all()


def batch_shown(item: dict, points: torch.Tensor) -> torch.Tensor:
    cols, rows = points.round().long().unbind(-1)
    return item["shown1"][rows, cols]


def test_swapping_a_tilted_pair_transposes_its_ground_truth():
    tilted, _ = tilt_item(homography_item(H_SHIFTED), 3.0, 60.0)
    swapped = swap_sides(tilted)
    assert "shown1" not in swapped and torch.equal(swapped["shown0"], tilted["shown1"])
    assert torch.equal(swap_sides(swapped)["shown1"], tilted["shown1"]) and "shown0" not in swap_sides(swapped)
    forward = coarse_supervision(default_collate([tilted]), GRID, GRID, 8)
    backward = coarse_supervision(default_collate([swapped]), GRID, GRID, 8)
    assert len(forward.index0) > 30
    assert set(zip(forward.index0.tolist(), forward.index1.tolist())) == set(
        zip(backward.index1.tolist(), backward.index0.tolist()))


def test_shown1_is_false_exactly_off_the_tilted_image():
    """A white image padded below: its view is bright (at least half a pixel of image, then the tilt's
    blur) exactly where shown1 is True, and the padding stays padding (mask1 unchanged, the view black there)."""
    image = torch.zeros(1, 128, 160)
    image[:, :120] = 1.0
    mask = torch.zeros(128, 160, dtype=torch.bool)
    mask[:120] = True
    item = {"image0": image.clone(), "image1": image, "mask0": mask.clone(), "mask1": mask,
            "H_0to1": torch.eye(3)}
    for tilt, direction in ((4.0, 30.0), (8.0, 90.0), (1.5, 0.0)):
        tilted, _ = tilt_item(item, tilt, direction)
        view, shown = tilted["image1"][0], tilted["shown1"]
        assert torch.equal(tilted["mask1"], mask) and not shown[120:].any() and not view[120:].any()
        assert (view[shown] > 0).all()  # every shown pixel has image in it
        assert (view[~shown] < 0.5).all()  # and off it, at most a blurred half pixel of edge
        # the area, to a pixel of perimeter; less where an oblique compression pushes corners off the canvas
        area = 120 * 160 / tilt
        assert int(shown.sum()) < area + 2 * (120 + 160)
        assert direction % 90 != 0 or int(shown.sum()) > area - 2 * (120 + 160)


class Pairs(Dataset):
    def __init__(self, count: int = 20):
        self.items = [homography_item(H_SHIFTED, seed=k) for k in range(count)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])


def test_draws_repeat_per_seed_epoch_and_pair_and_differ_across_epochs():
    config = TiltConfig(max_tilt=8.0, probability=0.5)
    one, other = RandomTilt(Pairs(), config, seed=3), RandomTilt(Pairs(), config, seed=3)  # two workers
    for index in range(len(one)):
        a, b = one[index], other[index]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    draws = [draw_tilt(config, 3, 0, index) for index in range(len(one))]
    assert draws == [draw_tilt(config, 3, 0, index) for index in range(len(one))]
    assert draws != [draw_tilt(config, 3, 1, index) for index in range(len(one))]
    one.set_epoch(1)
    assert any(not torch.equal(one[k]["image1"], other[k]["image1"]) for k in range(len(one)))
    # untilted pairs carry shown1 too (their mask: all of it), so that a batch mixes both
    batch = default_collate([one[k] for k in range(len(one))])
    assert batch["shown1"].shape == (20, 120, 160)


def test_the_draw_law():
    """Tilted with the probability asked; log t uniform in [0, log max_tilt]; directions uniform in [0, 180)."""
    config = TiltConfig(max_tilt=8.0, probability=0.3)
    draws = [draw_tilt(config, 0, 0, index) for index in range(4000)]
    tilts = np.array([d[0] for d in draws if d is not None])
    directions = np.array([d[1] for d in draws if d is not None])
    assert abs(len(tilts) / len(draws) - 0.3) < 0.03
    assert tilts.min() >= 1 and tilts.max() <= 8
    assert abs(np.mean(np.log(tilts) / np.log(8)) - 0.5) < 0.03 and abs(np.mean(tilts >= 4) - 1 / 3) < 0.05
    assert directions.min() >= 0 and directions.max() < 180 and abs(directions.mean() - 90) < 5


def test_probability_0_leaves_every_item_as_it_is():
    plain, wrapped = Pairs(), RandomTilt(Pairs(), TiltConfig(probability=0.0), seed=3)
    for index in range(len(plain)):
        a, b = plain[index], wrapped[index]
        assert a.keys() == b.keys()
        assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("field, value", [("max_tilt", 0.5), ("max_tilt", 65.0), ("max_tilt", math.nan),
                                          ("probability", 1.5), ("probability", -0.1)])
def test_a_value_out_of_range_is_refused_naming_it(field, value):
    with pytest.raises(ValueError, match=rf"^data\.tilt\.{field}=.*must be"):
        TiltConfig(**{field: value})


def test_the_data_module_tilts_training_pairs_only_after_the_swap(world):
    entry = {"type": "megadepth", "root": str(world), "longer_side": 160, "depth_pad_size": 160}
    config = DataConfig(root=None, train={"world": {**entry, "scene_list": str(world / "train.txt")}},
                        val={"world": {**entry, "scene_list": str(world / "val.txt")}}, num_workers=0,
                        random_swap=True, tilt=TiltConfig(max_tilt=8.0, probability=0.5))
    module = PairDataModule(config)
    module.setup()
    [train], [val] = module.datasets["train"], module.datasets["val"]
    assert isinstance(train, RandomTilt) and isinstance(train.dataset, RandomSwap)
    assert not isinstance(val, RandomTilt)
    batch = next(iter(module.train_dataloader()))
    assert batch["shown1"].shape == batch["mask1"].shape
    off = PairDataModule(DataConfig(root=None, train=config.train, num_workers=0))
    off.setup()
    assert isinstance(off.datasets["train"][0], MegaDepthPairs)
