"""Pairs with known correspondences instead of depth: what `python -m data.inhouse prepare` writes (SfM tracks,
with cameras and poses), or a label file alone (training only: no poses to validate against).

Items follow data/batch.py, with the correspondences padded to a fixed count so the default collate works:

    correspondences0, correspondences1   (N, 2) float32: original pixels of image 0 and image 1
    correspondences_valid                (N,) bool: False on the padding
    K0, K1, T_0to1, T_1to0               only with poses (a scene-info file of prepare)

`geometry.ground_truth.sparse_supervision` turns them into ground truth; the LightningModule picks it by the keys.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geometry.poses import relative_pose
from utils.images import read_grayscale

from ..augment import PhotometricAugmentation
from ..crop import checked_crop_size
from ..errors import loading_pair
from ..io import check_image_header, naming
from ..megadepth import load_scene_info, prepare_image
from .labels import check_inside, read_labels


@dataclass
class SparseConfig:
    root: str  # prepare's output folder (scene-info image paths are relative to it), or the labelled photos
    scene_info: tuple[str, ...] = ()  # prepare's scene_info/SCENE.npz files
    labels: str | None = None  # and/or a label file (data/inhouse/labels.py) naming photos under root
    min_overlap: float = 0.0
    max_overlap: float = 1.0
    longer_side: int = 840
    divisible_by: int = 8
    pad_to_square: bool = True  # pad to longer_side x longer_side with a mask, so pairs batch together
    max_correspondences: int = 1024  # per item, padded to this count; more are subsampled (seeded)
    min_correspondences: int = 8  # pairs with fewer are left out
    # (width, height) network-input windows around a labelled correspondence, image 1's around its partner,
    # at the scale `longer_side` gives (as data/crop.py for depth); None: whole images
    crop_size: tuple[int, int] | None = None
    seed: int = 0
    trust_index: bool = False  # read the scene-info files with plain pickle (only for files you trust)

    def __post_init__(self):
        self.crop_size = checked_crop_size(self.crop_size, self.divisible_by)


@dataclass
class _Pair:
    scene: str
    image0: Path
    image1: Path
    points: np.ndarray  # (N, 4) x0, y0, x1, y1 original pixels
    camera: tuple | None  # (K0, K1, T_0to1) when the poses are known


class SparsePairs(Dataset):
    """Pairs of prepare's scene-info files and/or a label file; items follow data/batch.py (module docstring)."""

    def __init__(self, config: SparseConfig, augment: PhotometricAugmentation | None = None):
        self.config, self.augment, self.epoch = config, augment, 0
        self.root = Path(config.root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"inhouse dataset root {self.root} does not exist: set `root` to the folder "
                                    f"`python -m data.inhouse prepare --out` wrote (or the labelled photos)")
        if not config.scene_info and config.labels is None:
            raise ValueError("inhouse dataset: set `scene_info` (prepare's scene_info/*.npz) and/or `labels`")
        self.pairs: list[_Pair] = []
        for path in config.scene_info:
            self._add_scene(Path(path))
        if config.labels is not None:
            self._add_labels(Path(config.labels))
        if not self.pairs:
            raise ValueError(f"inhouse dataset: no pair with at least {config.min_correspondences} correspondences "
                             f"and overlap in [{config.min_overlap}, {config.max_overlap}]")
        self.poses = {pair.camera is not None for pair in self.pairs}
        if len(self.poses) > 1:  # one batch must hold the same keys
            raise ValueError("inhouse dataset: mixes pairs with poses (scene_info) and without (labels of photos "
                             "SfM did not register); use two dataset entries")

    def _add_scene(self, path: Path) -> None:
        info = load_scene_info(path, self.config.trust_index)
        if "correspondences" not in info:
            raise ValueError(f"{path} has no `correspondences`: not written by `python -m data.inhouse prepare` "
                             f"(a MegaDepth-layout scene with depth is read by the `megadepth` dataset type)")
        poses = [np.asarray(pose, np.float64).reshape(4, 4) for pose in info["poses"]]
        for ((i0, i1), overlap, *_), points in zip(info["pair_infos"], info["correspondences"]):
            if self.config.min_overlap <= overlap <= self.config.max_overlap:
                K0, K1 = (np.asarray(info["intrinsics"][i], np.float64) for i in (i0, i1))
                camera = (K0, K1, relative_pose(poses[i0], poses[i1]))
                self._add(_Pair(path.stem, self.root / info["image_paths"][i0], self.root / info["image_paths"][i1],
                                np.asarray(points, np.float64).reshape(-1, 4), camera))

    def _add_labels(self, path: Path) -> None:
        for (name0, name1), labels in read_labels(path).items():
            sizes = tuple(read_grayscale(self.root / name).shape[::-1] for name in (name0, name1))
            check_inside(path, (name0, name1), labels, sizes)
            self._add(_Pair(path.stem, self.root / name0, self.root / name1, labels.array(), None))

    def _add(self, pair: _Pair) -> None:
        if len(pair.points) >= self.config.min_correspondences:
            self.pairs.append(pair)

    def check_files(self) -> None:
        """FileNotFoundError or ValueError naming the image and its scene (the scene-info or label file's name)
        when an image that a pair reads is missing or does not start as an image OpenCV reads; each once."""
        checked: set[Path] = set()
        for pair in self.pairs:
            for image in (pair.image0, pair.image1):
                if image not in checked:
                    checked.add(image)
                    with naming(f"inhouse scene {pair.scene}: pair ({pair.image0.name}, {pair.image1.name})"):
                        check_image_header(image)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """New crops and subsamples each epoch (the sampler calls this before the epoch's workers start)."""
        self.epoch = epoch

    def scene_indices(self) -> list[list[int]]:
        groups: dict[str, list[int]] = {}
        for index, pair in enumerate(self.pairs):
            groups.setdefault(pair.scene, []).append(index)
        return list(groups.values())

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        with loading_pair(f"inhouse pair {index} ({pair.image0.name}, {pair.image1.name})"):
            return self._load(index, pair)

    def _load(self, index: int, pair: _Pair) -> dict:
        config = self.config
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, self.epoch, index]))
        images = [read_grayscale(pair.image0), read_grayscale(pair.image1)]
        points = pair.points.copy()
        Ks = [pair.camera[0].copy(), pair.camera[1].copy()] if pair.camera is not None else None
        size = None
        if config.crop_size is not None:
            size = config.crop_size
            images, points, corners = self._crop(images, points, rng)
            if Ks is not None:  # the principal point moves with the window's corner
                for K, corner in zip(Ks, corners):
                    K[:2, 2] -= corner
        if len(points) > config.max_correspondences:
            points = points[np.sort(rng.choice(len(points), config.max_correspondences, replace=False))]
        padded = np.zeros((config.max_correspondences, 4), np.float32)
        padded[:len(points)] = points
        valid = np.zeros(config.max_correspondences, bool)
        valid[:len(points)] = True

        item = {}
        for side in (0, 1):
            original = images[side] if self.augment is None else self.augment(images[side], index, side)
            image = prepare_image(original, config, size)
            for key in ("image", "mask", "scale"):
                item[f"{key}{side}"] = image[key]
            item[f"correspondences{side}"] = torch.from_numpy(padded[:, 2 * side : 2 * side + 2].copy())
        item["correspondences_valid"] = torch.from_numpy(valid)
        if Ks is not None:
            T_0to1 = pair.camera[2]
            item["K0"], item["K1"] = (torch.from_numpy(K.astype(np.float32)) for K in Ks)
            item["T_0to1"] = torch.from_numpy(T_0to1.astype(np.float32))
            item["T_1to0"] = torch.from_numpy(np.linalg.inv(T_0to1).astype(np.float32))
        item["pair_names"] = (str(pair.image0.relative_to(self.root)), str(pair.image1.relative_to(self.root)))
        item["dataset_name"] = "inhouse"
        item["scene_name"] = pair.scene
        return item

    def _crop(
        self, images: list[np.ndarray], points: np.ndarray, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        """Windows of `crop_size` network pixels (at the `longer_side` scale) around a random correspondence,
        jittered by up to a quarter window; the correspondences inside both, shifted to the windows."""
        crop_w, crop_h = self.config.crop_size
        anchor = points[rng.integers(len(points))]
        crops, corners = [], []
        for side, image in enumerate(images):
            height, width = image.shape
            factor = max(height, width) / self.config.longer_side  # original pixels per network pixel
            window = np.array([min(round(crop_w * factor), width), min(round(crop_h * factor), height)])
            centre = anchor[2 * side : 2 * side + 2] + rng.uniform(-0.25, 0.25, 2) * window
            corner = np.clip(np.round(centre - window / 2), 0, [width - window[0], height - window[1]]).astype(int)
            crops.append(image[corner[1] : corner[1] + window[1], corner[0] : corner[0] + window[0]])
            corners.append(corner.astype(np.float64))
        shifted = points - np.concatenate(corners)
        inside = np.ones(len(points), bool)
        for side, crop in enumerate(crops):
            xy = shifted[:, 2 * side : 2 * side + 2]
            inside &= (xy >= -0.5).all(1) & (xy[:, 0] < crop.shape[1] - 0.5) & (xy[:, 1] < crop.shape[0] - 0.5)
        return crops, shifted[inside], corners
