"""Warping pixels between two views: through depth + intrinsics + relative pose, or through a homography.

Pixel coordinates are (x, y) with pixel (c, r) of an image at (c, r), LoFTR's convention (coarse cell (c, r)
sits on pixel (8c, 8r)). Poses are `T_0to1` (4, 4): camera-0 coordinates -> camera-1 coordinates.
Everything is batched over B and N in torch (no loop over points), except `apply_homography`, the numpy
twin for evaluation's (N, 2) arrays, and `warp_image`, which warps a whole image by a homography (OpenCV).
"""

import cv2
import numpy as np
import torch

DEPTH_CONSISTENCY_THR = 0.2  # relative depth error accepted by LoFTR's ground truth (LoFTR sec. 3.5)


def sample_depth(depth: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Depth (B, H, W) read at the nearest pixel of points (B, N, 2); 0 outside the map and where the map is
    0 or not finite (missing depth)."""
    b, height, width = depth.shape
    cols, rows = points[..., 0].round().long(), points[..., 1].round().long()
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    flat = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)
    values = torch.gather(depth.reshape(b, -1), 1, flat)
    return torch.where(inside & torch.isfinite(values) & (values > 0), values, torch.zeros_like(values))


def interpolate_depth(depth: torch.Tensor, points: torch.Tensor, max_spread: float = 0.1) -> torch.Tensor:
    """Depth (B, H, W) at sub-pixel points (B, N, 2): bilinear where the four neighbouring pixels are known
    and within `max_spread` relative of each other (one surface), the nearest pixel elsewhere (depth edges,
    holes). Reading the nearest pixel everywhere would move points on slanted surfaces by a pixel or more
    once they are reprojected; interpolating across a depth edge would invent a surface in between."""
    b, height, width = depth.shape
    nearest = sample_depth(depth, points)
    x0, y0 = points[..., 0].floor(), points[..., 1].floor()
    corners, weights = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            corner = torch.stack([x0 + dx, y0 + dy], -1)
            corners.append(sample_depth(depth, corner))
            weights.append((1 - (points[..., 0] - x0 - dx).abs()) * (1 - (points[..., 1] - y0 - dy).abs()))
    corners = torch.stack(corners, -1)  # (B, N, 4)
    smooth = (corners > 0).all(-1) & (corners.amax(-1) <= (1 + max_spread) * corners.amin(-1))
    bilinear = (corners * torch.stack(weights, -1)).sum(-1)
    return torch.where(smooth, bilinear, nearest)


def unproject(points: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixels (B, N, 2) at depths (B, N) -> camera coordinates (B, N, 3)."""
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1)
    return (homogeneous @ torch.linalg.inv(K).transpose(1, 2)) * depth[..., None]


def transform(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Rigid transform (B, 4, 4) applied to points (B, N, 3)."""
    return points @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera coordinates (B, N, 3) -> pixels (B, N, 2) and depths (B, N). Points at or behind the camera
    get a depth <= 0; their pixels are meaningless and callers reject them by the depth."""
    pixels = points @ K.transpose(1, 2)
    z = points[..., 2]
    return pixels[..., :2] / z.clamp(min=eps)[..., None], z


def inside_image(points: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: points (B, N, 2) on a pixel of the valid image (B, 2) = (height, width), i.e. whose
    nearest pixel exists: -0.5 <= x < width - 0.5 (a point computed at exactly 0 may come out as -1e-15)."""
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (y >= -0.5) & (x < size[:, None, 1] - 0.5) & (y < size[:, None, 0] - 0.5)


def warp_depth(
    points0: torch.Tensor,
    depth0: torch.Tensor,
    depth1: torch.Tensor,
    K0: torch.Tensor,
    K1: torch.Tensor,
    T_0to1: torch.Tensor,
    size1: torch.Tensor | None = None,
    depth_consistency_thr: float = DEPTH_CONSISTENCY_THR,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp pixels of image 0 into image 1 through depth and relative pose.

    Args:
        points0: (B, N, 2) pixels of image 0.
        depth0, depth1: (B, H, W) depth maps (0 or NaN where unknown), aligned with each image's pixels.
        K0, K1: (B, 3, 3) intrinsics; T_0to1: (B, 4, 4) camera 0 -> camera 1.
        size1: (B, 2) valid (height, width) of image 1 (default: the depth map's size), to reject padding.
        depth_consistency_thr: maximum |d1 - z| / d1 between the depth map of image 1 at the warped pixel and
            the depth of the warped point, which rejects points occluded in image 1.

    Returns:
        valid: (B, N) bool: known depth in image 0, in front of camera 1, inside image 1, depth-consistent.
        points1: (B, N, 2) warped pixels (meaningless where not valid).
    """
    if size1 is None:
        size1 = torch.tensor([depth1.shape[1:]], device=depth1.device).expand(depth1.shape[0], 2)
    z0 = interpolate_depth(depth0, points0)
    points1, z1 = project(transform(T_0to1, unproject(points0, z0, K0)), K1)
    d1 = sample_depth(depth1, points1)
    consistent = (d1 - z1).abs() < depth_consistency_thr * d1
    valid = (z0 > 0) & (z1 > 0) & inside_image(points1, size1) & (d1 > 0) & consistent
    return valid, points1


def warp_homography(points0: torch.Tensor, H_0to1: torch.Tensor) -> torch.Tensor:
    """Pixels (B, N, 2) of image 0 mapped by homographies (B, 3, 3) into image 1 (B, N, 2)."""
    homogeneous = torch.cat([points0, torch.ones_like(points0[..., :1])], -1) @ H_0to1.transpose(1, 2)
    w = homogeneous[..., 2:]
    # a point on the line at infinity has no image: keep the sign, avoid dividing by 0
    w = torch.where(w.abs() < 1e-12, torch.full_like(w, 1e-12), w)
    return homogeneous[..., :2] / w


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) mapped by a homography (3, 3): numpy float64; a point sent to the line at infinity comes
    back inf or NaN (callers decide what such a point means)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    projected = np.c_[points, np.ones(len(points))] @ np.asarray(H, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return projected[:, :2] / projected[:, 2:]


def warp_image(image: np.ndarray, H: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """`image` (H, W[, C]) warped by the homography `H` (3, 3), pixels of `image` -> pixels of the result,
    bilinear, to `size` (width, height) (default: the size of `image`); black where nothing maps."""
    height, width = image.shape[:2]
    return cv2.warpPerspective(image, np.asarray(H, np.float64), size or (width, height), flags=cv2.INTER_LINEAR)
