"""Benchmarks: the registry and its errors, the official index files, and pairs whose ground truth is checked
against depth (synthetic world) or the written values (HPatches, ScanNet layout, pairs files)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.errors import BadPairError
from data.megadepth import load_scene_info
from data.pair_list import scene_info_records, write_pair_list
from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, generate_world
from evaluation.benchmarks import BENCHMARKS, MEGADEPTH_1500_SCENES, Resize, build_benchmark
from geometry.warp import warp_depth
from tests.hpatches_helpers import write_sequence

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MEGADEPTH_1500 = SHARED / "loftr_test_indices" / "megadepth_test_1500_scene_info"
SCANNET_1500 = SHARED / "loftr_test_indices" / "scannet_test_1500"
SAMPLE = SHARED / "megadepth_sample"


def needs(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is not here")


def test_registry_and_defaults():
    assert set(BENCHMARKS) == {"megadepth1500", "scannet1500", "hpatches", "synthetic", "pairs", "homographies",
                               "multiview"}
    expected = {  # name: (kind, epipolar threshold, resize) from LoFTR
        "megadepth1500": ("pose", 1e-4, Resize(longer_side=840)),
        "scannet1500": ("pose", 5e-4, Resize(size=(640, 480))),
        "hpatches": ("homography", None, Resize(shorter_side=480)),
        "synthetic": ("pose", 1e-4, Resize(longer_side=640)),
        "pairs": ("pose", 1e-4, Resize(longer_side=840)),
        "homographies": ("homography", None, Resize(longer_side=640)),
    }
    for name, (kind, threshold, resize) in expected.items():
        benchmark = build_benchmark(name)
        assert (benchmark.name, benchmark.kind, benchmark.epipolar_threshold, benchmark.resize) == \
            (name, kind, threshold, resize)
    assert build_benchmark("megadepth1500", resize={"longer_side": 1152}).resize.longer_side == 1152
    assert build_benchmark("hpatches").exclude[0] == "i_contruction" and len(build_benchmark("hpatches").exclude) == 8
    with pytest.raises(
        ValueError, match="choose one of megadepth1500, scannet1500, hpatches, synthetic, pairs, homographies"
    ):
        build_benchmark("megadepth")
    with pytest.raises(ValueError, match="no option scene_info.*scene_info_dir"):
        build_benchmark("megadepth1500", scene_info="x")


def test_resize_rules():
    assert Resize(longer_side=840).output_size(1600, 1200) == (840, 624)  # 630 floored to a multiple of 8
    assert Resize(shorter_side=480).output_size(1000, 750) == (640, 480)
    assert Resize(shorter_side=480).output_size(600, 900) == (480, 720)
    assert Resize(size=[640, 480]).output_size(1296, 968) == (640, 480)
    with pytest.raises(ValueError, match="exactly one"):
        Resize(longer_side=840, size=(640, 480))
    with pytest.raises(ValueError, match="exactly one"):
        Resize()


@pytest.mark.parametrize(
    "name, options, option",
    [
        ("megadepth1500", {}, "root"),
        ("megadepth1500", {"root": "TMP"}, "scene_info_dir"),
        ("megadepth1500", {"root": "TMP/nowhere"}, "root"),
        ("megadepth1500", {"root": "TMP", "scene_info_dir": "TMP"}, "scene_info_dir"),  # no 0022_0.1_0.3.npz in it
        ("scannet1500", {}, "root"),
        ("scannet1500", {"root": "TMP"}, "index_dir"),
        ("scannet1500", {"root": "TMP", "index_dir": "TMP"}, "index_dir"),  # no test.npz in it
        ("hpatches", {}, "root"),
        ("hpatches", {"root": "TMP/nowhere"}, "root"),
        ("synthetic", {}, "root"),
        ("synthetic", {"root": "TMP"}, "split_file"),  # no test.txt in it
        ("synthetic", {"root": "TMP", "split_file": "empty.txt"}, "split_file"),
        ("synthetic", {"root": "TMP", "split_file": "missing_scene.txt"}, "split_file"),
        ("pairs", {}, "pairs_file"),
        ("pairs", {"pairs_file": "TMP/nowhere.txt"}, "pairs_file"),
        ("pairs", {"pairs_file": "TMP/empty.txt"}, "image_root"),
        ("homographies", {}, "root"),
        ("homographies", {"root": "TMP/nowhere"}, "root"),
    ],
)
def test_missing_paths_name_the_option(tmp_path, name, options, option):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "missing_scene.txt").write_text("scene_info/nowhere.npz\n")
    benchmark = build_benchmark(name, **{key: value.replace("TMP", str(tmp_path)) for key, value in options.items()})
    with pytest.raises((ValueError, FileNotFoundError), match=f"set `{option}`"):
        benchmark.pairs()  # checked at once, before the first pair is asked for
    with pytest.raises((ValueError, FileNotFoundError), match=f"set `{option}`"):
        benchmark.num_pairs()


def test_megadepth1500_official_index(tmp_path):
    needs(MEGADEPTH_1500)
    assert sorted(MEGADEPTH_1500_SCENES) == sorted(p.stem for p in MEGADEPTH_1500.glob("*.npz"))
    listed = (MEGADEPTH_1500 / "megadepth_test_1500.txt").read_text().split()
    assert tuple(listed) == MEGADEPTH_1500_SCENES
    benchmark = build_benchmark("megadepth1500", root=str(tmp_path), scene_info_dir=str(MEGADEPTH_1500))
    assert benchmark.num_pairs() == 1500
    with pytest.raises(BadPairError, match="megadepth1500: pair 0 .*image not found: .*Undistorted_SfM/0022/images"):
        next(benchmark.pairs())  # the images are not here: the pair and the file are named


def test_megadepth_layout_on_the_real_sample():
    needs(SAMPLE)
    benchmark = build_benchmark("megadepth1500", root=str(SAMPLE), scene_info_dir=str(SAMPLE), scenes=("sample",))
    pair = next(benchmark.pairs())  # the sample's first pair (1474, 1462) is the one whose files are here
    info = load_scene_info(SAMPLE / "sample.npz")
    pose0, pose1 = (np.asarray(info["poses"][i], np.float64) for i in (1474, 1462))
    np.testing.assert_allclose(pair.T_0to1, pose1 @ np.linalg.inv(pose0), atol=1e-12)
    assert pair.group == "sample" and pair.image0.shape == (1600, 1194)


def test_scannet1500_official_index(tmp_path):
    needs(SCANNET_1500)
    benchmark = build_benchmark("scannet1500", root=str(tmp_path), index_dir=str(SCANNET_1500))
    assert benchmark.num_pairs() == 1500
    folder = tmp_path / "scene0707_00" / "color"
    folder.mkdir(parents=True)
    for frame, size in ((15, (640, 480)), (585, (1296, 968))):  # LoFTR's export, and a full-resolution frame
        cv2.imwrite(str(folder / f"{frame}.jpg"), make_texture(size[1], size[0], seed=frame))
    pair = next(benchmark.pairs())
    K = np.load(SCANNET_1500 / "intrinsics.npz")["scene0707_00"]
    rel_pose = np.load(SCANNET_1500 / "test.npz")["rel_pose"][0]
    np.testing.assert_allclose(pair.T_0to1[:3], rel_pose.reshape(3, 4))
    np.testing.assert_allclose(pair.K0, K)
    np.testing.assert_allclose(pair.K1, np.diag([1296 / 640, 968 / 480, 1]) @ K)
    assert pair.group == "scene0707_00" and pair.image1.shape == (968, 1296)
    assert pair.name == "scene0707_00/color/15.jpg scene0707_00/color/585.jpg"


def test_hpatches_benchmark(tmp_path):
    truth = {name: write_sequence(tmp_path, name, seed) for seed, name in enumerate(("i_dc", "i_x", "v_y"))}
    benchmark = build_benchmark("hpatches", root=str(tmp_path))
    pairs = list(benchmark.pairs())
    assert benchmark.num_pairs() == len(pairs) == 10  # i_dc is one of the eight large sequences LoFTR leaves out
    assert {p.group for p in pairs} == {"illumination", "viewpoint"}
    np.testing.assert_array_equal(pairs[-1].H_0to1, truth["v_y"][-1])
    assert len(list(build_benchmark("hpatches", root=str(tmp_path), exclude=()).pairs())) == 15


def test_homography_folder_benchmark(tmp_path):
    for index in range(2):
        cv2.imwrite(str(tmp_path / f"photo{index}.png"), make_texture(300, 400, seed=index))
    benchmark = build_benchmark("homographies", root=str(tmp_path), image_size=(320, 240), pairs_per_image=3)
    pairs = list(benchmark.pairs())
    assert benchmark.num_pairs() == len(pairs) == 6 and len({p.name for p in pairs}) == 6
    for pair in pairs:
        assert pair.image0.shape == pair.image1.shape == (240, 320) and pair.image0.dtype == np.uint8
        # H_0to1 carries image-0 pixels onto image 1 (the harness's convention): warping image 0 by it gives
        # image 1 wherever image 0 covers it
        warped = cv2.warpPerspective(pair.image0, pair.H_0to1, (320, 240))
        covered = cv2.warpPerspective(np.ones_like(pair.image0), pair.H_0to1, (320, 240)) > 0
        assert np.abs(warped.astype(int) - pair.image1)[covered].mean() < 1.0
    again = list(build_benchmark("homographies", root=str(tmp_path), image_size=(320, 240), pairs_per_image=3).pairs())
    assert all(np.array_equal(a.H_0to1, b.H_0to1) for a, b in zip(pairs, again))  # seeded
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .*empty"):
        build_benchmark("homographies", root=str(tmp_path / "empty")).num_pairs()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny world with the test split written as `python -m data.synthetic` writes it."""
    root = tmp_path_factory.mktemp("world")
    infos = generate_world(root, WorldConfig(num_scenes=3, cameras_per_scene=4, image_size=(160, 120)))
    (root / "test.txt").write_text("".join(f"{p.relative_to(root)}\n" for p in infos[-1:]))
    return root


def depth_consistent_share(pair, root: Path, info: dict) -> float:
    """Share of image-0 pixels that the pair's K0, K1, T_0to1 carry onto image-1 pixels of the same depth."""
    import h5py

    depths = []
    for name in pair.name.split():
        index = list(info["image_paths"]).index(name)
        with h5py.File(root / info["depth_paths"][index], "r") as file:
            depths.append(torch.from_numpy(np.asarray(file["depth"], np.float64))[None])
    y, x = np.mgrid[0:120:4, 0:160:4]
    points = torch.from_numpy(np.stack([x.ravel(), y.ravel()], -1)[None].astype(np.float64))
    def as_t(a):
        return torch.from_numpy(np.asarray(a, np.float64))[None]
    valid, _ = warp_depth(points, depths[0], depths[1], as_t(pair.K0), as_t(pair.K1), as_t(pair.T_0to1))
    return float(valid.double().mean())


def test_synthetic_benchmark_ground_truth_agrees_with_depth(world):
    benchmark = build_benchmark("synthetic", root=str(world))
    pairs = list(benchmark.pairs())
    info = load_scene_info(world / "scene_info" / "scene0002.npz")
    assert len(pairs) == benchmark.num_pairs() == len(info["pair_infos"]) > 0
    for pair, (_, overlap, _) in zip(pairs, info["pair_infos"]):
        assert pair.group == "scene0002" and pair.image0.shape == (120, 160) and pair.image0.dtype == np.uint8
        # the pair's geometry maps image 0 into image 1 where the depth maps agree, as much as the world's
        # own overlap score says (computed by the generator from its exact depths and poses)
        assert depth_consistent_share(pair, world, info) == pytest.approx(overlap, abs=0.1)
        assert overlap > 0.1


def test_pairs_file_written_from_the_world_gives_the_same_pairs(world, tmp_path):
    records = scene_info_records(world / "scene_info" / "scene0002.npz")
    write_pair_list(tmp_path / "pairs.txt", records)
    from_file = list(build_benchmark("pairs", pairs_file=str(tmp_path / "pairs.txt"), image_root=str(world)).pairs())
    from_world = list(build_benchmark("synthetic", root=str(world)).pairs())
    assert len(from_file) == len(from_world)
    for a, b in zip(from_file, from_world):
        assert a.name == b.name
        np.testing.assert_array_equal(a.T_0to1, b.T_0to1)
        np.testing.assert_array_equal(a.image1, b.image1)
    limited = build_benchmark("pairs", pairs_file=str(tmp_path / "pairs.txt"), image_root=str(world), max_pairs=1)
    assert limited.num_pairs() == 1
