"""Affine views of an image: the tilts of ASIFT's simulation, and the resampling that makes them.

A tilt t >= 1 along a direction is the image plane seen from latitude arccos(1 / t): the image compressed by
the factor t along that direction, with ASIFT's anti-aliasing blur before the subsampling. Every view here
keeps the image's orientation (no in-plane rotation), so an upright matcher sees upright images.

A view's `warp` is the (3, 3) affine map from image pixels to view pixels, (x, y) with pixel (c, r) at (c, r)
(geometry/warp.py's convention): keypoints found in a view go back to the image through its exact inverse.
Directions are degrees counter-clockwise from +x as the image is displayed (x right, y down).
"""

import cv2
import numpy as np

# Anti-aliasing before a t-fold subsampling: a Gaussian of standard deviation c * sqrt(t^2 - 1) along the
# subsampled direction, with c = 0.8 (Morel & Yu, "ASIFT: A new framework for fully affine invariant image
# comparison", SIAM J. Imaging Sciences 2009, tilt simulation).
ASIFT_BLUR_C = 0.8
BLUR_TRUNCATE_SIGMAS = 4.0  # the Gaussian is cut where it is below 4e-4 of its peak
# The largest tilt: its blur takes 4 * 0.8 * t resamplings (t = 1e300 asked for more memory than exists); ASIFT's
# views reach 4 sqrt 2, stress curves 8 or 16
MAX_TILT = 64.0


def tilt_linear(tilt: float, direction_deg: float) -> np.ndarray:
    """The (2, 2) linear part of a tilt: compression by `tilt` (>= 1) along the unit vector at direction_deg,
    identity across it. Symmetric, with singular values 1 and 1 / tilt."""
    if not tilt >= 1:
        raise ValueError(f"tilt must be >= 1, got {tilt}")
    direction = np.array([np.cos(np.radians(direction_deg)), -np.sin(np.radians(direction_deg))])
    return np.eye(2) - (1 - 1 / tilt) * np.outer(direction, direction)


def transition_tilt(linear_a: np.ndarray, linear_b: np.ndarray) -> float:
    """The tilt between two views of one plane, given by their (2, 2) linear maps from that plane: the ratio
    of the singular values of B A^-1 (Morel & Yu 2009, transition tilt); 1 when the views differ by a
    similarity only."""
    singular = np.linalg.svd(np.asarray(linear_b, np.float64) @ np.linalg.inv(linear_a), compute_uv=False)
    return float(singular[0] / singular[-1])


def centred_map(linear: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The (3, 3) pixel map x -> linear (x - c) + c' of an image of `shape` (H, W) with centre c, and the
    smallest canvas (H', W') holding its whole extent (pixel squares, [-0.5, W - 0.5] x [-0.5, H - 0.5]),
    whose centre is c'."""
    height, width = shape
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    extent = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    corners = (extent - centre) @ linear.T
    new_width, new_height = np.ceil(corners.max(0) - corners.min(0) - 1e-9).astype(int)
    warp = np.eye(3)
    warp[:2, :2] = linear
    warp[:2, 2] = np.array([(new_width - 1) / 2, (new_height - 1) / 2]) - linear @ centre
    return warp, (int(new_height), int(new_width))


def tilt_view(image: np.ndarray, tilt: float, direction_deg: float,
              canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ASIFT's simulated view of `image` (H, W) or (H, W, C) at `tilt` along direction_deg: (view, warp).

    A Gaussian blur of sigma = 0.8 sqrt(tilt^2 - 1) image pixels along the direction, then subsampling by
    `tilt` along it (bilinear), about the image centre. The view lies on the smallest canvas that holds all of
    it, or on `canvas` (H', W') with its centre at the canvas centre, the rest black. On the image's own shape
    an oblique tilt loses two corners: it shortens every vector from the centre but moves some corners out
    along x or y. warp (3, 3): image pixels -> view pixels. tilt 1 without `canvas` is a copy."""
    linear = tilt_linear(tilt, direction_deg)
    warp, shape = centred_map(linear, image.shape[:2])
    if canvas is not None:
        warp[:2, 2] += np.array([(canvas[1] - shape[1]) / 2, (canvas[0] - shape[0]) / 2])
        shape = (int(canvas[0]), int(canvas[1]))
    if tilt == 1 and canvas is None:
        return image.copy(), warp
    direction = np.array([np.cos(np.radians(direction_deg)), -np.sin(np.radians(direction_deg))])
    return resample(image, warp, shape, direction, ASIFT_BLUR_C * np.sqrt(tilt**2 - 1)), warp


def preimage(warp: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (H', W') float64: where every pixel of a canvas `shape` (H', W') comes from through the
    inverse of `warp` (3, 3, source -> canvas pixels, affine)."""
    inverse = np.linalg.inv(warp)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2],
            inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2])


def resample(
    image: np.ndarray,
    warp: np.ndarray,
    shape: tuple[int, int],
    blur_direction: np.ndarray | None = None,
    blur_sigma: float = 0.0,
) -> np.ndarray:
    """image (H, W) or (H, W, C) seen through `warp` (3, 3, source -> output pixels) on a canvas `shape`
    (H', W'), bilinear, black outside. With blur_sigma > 0 (source pixels) each output pixel is the Gaussian
    average of the source along blur_direction (2,) (a unit vector), sampled every source pixel: the blur and
    the subsampling of a tilt in one resampling."""
    source_x, source_y = preimage(warp, shape)
    if blur_sigma > 0:
        radius = int(np.ceil(BLUR_TRUNCATE_SIGMAS * blur_sigma))
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        weights = np.exp(-0.5 * (offsets / blur_sigma) ** 2)
        weights /= weights.sum()
    else:
        blur_direction, offsets, weights = np.zeros(2), np.zeros(1), np.ones(1)
    source = image.astype(np.float32)
    output = np.zeros(tuple(shape) + image.shape[2:], np.float32)
    for offset, weight in zip(offsets, weights):
        map_x = (source_x + offset * blur_direction[0]).astype(np.float32)
        map_y = (source_y + offset * blur_direction[1]).astype(np.float32)
        sampled = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        output += weight * sampled.reshape(output.shape)
    if np.issubdtype(image.dtype, np.integer):
        limits = np.iinfo(image.dtype)
        output = np.clip(np.rint(output), limits.min, limits.max)
    return output.astype(image.dtype)
