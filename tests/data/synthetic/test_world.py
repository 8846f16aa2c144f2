"""The synthetic world: written in MegaDepth's format, read by the real loader, photo-consistent geometry."""

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.supervision import coarse_supervision
from data.synthetic.world import WorldConfig, generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    config = WorldConfig(num_scenes=1, cameras_per_scene=8, image_size=(160, 120), seed=3)
    return root, generate_world(root, config)


def sample(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of a (1, 1, H, W) image at pixels (N, 2)."""
    height, width = image.shape[2:]
    grid = (points / torch.tensor([width - 1, height - 1]) * 2 - 1).float()[None, None]
    return F.grid_sample(image, grid, align_corners=True)[0, 0, 0]


def test_world_is_megadepth_format(world):
    root, infos = world
    info = pickle.loads(infos[0].read_bytes())
    assert set(info) == {"image_paths", "depth_paths", "intrinsics", "poses", "pair_infos"}
    assert len(info["pair_infos"]) >= 3
    assert all(0.1 <= overlap <= 0.9 for _, overlap, _ in info["pair_infos"])
    assert (root / info["image_paths"][0]).is_file() and (root / info["depth_paths"][0]).is_file()


def test_ground_truth_matches_are_photo_consistent(world):
    """Where the exact depth and poses say two pixels see the same point, the rendered images agree."""
    root, infos = world
    dataset = MegaDepthPairs(MegaDepthConfig(root=str(root), scene_info=tuple(map(str, infos)), longer_side=160,
                                             depth_pad_size=160))
    consistent, shuffled = [], []
    for index in range(len(dataset)):
        batch = default_collate([dataset[index]])
        supervision = coarse_supervision(batch, (15, 20), (15, 20))
        i = supervision.index0
        if len(i) < 10:
            continue
        centres = torch.stack([i % 20, i // 20], -1).float() * 8
        here = sample(batch["image0"], centres)
        there = sample(batch["image1"], supervision.warped0[0, i].float())
        consistent.append((here - there).abs().mean())
        shuffled.append((here - there[torch.randperm(len(i))]).abs().mean())
    assert len(consistent) >= 2
    assert max(consistent) < 0.06  # JPEG and bilinear resampling of fine texture: a few grey levels
    assert min(shuffled) > 2 * max(consistent)


def test_command_line_writes_splits_deterministically(tmp_path):
    from data.synthetic.__main__ import main

    for name in ("a", "b"):
        assert main(["--out", str(tmp_path / name), "--scenes", "3", "--cameras", "4", "--size", "96x72"]) == 0
    for split in ("train", "val", "test"):
        listed = (tmp_path / "a" / f"{split}.txt").read_text().split()
        assert len(listed) == 1 and (tmp_path / "a" / listed[0]).is_file()
    for path in sorted((tmp_path / "a").rglob("*.jpg")) + sorted((tmp_path / "a" / "scene_info").glob("*.npz")):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes()  # same seed, same world, byte for byte
    info = pickle.loads((tmp_path / "a" / "scene_info" / "scene0000.npz").read_bytes())
    focals = {round(float(K[0, 0]), 3) for K in info["intrinsics"]}
    assert len(focals) > 1  # cameras vary in focal length
