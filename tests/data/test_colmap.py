"""COLMAP in-house data: a reconstruction of the synthetic world, converted and read by the MegaDepth loader."""

import pickle

import h5py
import numpy as np
import pytest
from torch.utils.data import default_collate

from data.colmap import ColmapConfig, convert_to_megadepth, read_colmap_array, write_colmap_array
from data.megadepth import MegaDepthConfig, MegaDepthPairs
from geometry.ground_truth import coarse_supervision

pycolmap = pytest.importorskip("pycolmap")


def test_colmap_array_round_trip(tmp_path):
    depth = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    write_colmap_array(tmp_path / "d.bin", depth)
    assert np.array_equal(read_colmap_array(tmp_path / "d.bin"), depth)
    (tmp_path / "bad.bin").write_bytes(b"5&7&1&" + b"\0" * 12)
    with pytest.raises(ValueError, match="bad.bin: header says 5x7x1"):
        read_colmap_array(tmp_path / "bad.bin")


def test_converted_reconstruction_reads_like_megadepth(colmap_scene, tmp_path):
    root, info, depths = colmap_scene
    config = ColmapConfig(
        model=str(root / "sparse"),
        images=str(root / "images"),
        depth_maps=str(root / "depth_maps"),
        min_overlap=0.05,
        min_shared_points=5,
    )
    scene_info = convert_to_megadepth(config, tmp_path / "out", "house")
    converted = pickle.loads(scene_info.read_bytes())
    assert len(converted["pair_infos"]) >= 2
    for k in range(len(depths)):  # poses, intrinsics and depth survive the round trip exactly
        assert np.allclose(converted["poses"][k], info["poses"][k], atol=1e-6)
        assert np.allclose(converted["intrinsics"][k], info["intrinsics"][k])
        stored = h5py.File(tmp_path / "out" / converted["depth_paths"][k], "r")["depth"][()]
        assert np.array_equal(stored, depths[k])
    dataset = MegaDepthPairs(
        MegaDepthConfig(root=str(tmp_path / "out"), scene_info=(str(scene_info),), longer_side=160, depth_pad_size=160)
    )
    batch = default_collate([dataset[0]])
    assert len(coarse_supervision(batch, (20, 20), (20, 20)).index0) > 10


def test_distorted_cameras_and_missing_files_are_refused(colmap_scene, tmp_path):
    root, _, _ = colmap_scene
    config = ColmapConfig(
        model=str(root / "sparse"), images=str(tmp_path / "nowhere"), depth_maps=str(root / "depth_maps")
    )
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert_to_megadepth(config, tmp_path / "out", "house")
    reconstruction = pycolmap.Reconstruction(str(root / "sparse"))
    for camera in reconstruction.cameras.values():
        params = camera.params
        camera.model = "SIMPLE_RADIAL"
        camera.params = [params[0], params[2], params[3], 0.1]
    (tmp_path / "radial").mkdir()
    reconstruction.write(str(tmp_path / "radial"))
    config = ColmapConfig(
        model=str(tmp_path / "radial"), images=str(root / "images"), depth_maps=str(root / "depth_maps")
    )
    with pytest.raises(ValueError, match="SIMPLE_RADIAL: undistort"):
        convert_to_megadepth(config, tmp_path / "out2", "house")
