"""COLMAP in-house data: a reconstruction of the synthetic world, converted and read by the MegaDepth loader."""

import pickle

import h5py
import numpy as np
import pytest
from torch.utils.data import default_collate

from data.colmap import ColmapConfig, convert_to_megadepth, read_colmap_array, write_colmap_array
from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.synthetic.world import WorldConfig, generate_world
from geometry.ground_truth import coarse_supervision

pycolmap = pytest.importorskip("pycolmap")


def test_colmap_array_round_trip(tmp_path):
    depth = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    write_colmap_array(tmp_path / "d.bin", depth)
    assert np.array_equal(read_colmap_array(tmp_path / "d.bin"), depth)
    (tmp_path / "bad.bin").write_bytes(b"5&7&1&" + b"\0" * 12)
    with pytest.raises(ValueError, match="bad.bin: header says 5x7x1"):
        read_colmap_array(tmp_path / "bad.bin")


@pytest.fixture(scope="module")
def colmap_scene(tmp_path_factory):
    """The synthetic world as COLMAP would leave it: a sparse model whose 3D points are observed where the
    exact depth says they are visible, the images, and dense depth maps."""
    root = tmp_path_factory.mktemp("colmap")
    world = root / "world"
    info = pickle.loads(generate_world(world, WorldConfig(num_scenes=1, cameras_per_scene=10, image_size=(160, 120),
                                                          seed=5))[0].read_bytes())
    Ks = list(info["intrinsics"])  # cameras differ in focal length
    depths = [h5py.File(world / p, "r")["depth"][()] for p in info["depth_paths"]]
    poses = list(info["poses"])  # world -> camera
    (root / "images").mkdir()
    (root / "depth_maps").mkdir()
    (root / "sparse").mkdir()
    reconstruction = pycolmap.Reconstruction()
    for j, K in enumerate(Ks):
        reconstruction.add_camera_with_trivial_rig(pycolmap.Camera(
            model="PINHOLE", width=160, height=120, params=[K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5],
            camera_id=j + 1))  # COLMAP's pixel centres are at +0.5
    keypoints = [[] for _ in poses]
    tracks = []
    for depth, pose, K in zip(depths, poses, Ks):  # points seen from each camera on a grid
        y, x = np.mgrid[4:120:12, 4:160:12]
        z = depth[y, x]
        cam = np.stack([(x - K[0, 2]) / K[0, 0] * z, (y - K[1, 2]) / K[1, 1] * z, z], -1).reshape(-1, 3)
        world_points = (cam - pose[:3, 3]) @ pose[:3, :3]
        for point in world_points:
            track = []
            for j, (depth_j, pose_j, K_j) in enumerate(zip(depths, poses, Ks)):
                p = pose_j[:3, :3] @ point + pose_j[:3, 3]
                u, v = K_j[0, 0] * p[0] / p[2] + K_j[0, 2], K_j[1, 1] * p[1] / p[2] + K_j[1, 2]
                if (
                    p[2] > 0
                    and 0 <= u < 159.5
                    and 0 <= v < 119.5
                    and abs(depth_j[round(v), round(u)] - p[2]) < 0.01 * p[2]
                ):
                    track.append((j, len(keypoints[j])))
                    keypoints[j].append((u + 0.5, v + 0.5))
            tracks.append((point, track))
    for j, pose in enumerate(poses):
        name = info["image_paths"][j].split("/")[-1]
        (root / "images" / name).write_bytes((world / info["image_paths"][j]).read_bytes())
        write_colmap_array(root / "depth_maps" / f"{name}.geometric.bin", depths[j])
        image = pycolmap.Image(name=name, keypoints=np.array(keypoints[j]), camera_id=j + 1, image_id=j + 1)
        reconstruction.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(pose[:3, :3]), pose[:3, 3])
        )
    for point, track in tracks:
        if len(track) >= 2:
            colmap_track = pycolmap.Track()
            for j, index in track:
                colmap_track.add_element(j + 1, index)
            reconstruction.add_point3D(point, colmap_track)
    reconstruction.write(str(root / "sparse"))
    return root, info, depths


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
