"""ScanNet pairs in the layout of LoFTR's preprocessed data.

An index `.npz` holds `name` rows [scene, sub-scene, frame0, frame1] and, for training indices, an overlap
`score`; the ScanNet-1500 test index holds `rel_pose` (the top 3x4 of T_0to1) instead. An `intrinsics.npz`
maps 'sceneXXXX_YY' to K (3x3 or 9 values) of the exported 640x480 frames. Under the root, each scene has
color/{frame}.jpg, depth/{frame}.png (millimetres, 0 = unknown) and pose/{frame}.txt (4x4 camera-to-world).
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from geometry.poses import pose_from_rows, relative_pose_of_camera_to_world
from utils.images import read_grayscale

from .augment import PhotometricAugmentation
from .errors import loading_pair
from .io import check_depth_png_header, check_image_header, listed_files, naming
from .untrusted import UntrustedPickleError, load_index, read_small_numbers


@dataclass
class ScanNetConfig:
    root: str  # folder holding the scene folders
    intrinsics: str  # intrinsics.npz
    index: tuple[str, ...] = ()  # index .npz files (one per training scene, or ScanNet-1500's test.npz)
    index_list: str | None = None  # and/or a text file naming them, one per line (LoFTR's TRAIN_LIST_PATH)
    index_dir: str | None = None  # where the listed names are (LoFTR's TRAIN_NPZ_ROOT); default: the list's folder
    min_overlap: float = 0.0  # LoFTR trains on score in [0.4, 0.8]; the test index has no score
    max_overlap: float = 1.0
    image_size: tuple[int, int] = (640, 480)  # (width, height) of the network input (LoFTR)
    trust_index: bool = False  # read pickled objects in the index files with plain pickle (only files you trust)


def read_depth_png(path: Path, image_shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 depth in metres from a 16-bit PNG in millimetres; 0 where unknown. Its declared size may
    not exceed its colour image's `image_shape` (H, W) (ScanNet's depth is 640x480, its colour 1296x968 or, in
    LoFTR's export, 640x480): checked from the header before anything is decoded."""
    check_depth_png_header(path, image_shape)
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.ndim != 2:
        raise ValueError(f"cannot read depth map {path} as a single-channel 16-bit PNG")
    return depth.astype(np.float32) / 1000.0


# 16 numbers in text, as SensReader writes them, take under 1 kB: a pose file 64 times that size is not one
MAX_POSE_BYTES = 64 * 1024


def check_pose_file(path: Path) -> None:
    """FileNotFoundError or ValueError naming `path` unless it is a regular file of at most MAX_POSE_BYTES (a
    FIFO would make the loader wait for ever, a large file read without end); reads nothing."""
    if not path.exists():
        raise FileNotFoundError(f"pose not found: {path}")
    if not path.is_file():
        raise ValueError(f"pose {path} is not a regular file (a device, pipe or folder): give a 4x4 text file")
    if path.stat().st_size > MAX_POSE_BYTES:
        raise ValueError(f"pose {path} is larger than {MAX_POSE_BYTES} bytes, more than a 4x4 pose can need: is "
                         f"it the right file?")


def read_pose(path: Path) -> np.ndarray:
    """4x4 camera-to-world pose from a text file; ScanNet marks failed tracking with inf/nan."""
    check_pose_file(path)
    try:
        pose = read_small_numbers(path, MAX_POSE_BYTES).reshape(4, 4)
    except ValueError as error:
        raise ValueError(f"cannot read a 4x4 pose from {path}: {error}") from None
    if not np.isfinite(pose).all():
        raise ValueError(f"pose {path} is not finite (ScanNet marks lost tracking so); drop the pair from the index")
    return pose


def _load_npz(path: str | Path, keys: tuple[str, ...], trusted: bool) -> dict:
    """The arrays of an np.savez archive, object arrays read without running pickled code unless `trusted`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file not found: {path}")
    try:
        content = load_index(path, trusted)
    except UntrustedPickleError:
        raise
    except Exception as error:
        raise ValueError(f"cannot read index file {path}: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"index file {path} is not an np.savez archive")
    missing = [key for key in keys if key not in content]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (has {', '.join(sorted(content))})")
    return content


class ScanNetPairs(Dataset):
    """ScanNet pairs; items follow data/batch.py (no padding: every frame has the same size)."""

    def __init__(self, config: ScanNetConfig, augment: PhotometricAugmentation | None = None):
        self.config = config
        self.augment = augment
        self.root = Path(config.root)
        self.intrinsics = _load_npz(config.intrinsics, (), config.trust_index)
        self.pairs: list[tuple[str, int, int, np.ndarray | None]] = []  # (scene, frame0, frame1, rel_pose)
        self.index_files = list(config.index)
        if config.index_list is not None:
            self.index_files += listed_files(config.index_list, config.index_dir)
        if not self.index_files:
            raise ValueError("scannet dataset: no index files; set `index` or `index_list`")
        for path in self.index_files:
            index = _load_npz(path, ("name",), config.trust_index)
            scores = index.get("score")
            rel_poses = index.get("rel_pose")
            for row, (scene, sub, frame0, frame1) in enumerate(index["name"]):
                if scores is not None and not config.min_overlap <= scores[row] <= config.max_overlap:
                    continue
                name = f"scene{int(scene):04d}_{int(sub):02d}"
                if name not in self.intrinsics:
                    raise ValueError(f"{config.intrinsics} has no intrinsics for {name} (from {path})")
                rel_pose = None if rel_poses is None else rel_poses[row]
                self.pairs.append((name, int(frame0), int(frame1), rel_pose))

    def __len__(self) -> int:
        return len(self.pairs)

    def check_files(self) -> None:
        """FileNotFoundError or ValueError naming the file and the pair's scene when a colour image, depth map or
        pose (training indices without `rel_pose`) that a pair reads is missing or does not start as its format
        does (data/io.py): headers only, each frame once."""
        checked: set[tuple[str, int]] = set()
        for scene, frame0, frame1, rel_pose in self.pairs:
            for frame in (frame0, frame1):
                if (scene, frame) in checked:
                    continue
                checked.add((scene, frame))
                folder = self.root / scene
                with naming(f"ScanNet {scene}, frames {frame0}, {frame1}"):
                    check_image_header(folder / "color" / f"{frame}.jpg")
                    check_depth_png_header(folder / "depth" / f"{frame}.png")
                    if rel_pose is None:
                        check_pose_file(folder / "pose" / f"{frame}.txt")

    def scene_indices(self) -> list[list[int]]:
        """Dataset indices grouped by scene, for `SceneBalancedSampler`."""
        groups: dict[str, list[int]] = {}
        for index, (scene, *_rest) in enumerate(self.pairs):
            groups.setdefault(scene, []).append(index)
        return list(groups.values())

    def __getitem__(self, index: int) -> dict:
        scene, frame0, frame1, rel_pose = self.pairs[index]
        with loading_pair(f"ScanNet pair {index} ({scene}, frames {frame0}, {frame1})"):
            return self._load(index, scene, frame0, frame1, rel_pose)

    def _load(self, index: int, scene: str, frame0: int, frame1: int, rel_pose: np.ndarray | None) -> dict:
        width, height = self.config.image_size
        K = torch.as_tensor(np.asarray(self.intrinsics[scene], np.float32).reshape(3, 3))
        item = {}
        for side, frame in enumerate((frame0, frame1)):
            folder = self.root / scene
            image = read_grayscale(folder / "color" / f"{frame}.jpg")
            depth = read_depth_png(folder / "depth" / f"{frame}.png", image.shape)
            if self.augment is not None:
                image = self.augment(image, index, side)
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            item[f"image{side}"] = torch.from_numpy(resized.astype(np.float32) / 255.0)[None]
            item[f"mask{side}"] = torch.ones(height, width, dtype=torch.bool)
            # geometry lives in the frame of the depth map and of K (640x480 in LoFTR's export)
            item[f"scale{side}"] = torch.tensor([depth.shape[1] / width, depth.shape[0] / height])
            item[f"depth{side}"] = torch.from_numpy(depth)
            item[f"K{side}"] = K.clone()
        if rel_pose is not None:
            T_0to1 = pose_from_rows(rel_pose)
        else:
            pose0, pose1 = (read_pose(self.root / scene / "pose" / f"{f}.txt") for f in (frame0, frame1))
            T_0to1 = relative_pose_of_camera_to_world(pose0, pose1)
        item["T_0to1"] = torch.from_numpy(T_0to1.astype(np.float32))
        item["T_1to0"] = torch.from_numpy(np.linalg.inv(T_0to1).astype(np.float32))
        item["pair_names"] = (f"{scene}/color/{frame0}.jpg", f"{scene}/color/{frame1}.jpg")
        item["dataset_name"] = "ScanNet"
        item["scene_name"] = scene
        return item
