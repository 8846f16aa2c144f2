"""Training augmentation: photometric (albumentations), which changes pixel values only, never geometry or
depth, and a random swap of the two images of a pair.

Each image is augmented with a seed drawn from (seed, epoch, pair index, side), so a pair gets the same
augmentation whichever worker process loads it and however many there are, and a new one each epoch.
"""

from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from .sampling import WrappedPairs


@dataclass
class PhotometricConfig:
    brightness_contrast: float = 0.2  # +- limit of RandomBrightnessContrast
    brightness_contrast_p: float = 0.5
    color_jitter_p: float = 0.3  # brightness/contrast/saturation/hue jitter (on grayscale: brightness, contrast)
    blur_p: float = 0.2  # Gaussian blur, kernel 3..7
    noise_p: float = 0.2  # Gaussian noise, std 1-5% of the range
    jpeg_p: float = 0.2  # JPEG re-compression, quality 50..95
    seed: int = 0


class PhotometricAugmentation:
    def __init__(self, config: PhotometricConfig | None = None):
        self.config = config = config if config is not None else PhotometricConfig()
        self.epoch = 0
        self.transform = A.Compose([
            A.RandomBrightnessContrast(config.brightness_contrast, config.brightness_contrast,
                                       p=config.brightness_contrast_p),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=config.color_jitter_p),
            A.GaussianBlur(blur_limit=(3, 7), p=config.blur_p),
            A.GaussNoise(std_range=(0.01, 0.05), p=config.noise_p),
            A.ImageCompression(quality_range=(50, 95), p=config.jpeg_p),
        ])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, image: np.ndarray, index: int, side: int) -> np.ndarray:
        """A uint8 image (H, W) or (H, W, 3), augmented reproducibly for pair `index`, image `side`."""
        seed = np.random.SeedSequence([self.config.seed, self.epoch, index, side]).generate_state(1)[0]
        self.transform.set_random_seed(int(seed))
        return self.transform(image=image)["image"]


# keys that come one per image (data/batch.py): as a pair, or on one side only (`shown1`, data/tilt.py)
_SIDED_KEYS = ("image", "mask", "scale", "depth", "K", "correspondences", "shown")


def swap_sides(item: dict) -> dict:
    """The same pair with its images in the other order; poses, homography and names follow."""
    swapped = dict(item)
    for key in _SIDED_KEYS:
        sides = [item.get(f"{key}{side}") for side in (0, 1)]
        for side, value in zip((1, 0), sides):
            if value is None:
                swapped.pop(f"{key}{side}", None)
            else:
                swapped[f"{key}{side}"] = value
    if "T_0to1" in item:
        swapped["T_0to1"], swapped["T_1to0"] = item["T_1to0"], item["T_0to1"]
    if "H_0to1" in item:
        swapped["H_0to1"] = torch.linalg.inv(item["H_0to1"].double()).to(item["H_0to1"].dtype)
    if "pair_names" in item:
        swapped["pair_names"] = tuple(reversed(item["pair_names"]))
    return swapped


class RandomSwap(WrappedPairs):
    """Training augmentation: each pair of `dataset` in the other order with probability 1/2.

    The matcher is not symmetric (image 0's cells query image 1's), and an index lists each pair in one
    order only; the draw comes from (seed, epoch, index), so every worker agrees and each epoch differs.
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        super().__init__(dataset)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        draw = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
        return swap_sides(item) if draw % 2 else item
