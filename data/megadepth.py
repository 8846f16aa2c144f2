"""MegaDepth pairs in the layout of LoFTR's preprocessed scene-info files.

A scene-info file is a pickled dict (read by data/untrusted.py, which refuses pickled code) with `image_paths`
and `depth_paths` (relative to a root folder; None for images without a pair), `intrinsics` (3x3), `poses`
(4x4 world-to-camera) and `pair_infos`: ((i0, i1), overlap score, central matches).
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from geometry.poses import relative_pose
from utils.images import read_grayscale
from utils.resize import resized_size

from .augment import PhotometricAugmentation
from .crop import checked_crop_size, covisible_windows, crop_view
from .errors import loading_pair
from .io import check_depth_h5_header, check_image_header, listed_files, naming, read_depth_h5
from .untrusted import UntrustedPickleError, load_index


@dataclass
class MegaDepthConfig:
    root: str  # folder the scene-info image and depth paths are relative to
    scene_info: tuple[str, ...] = ()  # scene-info .npz files
    scene_list: str | None = None  # and/or a text file naming them, one per line (LoFTR's TRAIN_LIST_PATH)
    scene_info_dir: str | None = None  # where the listed names are (LoFTR's TRAIN_NPZ_ROOT); default: the list's folder
    min_overlap: float = 0.0  # LoFTR trains on overlap in [0.1, 0.7] (its MIN/MAX_OVERLAP_SCORE)
    max_overlap: float = 1.0
    longer_side: int = 840  # LoFTR: 840 for training, 840 or 1152 for testing
    divisible_by: int = 8  # the coarse stride: network inputs are multiples of it
    pad_to_square: bool = True  # pad to longer_side x longer_side with a mask, so pairs batch together
    depth_pad_size: int = 2000  # depth maps (original resolution) are zero-padded to this square to batch
    # Training at full resolution on a budget: (width, height) network-input windows of each pair, cut at the
    # scale `longer_side` gives, image 1's where image 0's lands (data/crop.py); None: whole images
    crop_size: tuple[int, int] | None = None
    seed: int = 0  # crop draws come from (seed, epoch, pair index)
    trust_index: bool = False  # read the scene-info files with plain pickle (only for files you trust)

    def __post_init__(self):
        self.crop_size = checked_crop_size(self.crop_size, self.divisible_by)


SCENE_INFO_KEYS = ("image_paths", "depth_paths", "intrinsics", "poses", "pair_infos")
# LoFTR's assets/megadepth_test_1500_scene_info/megadepth_test_1500.txt, in its order (300 pairs each): the
# MegaDepth-1500 scene-info file stems
MEGADEPTH_1500_SCENES = ("0022_0.1_0.3", "0015_0.1_0.3", "0015_0.3_0.5", "0022_0.3_0.5", "0022_0.5_0.7")


def load_scene_info(path: str | Path, trusted: bool = False) -> dict:
    """The scene-info dict of `path` (a pickled dict as LoFTR writes them, a dict saved with np.save, or an
    np.savez archive), pickled code refused unless `trusted` (data/untrusted.py)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scene-info file not found: {path}")
    try:
        info = load_index(path, trusted)
        if isinstance(info, np.ndarray) and info.dtype == object and info.ndim == 0:
            info = info.item()  # a dict saved with np.save
        info = dict(info.items())
    except UntrustedPickleError:
        raise
    except Exception as error:
        raise ValueError(f"cannot read scene-info file {path} as a dict: {error}") from None
    missing = [key for key in SCENE_INFO_KEYS if key not in info]
    if missing:
        raise ValueError(f"scene-info file {path} lacks {', '.join(missing)} (has {', '.join(sorted(info))})")
    return info


def matrix_array(matrices: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array of matrices, the form of `intrinsics` and `poses` in scene-info files."""
    out = np.empty(len(matrices), dtype=object)
    for index, matrix in enumerate(matrices):
        out[index] = matrix
    return out


def prepare_image(image: np.ndarray, config: MegaDepthConfig, size: tuple[int, int] | None = None
                  ) -> dict[str, torch.Tensor]:
    """A uint8 (H, W) image as the network input: resized, padded, with its mask and scale. `size`: (width,
    height) to resize to exactly, unpadded (a crop); None: by `longer_side`, padded as configured."""
    height, width = image.shape
    new_w, new_h = size if size is not None else resized_size(width, height, config.longer_side, config.divisible_by)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out_h, out_w = (config.longer_side, config.longer_side) if config.pad_to_square and size is None else (new_h, new_w)
    step = config.divisible_by
    out_h, out_w = -(-out_h // step) * step, -(-out_w // step) * step  # padded up to multiples of the stride
    canvas = np.zeros((out_h, out_w), np.float32)
    canvas[:new_h, :new_w] = resized / 255.0
    mask = np.zeros((out_h, out_w), bool)
    mask[:new_h, :new_w] = True
    return {
        "image": torch.from_numpy(canvas)[None],
        "mask": torch.from_numpy(mask),
        "scale": torch.tensor([width / new_w, height / new_h], dtype=torch.float32),
    }


def pad_depth(depth: np.ndarray, size: int, path: str) -> torch.Tensor:
    if depth.shape[0] > size or depth.shape[1] > size:
        raise ValueError(f"depth map {path} of shape {depth.shape} exceeds depth_pad_size {size}")
    padded = np.zeros((size, size), np.float32)
    padded[: depth.shape[0], : depth.shape[1]] = depth
    return torch.from_numpy(padded)


class MegaDepthPairs(Dataset):
    """Pairs of one or more MegaDepth scenes, filtered by overlap; items follow data/batch.py."""

    def __init__(self, config: MegaDepthConfig, augment: PhotometricAugmentation | None = None):
        self.config = config
        self.augment = augment
        self.epoch = 0
        self.root = Path(config.root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"MegaDepth root {self.root} does not exist: set `root` of the megadepth dataset "
                                    f"to the folder that the scene-info image and depth paths are relative to")
        self.scene_files = list(config.scene_info)
        if config.scene_list is not None:
            self.scene_files += listed_files(config.scene_list, config.scene_info_dir)
        if not self.scene_files:
            raise ValueError("megadepth dataset: no scene-info files; set `scene_info` or `scene_list`")
        self.scenes = [load_scene_info(path, config.trust_index) for path in self.scene_files]
        self.scene_names = [Path(path).stem for path in self.scene_files]
        self.pairs: list[tuple[int, int, int, float]] = []  # (scene, i0, i1, overlap)
        for scene, (path, info) in enumerate(zip(self.scene_files, self.scenes)):
            count = len(info["image_paths"])
            for (i0, i1), overlap, *_ in info["pair_infos"]:
                if not config.min_overlap <= overlap <= config.max_overlap:
                    continue
                for i in (i0, i1):
                    if not 0 <= i < count or info["image_paths"][i] is None:
                        raise ValueError(f"{path}: pair ({i0}, {i1}) points to image {i}, which the scene lacks "
                                         f"({count} image slots)")
                self.pairs.append((scene, int(i0), int(i1), float(overlap)))

    def __len__(self) -> int:
        return len(self.pairs)

    def check_files(self) -> None:
        """FileNotFoundError or ValueError naming the file and its scene-info file when an image or depth map
        that a pair reads is missing or does not start as its format does (data/io.py): headers only, each
        file once, so that a bad file stops a run before training rather than when its pair is loaded."""
        checked: set[Path] = set()
        for scene, i0, i1, _ in self.pairs:
            info = self.scenes[scene]
            for i in (i0, i1):
                image = self.root / info["image_paths"][i]
                if image in checked:
                    continue
                checked.add(image)
                with naming(f"{self.scene_files[scene]}: pair ({i0}, {i1})"):
                    if info["depth_paths"][i] is None:
                        raise ValueError(f"image {i} ({image}) has no depth path")
                    check_image_header(image)
                    check_depth_h5_header(self.root / info["depth_paths"][i], self.config.depth_pad_size)

    def _pose(self, info: dict, i: int) -> np.ndarray:
        pose = np.asarray(info["poses"][i], np.float64).reshape(4, 4)
        R = pose[:3, :3]
        rigid = (np.allclose(R @ R.T, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0
                 and np.allclose(pose[3], [0, 0, 0, 1]))
        if not rigid:
            raise ValueError(f"pose of image {i} ({info['image_paths'][i]}) is not a rigid transform")
        return pose

    def set_epoch(self, epoch: int) -> None:
        """New crops each epoch (the sampler calls this before the epoch's workers start)."""
        self.epoch = epoch

    def scene_indices(self) -> list[list[int]]:
        """Dataset indices grouped by scene-info file, for `SceneBalancedSampler`."""
        groups: list[list[int]] = [[] for _ in self.scenes]
        for index, (scene, *_rest) in enumerate(self.pairs):
            groups[scene].append(index)
        return groups

    def __getitem__(self, index: int) -> dict:
        scene, i0, i1, _ = self.pairs[index]
        info = self.scenes[scene]
        with loading_pair(f"{self.scene_files[scene]}: pair {index} (images {i0}, {i1})"):
            return self._load(index, scene, i0, i1, info)

    def _load(self, index: int, scene: int, i0: int, i1: int, info: dict) -> dict:
        images, depths, depth_paths, Ks = [], [], [], []
        for i in (i0, i1):
            image_path = self.root / info["image_paths"][i]
            depth_path = self.root / info["depth_paths"][i]
            original = read_grayscale(image_path)
            depth = read_depth_h5(depth_path, original.shape)  # its declared shape checked before it is read
            images.append(original)
            depths.append(depth)
            depth_paths.append(str(depth_path))
            Ks.append(np.asarray(info["intrinsics"][i], np.float64).reshape(3, 3))
        pose0, pose1 = (self._pose(info, i) for i in (i0, i1))  # world -> camera
        T_0to1 = relative_pose(pose0, pose1)
        size = None
        if self.config.crop_size is not None:
            size = self.config.crop_size
            images, depths, Ks = self._crop(index, images, depths, Ks, T_0to1)

        item = {}
        for side in (0, 1):
            original = images[side] if self.augment is None else self.augment(images[side], index, side)
            image = prepare_image(original, self.config, size)
            for key in ("image", "mask", "scale"):
                item[f"{key}{side}"] = image[key]
            item[f"depth{side}"] = pad_depth(depths[side], self.config.depth_pad_size, depth_paths[side])
            item[f"K{side}"] = torch.as_tensor(Ks[side].astype(np.float32))
        item["T_0to1"] = torch.from_numpy(T_0to1.astype(np.float32))
        item["T_1to0"] = torch.from_numpy(np.linalg.inv(T_0to1).astype(np.float32))
        item["pair_names"] = (str(info["image_paths"][i0]), str(info["image_paths"][i1]))
        item["dataset_name"] = "MegaDepth"
        item["scene_name"] = self.scene_names[scene]
        return item

    def _crop(self, index: int, images: list, depths: list, Ks: list, T_0to1: np.ndarray) -> tuple[list, list, list]:
        """Covisible windows of both images at the scale `longer_side` gives each: `crop_size` network pixels
        cut from the original frames."""
        crop_w, crop_h = self.config.crop_size
        windows = []
        for image in images:
            factor = max(image.shape) / self.config.longer_side  # original pixels per network pixel
            windows.append((round(crop_w * factor), round(crop_h * factor)))
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, self.epoch, index]))
        corners = covisible_windows(depths[0], depths[1], Ks[0], Ks[1], T_0to1, windows[0], windows[1], rng)
        views = [crop_view(*view) for view in zip(images, depths, Ks, corners, windows)]
        return [list(parts) for parts in zip(*views)]
