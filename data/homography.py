"""Image pairs related by random homographies, from any folder of images (data with no geometry).

Each pair is a source image resized to the network size and a copy warped by a homography composed of an
in-plane rotation, an affine tilt along a random direction (the affine-simulation model of ASIFT: t >= 1
compresses one direction by 1/t), a zoom, a perspective term and a shift, all about the image centre.
The same ground truth and losses then apply through `H_0to1`.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from utils.images import read_grayscale

from .augment import PhotometricAugmentation
from .errors import loading_pair
from .io import IMAGE_SUFFIXES, check_image_header


@dataclass
class HomographyConfig:
    root: str  # folder searched recursively for images
    image_size: tuple[int, int] = (640, 480)  # (width, height) of both network inputs
    max_rotation_deg: float = 30.0  # in-plane rotation drawn from [-max, max]
    max_tilt: float = 1.5  # affine tilt t drawn from [1, max_tilt] (ASIFT samples t up to 4 sqrt 2)
    zoom_range: tuple[float, float] = (0.8, 1.25)  # drawn log-uniformly
    max_perspective: float = 2e-4  # |h31|, |h32| per pixel
    max_shift: float = 0.1  # translation, as a share of the image size
    pairs_per_image: int = 1
    seed: int = 0  # the pair of index i is the same on every run, every worker and every rank


def sample_homography(rng: np.random.Generator, config: HomographyConfig) -> np.ndarray:
    """A 3x3 homography in pixels of a (width, height) image, about its centre."""
    width, height = config.image_size
    centre = np.array([[1, 0, (width - 1) / 2], [0, 1, (height - 1) / 2], [0, 0, 1.0]])

    def rot(angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])

    theta = np.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    tilt, phi = rng.uniform(1.0, config.max_tilt), rng.uniform(0, np.pi)
    zoom = np.exp(rng.uniform(*np.log(config.zoom_range)))
    affine = rot(theta) @ rot(phi) @ np.diag([1.0, 1.0 / tilt, 1.0]) @ rot(-phi) @ np.diag([zoom, zoom, 1.0])
    perspective = np.eye(3)
    perspective[2, :2] = rng.uniform(-config.max_perspective, config.max_perspective, 2)
    shift = np.eye(3)
    shift[:2, 2] = rng.uniform(-config.max_shift, config.max_shift, 2) * (width, height)
    return shift @ centre @ perspective @ affine @ np.linalg.inv(centre)


class HomographyPairs(Dataset):
    def __init__(self, config: HomographyConfig, augment: PhotometricAugmentation | None = None):
        self.config = config
        self.augment = augment
        root = Path(config.root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        self.images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")

    def check_files(self) -> None:
        """ValueError naming the photo when one does not start as an image OpenCV reads (data/io.py)."""
        for path in self.images:
            check_image_header(path)

    def __len__(self) -> int:
        return len(self.images) * self.config.pairs_per_image

    def image_path(self, index: int) -> Path:
        """The photo pair `index` is made from."""
        return self.images[index // self.config.pairs_per_image]

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair `index` before augmentation: the photo resized to `image_size`, its copy warped by H_0to1, both
        (H, W) uint8, and H_0to1 (3, 3) float64 in their pixels."""
        path = self.image_path(index)
        rng = np.random.default_rng([self.config.seed, index])
        width, height = self.config.image_size
        with loading_pair(f"homography pair {index}"):
            image0 = cv2.resize(read_grayscale(path), (width, height), interpolation=cv2.INTER_AREA)
        H = sample_homography(rng, self.config)
        return image0, cv2.warpPerspective(image0, H, (width, height), flags=cv2.INTER_LINEAR), H

    def pair_names(self, index: int) -> tuple[str, str]:
        path = self.image_path(index)
        return str(path), f"{path}#H{index % self.config.pairs_per_image}"

    def __getitem__(self, index: int) -> dict:
        image0, image1, H = self.pair(index)
        if self.augment is not None:  # after warping, so that the two images differ photometrically
            image0, image1 = self.augment(image0, index, 0), self.augment(image1, index, 1)
        item = {f"image{side}": torch.from_numpy(image.astype(np.float32) / 255.0)[None]
                for side, image in enumerate((image0, image1))}
        item["H_0to1"] = torch.from_numpy(H.astype(np.float32))
        item["pair_names"] = self.pair_names(index)
        item["dataset_name"] = "Homography"
        item["scene_name"] = self.image_path(index).parent.name
        return item
