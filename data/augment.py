"""Photometric augmentation (albumentations): changes pixel values only, never geometry, never depth.

Each image is augmented with a seed drawn from (seed, epoch, pair index, side), so a pair gets the same
augmentation whichever worker process loads it and however many there are, and a new one each epoch.
"""

from dataclasses import dataclass

import albumentations as A
import numpy as np


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
            A.RandomBrightnessContrast(config.brightness_contrast, config.brightness_contrast, p=config.brightness_contrast_p),
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
