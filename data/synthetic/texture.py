"""Textures for the synthetic world, demos and tests that need no dataset: procedural or photographic.

Procedural: multi-scale smooth noise (shading), random filled shapes (edges, corners, blobs) and a few lines
give the mix of flat, textured and structured regions that matchers meet in real photos. Photographic: random
crops of the sample photographs that scikit-image ships (no download), for real image statistics.
"""

import cv2
import numpy as np


def make_texture(height: int, width: int, seed: int = 0, num_shapes: int = 60) -> np.ndarray:
    """A (height, width) uint8 grayscale image, the same for the same seed."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.float32)
    for cells in (4, 16, 64):  # octaves of smooth noise, coarse ones stronger
        noise = rng.random((max(2, height * cells // max(height, width)), cells)).astype(np.float32)
        image += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) * (64.0 / cells) ** 0.5
    image = 255 * (image - image.min()) / (np.ptp(image) + 1e-6)

    scale = max(height, width)
    for _ in range(num_shapes):
        value = float(rng.integers(0, 256))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        kind = rng.integers(0, 3)
        if kind == 0:
            axes = tuple(int(a) for a in rng.integers(scale // 60 + 2, scale // 10 + 3, size=2))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, value, -1, cv2.LINE_AA)
        elif kind == 1:
            size = rng.integers(scale // 50 + 2, scale // 8 + 3, size=2)
            box = ((float(centre[0]), float(centre[1])), (float(size[0]), float(size[1])), float(rng.uniform(0, 90)))
            cv2.fillPoly(image, [cv2.boxPoints(box).astype(np.int32)], value, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, centre, end, value, int(rng.integers(1, 4)), cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8)


# scikit-image sample photographs that ship with the package (the others need a download)
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel", "moon",
          "page", "rocket", "text", "hubble_deep_field", "immunohistochemistry", "cell")


def photo_texture(size: int, seed: int = 0) -> np.ndarray:
    """A (size, size) uint8 grayscale crop of a random scikit-image sample photo at a random scale (enlarged
    where the photo is smaller than `size`) and orientation (multiples of 90 degrees), the same for the same
    seed."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photo = getattr(skimage.data, PHOTOS[rng.integers(len(PHOTOS))])()
    if photo.ndim == 3:
        photo = cv2.cvtColor(photo[..., :3], cv2.COLOR_RGB2GRAY)
    height, width = photo.shape
    crop = int(rng.uniform(0.5, 1.0) * min(height, width))
    top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
    patch = np.rot90(photo[top:top + crop, left:left + crop], int(rng.integers(4)))
    interpolation = cv2.INTER_AREA if crop > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interpolation)
