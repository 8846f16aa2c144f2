"""MegaDepth in LoFTR's scene-info layout: the official test indices, the real sample pair, bad files."""

import pickle
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from data.errors import BadPairError, SkipBadPairs
from data.io import read_depth_h5
from data.megadepth import MegaDepthConfig, MegaDepthPairs, load_scene_info
from data.synthetic.world import WorldConfig, generate_world
from geometry.ground_truth import coarse_supervision
from geometry.warp import warp_depth
from utils.images import read_grayscale
from utils.resize import resized_size

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
INDICES = SHARED / "loftr_test_indices" / "megadepth_test_1500_scene_info"
SAMPLE = SHARED / "megadepth_sample"


def needs(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is not here")


def test_megadepth_1500_indices_load(tmp_path):
    needs(INDICES)
    files = sorted(str(p) for p in INDICES.glob("*.npz"))
    assert len(files) == 5
    dataset = MegaDepthPairs(MegaDepthConfig(root=str(tmp_path), scene_info=tuple(files)))
    assert len(dataset) == 1500  # 300 pairs per file: MegaDepth-1500
    scene, i0, i1, overlap = dataset.pairs[0]
    assert dataset.scenes[scene]["image_paths"][i0].startswith("Undistorted_SfM/")
    narrow = MegaDepthPairs(
        MegaDepthConfig(root=str(tmp_path), scene_info=tuple(files), min_overlap=0.3, max_overlap=0.5)
    )
    assert 0 < len(narrow) < 1500 and all(0.3 <= p[3] <= 0.5 for p in narrow.pairs)


def sample_dataset(**overrides) -> MegaDepthPairs:
    needs(SAMPLE)
    config = MegaDepthConfig(
        root=str(SAMPLE), scene_info=(str(SAMPLE / "sample.npz"),), min_overlap=0.6, max_overlap=0.65, **overrides
    )
    return MegaDepthPairs(config)


def test_real_pair_loads_in_the_batch_contract():
    dataset = sample_dataset()
    assert len(dataset) >= 1
    item = dataset[0]
    assert item["image0"].shape == (1, 840, 840) and item["mask0"].shape == (840, 840)
    # 1194 x 1600 (portrait) -> 624 x 840 on an 840 square; 1242 x 827 (landscape) -> 840 x 560
    assert item["mask0"].any(0).sum() == 624 and item["mask0"].any(1).sum() == 840
    assert item["mask1"].any(0).sum() == 840 and item["mask1"].any(1).sum() == 552
    assert torch.allclose(item["scale0"], torch.tensor([1194 / 624, 1600 / 840]))
    assert item["depth0"].shape == (2000, 2000) and item["depth0"][:1600, :1194].gt(0).any()
    assert torch.allclose(item["T_0to1"] @ item["T_1to0"], torch.eye(4), atol=1e-5)

    batch = default_collate([item])
    grid0 = tuple(s // 8 for s in batch["image0"].shape[2:])
    supervision = coarse_supervision(batch, grid0, grid0)
    assert len(supervision.index0) > 500


def test_resize_rule():
    assert resized_size(1600, 1200, 840, 8) == (840, 630 // 8 * 8)
    assert resized_size(100, 1000, 840, 8) == (80, 840)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_scene_info(tmp_path / "nowhere.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, image_paths=np.array(["a.jpg"]))
    with pytest.raises(ValueError, match="bad.npz lacks depth_paths"):
        load_scene_info(bad)
    needs(SAMPLE)
    info = load_scene_info(SAMPLE / "sample.npz")
    info["image_paths"] = np.array(info["image_paths"], dtype=object)
    (i0, i1), *_ = info["pair_infos"][0]
    info["image_paths"][i0] = "missing.jpg"
    scene = tmp_path / "scene.npz"
    with open(scene, "wb") as file:
        pickle.dump(info, file)  # how LoFTR's scene-info files are written
    dataset = MegaDepthPairs(
        MegaDepthConfig(root=str(SAMPLE), scene_info=(str(scene),), min_overlap=0.6, max_overlap=0.65)
    )
    with pytest.raises(BadPairError, match=r"scene.npz: pair 0 .*image not found: .*missing.jpg"):
        dataset[0]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    info["image_paths"][i0] = str(corrupt)
    with open(scene, "wb") as file:
        pickle.dump(info, file)  # how LoFTR's scene-info files are written
    with pytest.raises(ValueError, match="corrupt.jpg"):
        MegaDepthPairs(MegaDepthConfig(root=str(SAMPLE), scene_info=(str(scene),), min_overlap=0.6, max_overlap=0.65))[
            0
        ]


def test_augmentation_changes_images_not_depth_nor_geometry():
    from data.augment import PhotometricAugmentation, PhotometricConfig

    plain = sample_dataset()[0]
    strong = PhotometricConfig(brightness_contrast_p=1.0, color_jitter_p=1.0, noise_p=1.0)
    augmented = MegaDepthPairs(sample_dataset().config, augment=PhotometricAugmentation(strong))[0]
    assert not torch.equal(plain["image0"], augmented["image0"])
    for key in ("depth0", "depth1", "K0", "K1", "T_0to1", "scale0", "mask1"):
        assert torch.equal(plain[key], augmented[key])


def test_bad_root_index_and_pose_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="set `root` of the megadepth dataset"):
        MegaDepthPairs(MegaDepthConfig(root=str(tmp_path / "nowhere"), scene_info=()))
    needs(SAMPLE)
    info = load_scene_info(SAMPLE / "sample.npz")
    (i0, i1), overlap, central = info["pair_infos"][0]
    outside = dict(info, pair_infos=[((i0, 99999), overlap, central)])
    (tmp_path / "outside.npz").write_bytes(pickle.dumps(outside))
    with pytest.raises(ValueError, match=r"outside.npz: pair \(1474, 99999\) points to image 99999"):
        MegaDepthPairs(MegaDepthConfig(root=str(SAMPLE), scene_info=(str(tmp_path / "outside.npz"),)))
    poses = np.array(info["poses"], dtype=object)
    poses[i0] = poses[i0] * 2.0  # a scaled rotation is no rigid transform
    (tmp_path / "scaled.npz").write_bytes(pickle.dumps(dict(info, poses=poses, pair_infos=[info["pair_infos"][0]])))
    dataset = MegaDepthPairs(MegaDepthConfig(root=str(SAMPLE), scene_info=(str(tmp_path / "scaled.npz"),)))
    with pytest.raises(
        ValueError, match=r"scaled.npz: pair 0 \(images 1474, 1462\): pose of image 1474 .* not a rigid"
    ):
        dataset[0]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    infos = generate_world(root, WorldConfig(num_scenes=1, cameras_per_scene=5, image_size=(160, 120)))
    return root, infos[0]


def test_nan_depth_names_the_file_and_the_pair(tiny_world, tmp_path):
    root, info_path = tiny_world
    dataset = MegaDepthPairs(MegaDepthConfig(root=str(root), scene_info=(str(info_path),), longer_side=160))
    _, i0, i1, _ = dataset.pairs[1]
    broken = tmp_path / "nan.h5"
    depth = read_depth_h5(root / dataset.scenes[0]["depth_paths"][i0],
                          read_grayscale(root / dataset.scenes[0]["image_paths"][i0]).shape)
    depth[10:20, 10:20] = np.nan
    with h5py.File(broken, "w") as file:
        file.create_dataset("depth", data=depth)
    info = dict(dataset.scenes[0])
    info["depth_paths"] = np.array(info["depth_paths"], dtype=object)
    info["depth_paths"][i0] = str(broken)  # an absolute path wins over the root
    (tmp_path / "scene.npz").write_bytes(pickle.dumps(info))
    broken_set = MegaDepthPairs(
        MegaDepthConfig(root=str(root), scene_info=(str(tmp_path / "scene.npz"),), longer_side=160)
    )
    with pytest.raises(BadPairError, match=rf"scene.npz: pair 1 \(images {i0}, {i1}\): depth map .*nan.h5 has 100 NaN"):
        broken_set[1]


def test_bad_pairs_are_skipped_and_counted_when_configured(tiny_world, tmp_path):
    root, info_path = tiny_world
    info = load_scene_info(info_path)
    info["image_paths"] = np.array(info["image_paths"], dtype=object)
    (i0, _), *_ = info["pair_infos"][0]
    info["image_paths"][i0] = "gone.jpg"
    (tmp_path / "scene.npz").write_bytes(pickle.dumps(info))
    dataset = MegaDepthPairs(
        MegaDepthConfig(root=str(root), scene_info=(str(tmp_path / "scene.npz"),), longer_side=160)
    )
    bad = [index for index, (_, a, b, _) in enumerate(dataset.pairs) if i0 in (a, b)]
    good = [index for index in range(len(dataset)) if index not in bad]
    assert bad and good
    skipping = SkipBadPairs(dataset)
    with pytest.warns(RuntimeWarning, match=r"skipped a bad pair \(\d so far in this process\): .*gone.jpg") as caught:
        item = skipping[bad[0]]
    assert "(1 so far" in str(caught[0].message)
    replacement = next(index for index in range(bad[0], bad[0] + len(dataset)) if index % len(dataset) in good)
    assert item["pair_names"] == dataset[replacement % len(dataset)]["pair_names"]
    with pytest.warns(RuntimeWarning):
        for index in range(len(dataset)):
            skipping[index]
    assert skipping.skipped == set(bad)
    assert skipping.scene_indices() == dataset.scene_indices()


@pytest.fixture(scope="module")
def crop_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("crop_world")
    config = WorldConfig(num_scenes=1, cameras_per_scene=10, image_size=(320, 240), seed=1, min_overlap=0.3)
    infos = generate_world(root, config)
    return root, infos[0]


def crop_config(root, info_path, **overrides) -> MegaDepthConfig:
    # network inputs at half the original size, windows of 96x64 network pixels = 192x128 original pixels
    settings = dict(longer_side=160, pad_to_square=False, depth_pad_size=320, crop_size=(96, 64)) | overrides
    return MegaDepthConfig(root=str(root), scene_info=(str(info_path),), **settings)


def test_crops_give_the_ground_truth_of_the_whole_pair(crop_world):
    """A crop is an image of the same camera: the ground truth of the cropped pair equals that of the whole
    pair at the same pixels."""
    root, info_path = crop_world
    whole = MegaDepthPairs(crop_config(root, info_path, crop_size=None, longer_side=320))  # scale 1: original pixels
    cropped = MegaDepthPairs(crop_config(root, info_path))
    for index in range(min(len(cropped), 6)):
        crop, full = cropped[index], whole[index]
        assert crop["image0"].shape == (1, 64, 96) and crop["mask0"].all()
        assert torch.equal(crop["scale0"], torch.tensor([2.0, 2.0]))
        corners = [(full[f"K{side}"][:2, 2] - crop[f"K{side}"][:2, 2]).round() for side in (0, 1)]
        for side in (0, 1):
            x, y = corners[side].long().tolist()
            assert torch.equal(crop[f"depth{side}"][:128, :192], full[f"depth{side}"][y : y + 128, x : x + 192])
            _, i0, i1, _ = whole.pairs[index]
            original = read_grayscale(root / whole.scenes[0]["image_paths"][(i0, i1)[side]])[y : y + 128, x : x + 192]
            expected = cv2.resize(original, (96, 64), interpolation=cv2.INTER_AREA) / 255.0
            assert np.abs(crop[f"image{side}"][0].numpy() - expected).max() < 1e-6
        supervision = coarse_supervision(default_collate([crop]), (8, 12), (8, 12), 8)
        # the crop's cell centres in the whole image 0, warped through the whole pair's depth and pose
        cells = torch.stack(torch.meshgrid(torch.arange(8), torch.arange(12), indexing="ij"), -1).reshape(1, -1, 2)
        pixels0 = (cells.flip(-1) * 8 * 2 + corners[0]).double()
        pair = {key: full[key][None].double() for key in ("depth0", "depth1", "K0", "K1", "T_0to1")}
        whole_valid, landed = warp_depth(
            pixels0,
            pair["depth0"][:, :240, :320],
            pair["depth1"][:, :240, :320],
            pair["K0"],
            pair["K1"],
            pair["T_0to1"],
        )
        in_crop1 = (landed[0] - corners[1]) / 2  # network pixels of crop 1
        well_inside = ((in_crop1 >= 2) & (in_crop1 <= torch.tensor([96 - 3, 64 - 3]))).all(-1)
        valid = supervision.warped0_valid[0]
        assert valid.any() and not (valid & ~whole_valid[0]).any()
        assert torch.equal(valid[well_inside], whole_valid[0][well_inside])
        assert torch.allclose(supervision.warped0[0][valid].double(), in_crop1[valid], atol=1e-3)


def test_crops_overlap_and_change_with_the_epoch(crop_world):
    root, info_path = crop_world
    dataset = MegaDepthPairs(crop_config(root, info_path))
    with_matches = [
        len(coarse_supervision(default_collate([dataset[i]]), (8, 12), (8, 12), 8).index0) > 0
        for i in range(len(dataset))
    ]
    assert len(with_matches) >= 5 and all(with_matches)  # windows around a shared point see the same surfaces
    first = dataset[0]["K0"]
    assert torch.equal(first, dataset[0]["K0"])  # the same draw for the same (seed, epoch, index)
    draws = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        draws.add(tuple(dataset[0]["K0"][:2, 2].tolist()))
    assert len(draws) > 1


def test_crop_size_is_checked(crop_world):
    root, info_path = crop_world
    with pytest.raises(ValueError, match="crop_size must be .* multiples of 8"):
        crop_config(root, info_path, crop_size=(100, 64))
    too_large = MegaDepthPairs(crop_config(root, info_path, crop_size=(320, 64)))  # 640 original pixels wide
    with pytest.raises(
        BadPairError, match="a crop of 640x128 original pixels does not fit an image of 320x240: lower crop_size"
    ):
        too_large[0]
