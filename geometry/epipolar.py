"""Epipolar geometry in normalized camera coordinates (pixels with K^-1 applied)."""

import torch


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors -> (..., 3, 3) matrices [v]_x with [v]_x w = v x w."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)


def essential_from_pose(T_0to1: torch.Tensor) -> torch.Tensor:
    """E = [t]_x R of a relative pose (B, 4, 4), so that x1^T E x0 = 0 for normalized x0, x1 of one point."""
    return skew(T_0to1[..., :3, 3]) @ T_0to1[..., :3, :3]


def normalize_points(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixels (..., N, 2) -> normalized coordinates (..., N, 2) with intrinsics (..., 3, 3)."""
    centre = K[..., None, :2, 2]
    focal = torch.stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :]
    return (points - centre) / focal  # K has no skew in the datasets we read


def symmetric_epipolar_distance(x0: torch.Tensor, x1: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """Squared symmetric epipolar distance of normalized matches x0, x1 (..., N, 2) under E (..., 3, 3):
    (x1^T E x0)^2 (1 / |(E x0)_12|^2 + 1 / |(E^T x1)_12|^2), the sum of the squared distances of each point to
    the other's epipolar line. LoFTR's epipolar precision thresholds this (5e-4 ScanNet, 1e-4 MegaDepth)."""
    x0 = torch.cat([x0, torch.ones_like(x0[..., :1])], -1)
    x1 = torch.cat([x1, torch.ones_like(x1[..., :1])], -1)
    line1 = x0 @ E.transpose(-1, -2)  # E x0: epipolar lines in image 1, (..., N, 3)
    line0 = x1 @ E  # E^T x1: epipolar lines in image 0
    residual = (x1 * line1).sum(-1)  # x1^T E x0
    return residual**2 * (1 / line1[..., :2].square().sum(-1) + 1 / line0[..., :2].square().sum(-1))
