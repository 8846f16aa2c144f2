"""ScanNet in LoFTR's layout: the ScanNet-1500 index, and a scene written in the format with exact geometry."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from torch.utils.data import default_collate

from data.errors import BadPairError
from data.scannet import ScanNetConfig, ScanNetPairs
from data.synthetic.texture import make_texture
from geometry.ground_truth import coarse_supervision

TEST_1500 = Path(__file__).resolve().parents[3] / "shared" / "data" / "loftr_test_indices" / "scannet_test_1500"


def test_scannet_1500_index_loads():
    if not TEST_1500.exists():
        pytest.skip("ScanNet-1500 index not here")
    dataset = ScanNetPairs(ScanNetConfig(root="unused", index=(str(TEST_1500 / "test.npz"),),
                                         intrinsics=str(TEST_1500 / "intrinsics.npz")))
    assert len(dataset) == 1500
    scene, frame0, frame1, rel_pose = dataset.pairs[0]
    assert scene == "scene0707_00" and (frame0, frame1) == (15, 585) and rel_pose.shape == (12,)


def write_scene(root: Path, name: str, poses: dict[int, np.ndarray], depth_m: float = 2.0) -> None:
    """A flat wall at `depth_m` seen from `poses` (camera-to-world), in ScanNet's export format."""
    for folder in ("color", "depth", "pose"):
        (root / name / folder).mkdir(parents=True, exist_ok=True)
    image = make_texture(480, 640, seed=4)
    for frame, pose in poses.items():
        cv2.imwrite(str(root / name / "color" / f"{frame}.jpg"), image)
        cv2.imwrite(str(root / name / "depth" / f"{frame}.png"), np.full((480, 640), depth_m * 1000, np.uint16))
        np.savetxt(root / name / "pose" / f"{frame}.txt", pose)


def test_scene_in_the_export_format_gives_exact_ground_truth(tmp_path):
    K = np.array([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    shifted = np.eye(4)
    shifted[0, 3] = -16 * 2.0 / 500  # camera 1 moved left: the wall moves right by 16 px = 2 cells
    write_scene(tmp_path, "scene0001_00", {0: np.eye(4), 10: shifted})
    np.savez(tmp_path / "intrinsics.npz", scene0001_00=K)
    np.savez(tmp_path / "scene0001_00.npz", name=np.array([[1, 0, 0, 10]]), score=np.array([0.5]))
    dataset = ScanNetPairs(ScanNetConfig(root=str(tmp_path), index=(str(tmp_path / "scene0001_00.npz"),),
                                         intrinsics=str(tmp_path / "intrinsics.npz"), min_overlap=0.4))
    item = dataset[0]
    assert item["image0"].shape == (1, 480, 640) and float(item["depth0"][0, 0]) == 2.0
    batch = default_collate([item])
    supervision = coarse_supervision(batch, (60, 80), (60, 80))
    expected = {(r * 80 + c, r * 80 + c + 2) for r in range(60) for c in range(78)}
    assert set(zip(supervision.index0.tolist(), supervision.index1.tolist())) == expected

    skipped = ScanNetPairs(ScanNetConfig(root=str(tmp_path), index=(str(tmp_path / "scene0001_00.npz"),),
                                         intrinsics=str(tmp_path / "intrinsics.npz"), min_overlap=0.6))
    assert len(skipped) == 0


def test_missing_and_broken_files_are_named(tmp_path):
    write_scene(tmp_path, "scene0002_00", {0: np.eye(4), 1: np.full((4, 4), np.inf)})
    np.savez(tmp_path / "intrinsics.npz", scene0002_00=np.eye(3))
    np.savez(tmp_path / "index.npz", name=np.array([[2, 0, 0, 1], [2, 0, 0, 7]]))
    config = ScanNetConfig(root=str(tmp_path), index=(str(tmp_path / "index.npz"),),
                           intrinsics=str(tmp_path / "intrinsics.npz"))
    dataset = ScanNetPairs(config)
    with pytest.raises(ValueError, match=r"pose/1.txt is not finite"):
        dataset[0]
    with pytest.raises(
        BadPairError, match=r"ScanNet pair 1 \(scene0002_00, frames 0, 7\): image not found: .*color/7.jpg"
    ):
        dataset[1]
    np.savez(tmp_path / "other.npz", name=np.array([[3, 0, 0, 1]]))
    with pytest.raises(ValueError, match="no intrinsics for scene0003_00"):
        ScanNetPairs(
            ScanNetConfig(
                root=str(tmp_path), index=(str(tmp_path / "other.npz"),), intrinsics=str(tmp_path / "intrinsics.npz")
            )
        )
