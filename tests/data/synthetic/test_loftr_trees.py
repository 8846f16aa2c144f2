"""`python -m data.synthetic --layout megadepth|scannet`: LoFTR's data/megadepth and data/scannet trees, at the
paths of LoFTR's docs/TRAINING.md, read by the real loaders and benchmarks with the geometry the renderer drew."""

import functools
import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.scannet import ScanNetConfig, ScanNetPairs
from data.synthetic.__main__ import main
from data.synthetic.manifest import read_world_manifest, world_manifest
from data.synthetic.trees import write_world
from data.synthetic.world import RenderedScene, WorldConfig, each_scene, render_scene
from evaluation.benchmarks import MEGADEPTH_1500_SCENES, build_benchmark

ROOT = Path(__file__).resolve().parents[3]
CAMERAS, SIZE, SEED = 5, (160, 120), 2
# 4 scenes: 0 and 1 train, 2 validates, 3 tests
ARGS = ["--scenes", "4", "--cameras", str(CAMERAS), "--size", "160x120", "--seed", str(SEED)]


def generated(tmp_path_factory, layout: str) -> Path:
    out = tmp_path_factory.mktemp(layout)
    assert main(["--out", str(out), *ARGS, "--layout", layout]) == 0
    return out


@pytest.fixture(scope="module")
def megadepth(tmp_path_factory) -> Path:
    return generated(tmp_path_factory, "megadepth")


@pytest.fixture(scope="module")
def scannet(tmp_path_factory) -> Path:
    return generated(tmp_path_factory, "scannet")


@functools.lru_cache
def truth(index: int, shared_focal: bool = False) -> RenderedScene:
    """What the renderer drew for scene `index` of the fixtures' world."""
    return render_scene(WorldConfig(num_scenes=4, cameras_per_scene=CAMERAS, image_size=SIZE, seed=SEED), index,
                        shared_focal)


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() or path.is_symlink()}


def test_megadepth_tree_sits_at_loftr_paths(megadepth):
    assert (megadepth / "test").is_symlink() and os.readlink(megadepth / "test") == "train"
    assert (megadepth / "test").resolve() == (megadepth / "train").resolve()
    views = set()
    for scene in ("0000", "0001", "0002", "0003"):
        for k in range(CAMERAS):
            views |= {f"train/Undistorted_SfM/{scene}/images/{k}.jpg",
                      f"train/phoenix/S6/zl548/MegaDepth_v1/{scene}/dense0/depths/{k}.h5"}
    test_files = {f"index/megadepth_test_1500_scene_info/{stem}.npz" for stem in MEGADEPTH_1500_SCENES}
    assert files_under(megadepth) == views | test_files | {
        "test", "world.json",
        "index/scene_info_0.1_0.7/0000_0.1_0.7.npz", "index/scene_info_0.1_0.7/0001_0.1_0.7.npz",
        "index/scene_info_val_1500/0002_0.1_0.7.npz",
        "index/trainvaltest_list/train_list.txt", "index/trainvaltest_list/val_list.txt",
        "index/megadepth_test_1500_scene_info/megadepth_test_1500.txt"}
    lists = megadepth / "index" / "trainvaltest_list"
    assert (lists / "train_list.txt").read_text() == "0000_0.1_0.7\n0001_0.1_0.7\n"
    assert (lists / "val_list.txt").read_text() == "0002_0.1_0.7\n"
    listed = (megadepth / "index" / "megadepth_test_1500_scene_info" / "megadepth_test_1500.txt").read_text()
    assert listed.split() == list(MEGADEPTH_1500_SCENES)

    info = pickle.loads((megadepth / "index" / "scene_info_0.1_0.7" / "0000_0.1_0.7.npz").read_bytes())
    assert set(info) == {"image_paths", "depth_paths", "intrinsics", "poses", "pair_infos"}
    assert info["image_paths"][3] == "Undistorted_SfM/0000/images/3.jpg"
    assert info["depth_paths"][3] == "phoenix/S6/zl548/MegaDepth_v1/0000/dense0/depths/3.h5"
    scene = truth(0)
    assert all(np.array_equal(a, b) for a, b in zip(info["poses"], scene.poses))  # world-to-camera
    assert all(np.array_equal(a, b) for a, b in zip(info["intrinsics"], scene.intrinsics))
    with h5py.File(megadepth / "test" / info["depth_paths"][3], "r") as file:
        depth = file["depth"][()]
    assert depth.dtype == np.float32 and np.array_equal(depth, scene.depths[3])  # metres


def test_megadepth_loaders_read_training_and_validation(megadepth):
    index = megadepth / "index"
    common = {"root": str(megadepth / "train"), "longer_side": 160, "depth_pad_size": 160}
    training = MegaDepthPairs(MegaDepthConfig(scene_list=str(index / "trainvaltest_list" / "train_list.txt"),
                                              scene_info_dir=str(index / "scene_info_0.1_0.7"), **common))
    validation = MegaDepthPairs(MegaDepthConfig(scene_list=str(index / "trainvaltest_list" / "val_list.txt"),
                                                scene_info_dir=str(index / "scene_info_val_1500"), **common))
    assert training.scene_names == ["0000_0.1_0.7", "0001_0.1_0.7"]
    assert validation.scene_names == ["0002_0.1_0.7"]
    assert len(training) == len(truth(0).pairs) + len(truth(1).pairs) > 0
    for dataset, scene in ((training, 0), (validation, 2)):
        item = dataset[0]
        _, i0, i1, _ = dataset.pairs[0]
        poses = truth(scene).poses
        assert np.allclose(item["T_0to1"].numpy(), poses[i1] @ np.linalg.inv(poses[i0]), atol=1e-5)
        assert item["image0"].shape == (1, 160, 160) and item["depth0"].shape == (160, 160)


def test_megadepth1500_benchmark_reads_the_test_scene(megadepth):
    benchmark = build_benchmark("megadepth1500", root=str(megadepth / "test"),
                                scene_info_dir=str(megadepth / "index" / "megadepth_test_1500_scene_info"))
    pairs = list(benchmark.pairs())
    scene = truth(3)
    assert len(scene.pairs) >= 1 and len(pairs) == benchmark.num_pairs() >= len(MEGADEPTH_1500_SCENES)
    assert {pair.group for pair in pairs} == set(MEGADEPTH_1500_SCENES)  # every file holds pairs
    expected = {(i0, i1): overlap for i0, i1, overlap in scene.pairs}
    seen, overlaps = set(), []
    for pair in pairs:
        name0, name1 = pair.name.split()
        i0, i1 = (int(Path(name).stem) for name in (name0, name1))
        assert name0 == f"Undistorted_SfM/0003/images/{i0}.jpg" and (i0, i1) in expected
        assert np.allclose(pair.T_0to1, scene.poses[i1] @ np.linalg.inv(scene.poses[i0]), atol=1e-9)
        assert np.array_equal(pair.K0, scene.intrinsics[i0]) and np.array_equal(pair.K1, scene.intrinsics[i1])
        assert pair.image0.shape == (120, 160)
        seen.add((i0, i1))
        overlaps.append(expected[i0, i1])
    assert seen == set(expected)  # every test pair, in files of rising overlap
    assert overlaps == sorted(overlaps)


def test_megadepth_1500_files_share_out_the_pairs_by_overlap(tmp_path):
    config = WorldConfig(num_scenes=3, cameras_per_scene=8, image_size=(64, 48), num_pillars=0)  # fewer textures
    written = write_world(tmp_path, config, layout="megadepth")
    assert [path.stem for path in written["test"]] == list(MEGADEPTH_1500_SCENES)
    chunks = [[overlap for _, overlap, _ in pickle.loads(path.read_bytes())["pair_infos"]] for path in written["test"]]
    overlaps = sorted(overlap for *_, overlap in render_scene(config, 2).pairs)
    assert len(overlaps) >= 7 and sum(map(len, chunks)) == len(overlaps)  # each pair once: five or more
    assert max(map(len, chunks)) - min(map(len, chunks)) <= 1
    assert [overlap for chunk in chunks for overlap in chunk] == overlaps


def scannet_training(scannet: Path, image_size=(160, 120)) -> ScanNetPairs:
    index = scannet / "index"
    return ScanNetPairs(ScanNetConfig(root=str(scannet / "train"),
                                      index_list=str(index / "scene_data" / "train_list" / "scannet_all.txt"),
                                      index_dir=str(index / "scene_data" / "train"),
                                      intrinsics=str(index / "intrinsics.npz"), image_size=image_size))


def test_scannet_tree_sits_at_loftr_paths(scannet):
    expected = {"world.json", "index/intrinsics.npz", "index/scene_data/train/scene0000_00.npz",
                "index/scene_data/train/scene0001_00.npz", "index/scene_data/train_list/scannet_all.txt",
                "index/scannet_test_1500/test.npz", "index/scannet_test_1500/intrinsics.npz",
                "index/scannet_test_1500/scannet_test.txt"}
    for split, scenes in (("train", (0, 1)), ("test", (2, 3))):
        for i in scenes:
            folder = f"{split}/scene{i:04d}_00"
            expected |= {f"{folder}/intrinsic/intrinsic_color.txt", f"{folder}/intrinsic/intrinsic_depth.txt"}
            for k in range(CAMERAS):
                expected |= {f"{folder}/color/{k}.jpg", f"{folder}/depth/{k}.png", f"{folder}/pose/{k}.txt"}
    assert files_under(scannet) == expected
    index = scannet / "index"
    listed = (index / "scene_data" / "train_list" / "scannet_all.txt").read_text()
    assert listed == "scene0000_00.npz\nscene0001_00.npz\n"
    assert (index / "scannet_test_1500" / "scannet_test.txt").read_text() == "test.npz\n"
    assert sorted(np.load(index / "intrinsics.npz").files) == [f"scene{i:04d}_00" for i in range(4)]
    assert sorted(np.load(index / "scannet_test_1500" / "intrinsics.npz").files) == ["scene0002_00", "scene0003_00"]

    scene = truth(1, shared_focal=True)
    train_index = np.load(index / "scene_data" / "train" / "scene0001_00.npz")
    assert sorted(train_index.files) == ["name", "score"]
    assert train_index["name"].tolist() == [[1, 0, i0, i1] for i0, i1, _ in scene.pairs]
    assert np.allclose(train_index["score"], [overlap for *_, overlap in scene.pairs])
    folder = scannet / "train" / "scene0001_00"
    K = np.loadtxt(folder / "intrinsic" / "intrinsic_color.txt")
    assert K.shape == (4, 4) and np.array_equal(K[:3, :3], scene.intrinsics[0])
    assert np.array_equal(np.loadtxt(folder / "intrinsic" / "intrinsic_depth.txt"), K)
    assert np.allclose(np.loadtxt(folder / "pose" / "2.txt"), np.linalg.inv(scene.poses[2]), atol=1e-12)  # cam-to-world
    depth = cv2.imread(str(folder / "depth" / "2.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and np.abs(depth / 1000 - scene.depths[2]).max() < 5e-4 + 1e-6  # mm

    test = np.load(index / "scannet_test_1500" / "test.npz")
    assert sorted(test.files) == ["name", "rel_pose"]
    rows = [(i, i0, i1) for i in (2, 3) for i0, i1, _ in truth(i, shared_focal=True).pairs]
    assert test["name"].tolist() == [[i, 0, i0, i1] for i, i0, i1 in rows]
    assert test["rel_pose"].shape == (len(rows), 12)


def test_scannet_loaders_read_training_and_validation(scannet):
    training = scannet_training(scannet)
    validation = ScanNetPairs(ScanNetConfig(root=str(scannet / "test"),
                                            index_list=str(scannet / "index/scannet_test_1500/scannet_test.txt"),
                                            intrinsics=str(scannet / "index/scannet_test_1500/intrinsics.npz"),
                                            image_size=(160, 120)))
    assert {scene for scene, *_ in training.pairs} == {"scene0000_00", "scene0001_00"}
    assert {scene for scene, *_ in validation.pairs} <= {"scene0002_00", "scene0003_00"} and len(validation) > 0
    for dataset in (training, validation):
        for index, (scene, frame0, frame1, _) in enumerate(dataset.pairs):
            item = dataset[index]
            view = truth(int(scene[5:9]), shared_focal=True)
            poses = view.poses
            assert np.allclose(item["T_0to1"].numpy(), poses[frame1] @ np.linalg.inv(poses[frame0]), atol=1e-5)
            assert np.allclose(item["K0"].numpy(), view.intrinsics[0], atol=1e-4)
            assert item["depth0"].shape == (120, 160) and item["image0"].shape == (1, 120, 160)


def test_scannet1500_benchmark_reads_the_test_scenes(scannet):
    benchmark = build_benchmark("scannet1500", root=str(scannet / "test"),
                                index_dir=str(scannet / "index" / "scannet_test_1500"), intrinsics_size=SIZE)
    pairs = list(benchmark.pairs())
    assert len(pairs) == benchmark.num_pairs() == sum(len(truth(i, True).pairs) for i in (2, 3)) > 0
    for pair in pairs:
        scene, frame0, frame1 = pair.group, *(int(Path(name).stem) for name in pair.name.split())
        view = truth(int(scene[5:9]), shared_focal=True)
        assert np.allclose(pair.T_0to1, view.poses[frame1] @ np.linalg.inv(view.poses[frame0]), atol=1e-12)
        assert np.allclose(pair.K0, view.intrinsics[0])


def config_of(*overrides: str):
    from evaluation.config import evaluate_config, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return evaluate_config(compose("evaluate", overrides=list(overrides)))  # typed, as evaluate.py's main


def test_evaluate_runs_the_benchmarks_verbatim_on_the_trees(megadepth, scannet, tmp_path):
    """The README's evaluate.py arguments, the dataset folders swapped for the generated trees."""
    from evaluation.run import evaluate

    runs = {"megadepth1500": (f"benchmark.root={megadepth}/test",
                              f"benchmark.scene_info_dir={megadepth}/index/megadepth_test_1500_scene_info"),
            "scannet1500": (f"benchmark.root={scannet}/test",
                            f"benchmark.index_dir={scannet}/index/scannet_test_1500",
                            # K describes the generated frames, not LoFTR's 640x480 (README)
                            f"benchmark.intrinsics_size=[{SIZE[0]},{SIZE[1]}]")}
    for name, options in runs.items():
        summary = evaluate(config_of(f"benchmark={name}", *options, "matcher=sift", "max_pairs=2", "plot_pairs=0",
                                     f"out_dir={tmp_path / name}"))
        assert summary["overall"]["pairs"] == 2


def test_world_json_is_written_last_and_read_back(megadepth, scannet, tmp_path):
    for out, layout in ((megadepth, "megadepth"), (scannet, "scannet")):
        manifest = read_world_manifest(out)
        assert manifest == world_manifest(layout, scenes=4, test_scenes=1, cameras=CAMERAS, size=SIZE,
                                          textures="mixed", seed=SEED)
        assert manifest != world_manifest(layout, 4, 1, CAMERAS, SIZE, "mixed", SEED + 1)
        last = max(path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file())
        assert (out / "world.json").stat().st_mtime_ns == last
    assert read_world_manifest(tmp_path) is None  # no world here
    (tmp_path / "world.json").write_text("{not json")
    assert read_world_manifest(tmp_path) is None


def test_regenerating_a_megadepth_tree_replaces_it(tmp_path, capsys):
    config = WorldConfig(num_scenes=3, cameras_per_scene=2, image_size=(64, 48), num_pillars=0)  # fewer textures
    for seed in (0, 1):
        write_world(tmp_path / "w", replace(config, seed=seed), layout="megadepth")
        assert os.readlink(tmp_path / "w" / "test") == "train" and read_world_manifest(tmp_path / "w")["seed"] == seed
    (tmp_path / "x" / "test").mkdir(parents=True)  # a real folder where the link goes: said, not overwritten
    assert main(["--out", str(tmp_path / "x"), "--scenes", "3", "--cameras", "2", "--size", "64x48",
                 "--layout", "megadepth", "--overwrite"]) == 2
    assert "is not the link to train/" in capsys.readouterr().err
    assert read_world_manifest(tmp_path / "x") is None


def test_progress_goes_to_stderr_with_or_without_tqdm(monkeypatch, capsys):
    assert list(each_scene(3, progress=True)) == [0, 1, 2]
    assert "rendering scenes" in capsys.readouterr().err  # tqdm's bar
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    assert list(each_scene(2, progress=True)) == [0, 1]
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["scene 1/2 rendered", "scene 2/2 rendered"] and captured.out == ""
    assert list(each_scene(2, progress=False)) == [0, 1] and capsys.readouterr().err == ""
