"""The synthetic world: written in MegaDepth's format (the flat layout; LoFTR's trees: test_loftr_trees.py), read
by the real loaders, photo-consistent geometry that agrees with the renderer in every layout."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.scannet import ScanNetConfig, ScanNetPairs
from data.synthetic.manifest import read_world_manifest, world_manifest
from data.synthetic.trees import write_world
from data.synthetic.world import Scene, WorldConfig, generate_world, render_scene
from geometry.grid import cell_pixels
from geometry.ground_truth import coarse_supervision


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

    assert read_world_manifest(tmp_path / "a") == world_manifest("flat", scenes=3, test_scenes=1, cameras=4,
                                                                  size=(96, 72), textures="mixed", seed=0)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [  # the default layout is the flat one
        "scene0000", "scene0001", "scene0002", "scene_info", "test.txt", "train.txt", "val.txt", "world.json"]
    training = MegaDepthPairs(MegaDepthConfig(root=str(tmp_path / "a"), scene_list=str(tmp_path / "a" / "train.txt"),
                                              longer_side=96))
    assert training.scene_names == ["scene0000"] and len(training) > 0


def test_several_test_scenes_are_the_last_ones(tmp_path, capsys):
    from data.synthetic.__main__ import main

    assert main(["--out", str(tmp_path / "w"), "--scenes", "5", "--test-scenes", "2", "--cameras", "3",
                 "--size", "64x48"]) == 0
    splits = {split: (tmp_path / "w" / f"{split}.txt").read_text().split() for split in ("train", "val", "test")}
    assert splits == {"train": ["scene_info/scene0000.npz", "scene_info/scene0001.npz"],
                      "val": ["scene_info/scene0002.npz"],
                      "test": ["scene_info/scene0003.npz", "scene_info/scene0004.npz"]}
    assert main(["--out", str(tmp_path / "x"), "--scenes", "3", "--test-scenes", "2"]) == 2
    assert "one scene each for training and validation" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def world_dataset(root, layout: str):
    """The training split of the generated world read by the real loader of its layout, configured as the
    training configs point at LoFTR's trees: 320x240 originals -> 224 px (MegaDepth, padded to a square) or
    256x192 (ScanNet), so the ground truth also goes through a resize."""
    if layout in ("flat", "megadepth"):
        tree = {"flat": {"root": root, "scene_list": root / "train.txt"},
                "megadepth": {"root": root / "train", "scene_list": root / "index/trainvaltest_list/train_list.txt",
                              "scene_info_dir": root / "index/scene_info_0.1_0.7"}}[layout]
        dataset = MegaDepthPairs(MegaDepthConfig(**{key: str(path) for key, path in tree.items()}, longer_side=224,
                                                 depth_pad_size=320))
        return dataset, [(i0, i1) for scene, i0, i1, _ in dataset.pairs if scene == 0]
    index = root / "index"
    config = ScanNetConfig(root=str(root / "train"), index_list=str(index / "scene_data/train_list/scannet_all.txt"),
                           index_dir=str(index / "scene_data/train"), intrinsics=str(index / "intrinsics.npz"),
                           image_size=(256, 192))
    dataset = ScanNetPairs(config)
    return dataset, [(f0, f1) for scene, f0, f1, _ in dataset.pairs if scene == "scene0000_00"]


@pytest.mark.parametrize("layout", ["flat", "megadepth", "scannet"])
def test_ground_truth_matches_the_renderer_exactly(tmp_path, layout):
    """The ground truth of every match of the first (training) scene, built by the real loader from the
    written files, agrees with the renderer's own correspondence, cast through the exact (sub-pixel)
    position, to 0.5 px."""
    config = WorldConfig(num_scenes=3, cameras_per_scene=6, image_size=(320, 240), seed=7)
    write_world(tmp_path, config, layout=layout)
    truth = render_scene(config, 0, shared_focal=layout == "scannet")
    scene = Scene(config, np.random.default_rng([config.seed, 0]))  # the scene is drawn first from its rng
    dataset, views = world_dataset(tmp_path, layout)
    checked = 0
    for index, (i0, i1) in enumerate(views):  # scene 0's pairs come first
        batch = default_collate([dataset[index]])
        grid = tuple(size // 8 for size in batch["image0"].shape[2:])
        supervision = coarse_supervision(batch, grid, grid)
        i = supervision.index0
        pixels = cell_pixels(i, grid, 8, torch.float64) * batch["scale0"][0].double()
        K0, K1 = truth.intrinsics[i0], truth.intrinsics[i1]
        cam_to_world = np.linalg.inv(truth.poses[i0])
        rays = np.c_[pixels.numpy(), np.ones(len(i))] @ np.linalg.inv(K0).T @ cam_to_world[:3, :3].T
        depth, _, _ = scene.intersect(cam_to_world[:3, 3], rays)
        points = cam_to_world[:3, 3] + rays * depth[:, None]
        in1 = points @ truth.poses[i1][:3, :3].T + truth.poses[i1][:3, 3]
        projected = (in1 @ K1.T)[:, :2] / in1[:, 2:]
        expected = projected / batch["scale1"][0].double().numpy()  # original -> network pixels
        error = np.abs(supervision.warped0[0, i].double().numpy() - expected).max(-1)
        assert error.max() < 0.5, (index, error.max())
        checked += len(i)
    assert checked > 100


@pytest.mark.parametrize("textures", ["photos", "procedural"])
def test_textures_come_from_photos_or_noise(textures):
    config = WorldConfig(num_pillars=0, textures=textures)
    scene = Scene(config, np.random.default_rng(0))
    sizes = {texture.shape for texture in scene.textures.values()}
    assert sizes == {(768, 768)}  # the 8 m room at 96 px per metre: one texture per face, no repeat
    assert all(texture.std() > 10 for texture in scene.textures.values())  # textured, not flat
    with pytest.raises(ValueError, match=r"textures='paint' is not one of \('procedural', 'photos', 'mixed'\)"):
        Scene(WorldConfig(textures="paint"), np.random.default_rng(0))
