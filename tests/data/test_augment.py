"""Photometric augmentation: pixels only, reproducible per pair whatever the worker count, new per epoch."""

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from data.augment import PhotometricAugmentation, PhotometricConfig
from data.homography import HomographyConfig, HomographyPairs
from data.synthetic.texture import make_texture


def always() -> PhotometricAugmentation:
    return PhotometricAugmentation(PhotometricConfig(brightness_contrast_p=1.0, color_jitter_p=1.0, blur_p=1.0,
                                                     noise_p=1.0, jpeg_p=1.0))


def test_changes_pixels_reproducibly_and_per_epoch():
    augment = always()
    image = make_texture(96, 128, seed=0)
    first = augment(image, index=3, side=0)
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.abs(first.astype(int) - image).mean() > 1.0
    assert np.array_equal(augment(image, 3, 0), first)
    assert not np.array_equal(augment(image, 3, 1), first)  # the other image of the pair differs
    augment.set_epoch(1)
    assert not np.array_equal(augment(image, 3, 0), first)


def test_same_batches_with_zero_or_two_workers(tmp_path):
    for seed in range(4):
        cv2.imwrite(str(tmp_path / f"{seed}.png"), make_texture(120, 160, seed=seed))
    dataset = HomographyPairs(HomographyConfig(root=str(tmp_path), image_size=(80, 64)), augment=always())
    single = [b["image1"] for b in DataLoader(dataset, batch_size=2, num_workers=0)]
    multi = [b["image1"] for b in DataLoader(dataset, batch_size=2, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(single, multi))
    plain = HomographyPairs(HomographyConfig(root=str(tmp_path), image_size=(80, 64)))
    assert not torch.equal(plain[0]["image1"], dataset[0]["image1"])
    assert torch.equal(plain[0]["H_0to1"], dataset[0]["H_0to1"])  # geometry untouched
