"""Covisible crops: train on windows of a pair at full resolution instead of the whole pair shrunk.

A window of image 0 is centred (with jitter) on a random pixel that depth and pose carry into image 1, and
image 1's window on where that pixel lands, so the two windows see the same surfaces. The crops are cut from
the original frames (integer offsets, intrinsics shifted by the same amount), so the depth maps and the
ground truth stay exact.
"""

import numpy as np
import torch

from geometry.warp import warp_depth


def checked_crop_size(crop_size, divisible_by: int) -> tuple[int, int] | None:
    """A config's `crop_size` as (width, height) ints, both multiples of `divisible_by`; None stays None."""
    if crop_size is None:
        return None
    crop_size = tuple(int(v) for v in crop_size)
    if len(crop_size) != 2 or min(crop_size) < divisible_by or any(v % divisible_by for v in crop_size):
        raise ValueError(f"crop_size must be (width, height), multiples of {divisible_by}, got {crop_size}")
    return crop_size


# every 16th pixel of image 0 is a candidate centre: dense enough to find a covisible one in any real overlap
_CANDIDATE_STEP = 16


def covisible_windows(depth0: np.ndarray, depth1: np.ndarray, K0: np.ndarray, K1: np.ndarray, T_0to1: np.ndarray,
                      window0: tuple[int, int], window1: tuple[int, int], rng: np.random.Generator
                      ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left corners (x, y) of a window of (width, height) `window0` in image 0 and `window1` in image 1,
    each in its image's original pixels.

    depth0, depth1: (H, W) depth maps of the images (0 or NaN unknown); K0, K1: (3, 3); T_0to1: (4, 4) camera 0
    -> camera 1. The shared pixel is one that the ground truth's own warp (known depth, in front, not
    occluded, inside image 1) carries over. Without any, both windows are drawn uniformly (the pair then
    gives no ground truth, as the whole pair would not).
    """
    h0, w0 = depth0.shape
    h1, w1 = depth1.shape
    for (width, height), (image_w, image_h) in ((window0, (w0, h0)), (window1, (w1, h1))):
        if width > image_w or height > image_h:
            raise ValueError(
                f"a crop of {width}x{height} original pixels does not fit an image of {image_w}x{image_h}: "
                f"lower crop_size or raise longer_side"
            )
    ys, xs = np.mgrid[_CANDIDATE_STEP // 2 : h0 : _CANDIDATE_STEP, _CANDIDATE_STEP // 2 : w0 : _CANDIDATE_STEP]
    points = np.stack([xs.ravel(), ys.ravel()], 1)
    def as_batch(a):
        return torch.as_tensor(np.asarray(a, np.float64))[None]
    inside, landed = warp_depth(
        as_batch(points),
        as_batch(np.nan_to_num(depth0)),
        as_batch(np.nan_to_num(depth1)),
        as_batch(K0),
        as_batch(K1),
        as_batch(T_0to1),
    )
    inside, landed = inside[0].numpy(), landed[0].numpy()

    def corner(centre: np.ndarray, window: tuple[int, int], image_w: int, image_h: int) -> tuple[int, int]:
        width, height = window
        jitter = rng.uniform(-0.25, 0.25, 2) * (width, height)  # the shared pixel is not always the centre
        x = int(np.clip(round(centre[0] - width / 2 + jitter[0]), 0, image_w - width))
        y = int(np.clip(round(centre[1] - height / 2 + jitter[1]), 0, image_h - height))
        return x, y

    if not inside.any():
        centres = rng.uniform(0, 1, (2, 2)) * ((w0, h0), (w1, h1))
    else:
        chosen = rng.choice(np.flatnonzero(inside))
        centres = np.array([points[chosen], landed[chosen]], np.float64)
    return corner(centres[0], window0, w0, h0), corner(centres[1], window1, w1, h1)


def crop_view(
    image: np.ndarray, depth: np.ndarray, K: np.ndarray, corner: tuple[int, int], window: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window (width, height) at `corner` (x, y) of an image, its aligned depth map and its intrinsics:
    the principal point moves by the corner, so the crop is an image of the same camera."""
    (x, y), (width, height) = corner, window
    shifted = np.array(K, np.float64, copy=True)
    shifted[0, 2] -= x
    shifted[1, 2] -= y
    return image[y : y + height, x : x + width], depth[y : y + height, x : x + width], shifted
