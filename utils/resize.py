"""The resize rule, in one place: how large an image becomes for the network, and the resizing itself.

LoFTR's rule (its `get_resized_wh` / `get_divisible_wh`): scale the image so that its longer side is N pixels,
aspect ratio kept, round each side to whole pixels, then floor it to a multiple of the coarse stride. The
datasets (megadepth), the benchmarks (`Resize`) and the LoFTR matcher (`--resize`, divisible by 1: any size
works there) all size their inputs with it.
"""

import cv2
import numpy as np


def scaled_side(side: int, factor: float, divisible_by: int = 1) -> int:
    """`side` pixels times `factor`, rounded to whole pixels, floored to a multiple of `divisible_by`, and at
    least `divisible_by` (an image never vanishes)."""
    return max(int(round(side * factor)) // divisible_by * divisible_by, divisible_by)


def resized_size(width: int, height: int, longer_side: int, divisible_by: int = 1) -> tuple[int, int]:
    """(width, height) with the longer side `longer_side`, aspect kept, each floored to a multiple of
    `divisible_by` (LoFTR's resize rule)."""
    factor = longer_side / max(width, height)
    return scaled_side(width, factor, divisible_by), scaled_side(height, factor, divisible_by)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (H, W) resized to `size` (width, height), as given when it already has that size."""
    height, width = image.shape[:2]
    if tuple(size) == (width, height):
        return image
    # area averaging when shrinking (no aliasing); bilinear when enlarging, where area acts like nearest
    interpolation = cv2.INTER_AREA if size[0] < width else cv2.INTER_LINEAR
    return cv2.resize(image, tuple(size), interpolation=interpolation)


def resized(image: np.ndarray, factors: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` scaled by `factors` (x, y); returns it and the exact factors after rounding to whole pixels."""
    height, width = image.shape[:2]
    size = (scaled_side(width, factors[0]), scaled_side(height, factors[1]))
    if size == (width, height):
        return image, (1.0, 1.0)
    return resize_image(image, size), (size[0] / width, size[1] / height)


def resize_longer_side(image: np.ndarray, longer: int) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` (H, W) resized so that its longer side is `longer` pixels, aspect ratio kept (0: unchanged),
    and the factors (x, y) = (original width / new width, original height / new height) that take
    network-input pixels back to original pixels (the model's `scale`)."""
    if longer == 0:
        return image, (1.0, 1.0)
    height, width = image.shape[:2]
    size = resized_size(width, height, longer)
    return resize_image(image, size), (width / size[0], height / size[1])
