"""Fixtures shared across the test folders: the generated worlds, a trained run, photo folders, an
official-format checkpoint, a COLMAP scene; and the seeds and threads every test starts from."""

import os
import pickle
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from tqdm import tqdm

import train as train_script
from data.colmap import write_colmap_array
from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, generate_world
from evaluation import harness
from geometry.warp import warp_image
from tests.faults_helpers import write_photo_folder
from tests.helpers import WARP
from tests.match_helpers import write_image
from tests.train_helpers import config_of, small

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests run side by side: one thread each, and in their subprocesses
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    # imported here, not at collection: in sys.modules, it would make runpy warn on the stderr of every test that
    # runs `-m data.synthetic` in-process
    from data.synthetic.__main__ import main as synthetic_cli

    assert synthetic_cli(["--out", str(root), "--scenes", "3", "--cameras", "5", "--size", "160x120"]) == 0
    return root


@pytest.fixture
def one_thread():
    """Bitwise-repeatable CPU training: with several threads some kernels sum in a varying order, and the
    first steps of training amplify those last-bit differences."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> Path:
    """last.ckpt of a 2-step run of the tiny model."""
    run_dir = tmp_path_factory.mktemp("trained")
    train_script.train(config_of(small(world, run_dir, "trainer.max_steps=2", "data.val.synthetic=null")))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    from data.synthetic.__main__ import main as synthetic_cli  # not at collection: see `world`

    root = tmp_path_factory.mktemp("faults_data")
    for layout in ("megadepth", "scannet"):
        assert synthetic_cli(["--out", str(root / layout), "--layout", layout, "--scenes", "3", "--cameras", "6",
                               "--size", "160x120"]) == 0
    return {"megadepth": root / "megadepth", "scannet": root / "scannet"}


@pytest.fixture
def _no_progress_bars(monkeypatch):
    """What TQDM_DISABLE=1 does to a fresh process (tqdm reads it on import): a bar's line on stderr is not
    the refusal's. The fault tests' modules use it for every test (pytestmark)."""
    monkeypatch.setattr(harness, "tqdm", partial(tqdm, disable=True))


@pytest.fixture
def photos(tmp_path) -> Path:
    """a.png and b.png (a 160x120 texture and its warp), truth.txt (their ground truth) and link.png, a
    symbolic link to a.png."""
    image = make_texture(120, 160, seed=3)
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.png", warp_image(image, WARP))
    K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
    T = np.eye(4)
    T[0, 3] = 0.5
    np.savetxt(tmp_path / "truth.txt", np.concatenate([K.ravel(), K.ravel(), T.ravel()])[None])
    (tmp_path / "link.png").symlink_to("a.png")
    return tmp_path


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("benchmark") / "photos")


@pytest.fixture
def two_photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.png", make_texture(240, 320, seed=11))
    write_image(folder / "b.png", make_texture(240, 320, seed=12))
    return folder


@pytest.fixture(scope="module")
def official_state_dict() -> dict[str, torch.Tensor]:
    """Random weights named as in an official LoFTR Lightning checkpoint (kornia's names, `matcher.` prefix)."""
    kornia_loftr = pytest.importorskip("kornia.feature.loftr.loftr")
    torch.manual_seed(0)
    return {f"matcher.{k}": v for k, v in kornia_loftr.LoFTR(pretrained=None).state_dict().items()}


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory, official_state_dict) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "official.ckpt"
    torch.save({"epoch": 29, "state_dict": official_state_dict}, path)
    return path


@pytest.fixture(scope="module")
def colmap_scene(tmp_path_factory):
    """The synthetic world as COLMAP would leave it: a sparse model whose 3D points are observed where the
    exact depth says they are visible, the images, and dense depth maps."""
    pycolmap = pytest.importorskip("pycolmap")
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
