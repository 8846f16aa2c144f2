"""Warping through depth and pose, and through homographies, against exact answers and a real pair."""

import math

import cv2
import numpy as np
import torch

from geometry.warp import apply_homography, warp_depth, warp_homography, warp_image
from tests.ground_truth_helpers import megadepth_pair

F, H, W, Z = 100.0, 96, 128, 5.0
K = torch.tensor([[[F, 0.0, (W - 1) / 2], [0.0, F, (H - 1) / 2], [0.0, 0.0, 1.0]]], dtype=torch.float64)


def pose(R=None, t=(0.0, 0.0, 0.0)) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)
    if R is not None:
        T[:3, :3] = torch.as_tensor(R, dtype=torch.float64)
    T[:3, 3] = torch.tensor(t, dtype=torch.float64)
    return T[None]


def grid_points(step: int = 8) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(0, H, step), torch.arange(0, W, step), indexing="ij")
    return torch.stack([x, y], -1).reshape(1, -1, 2).double()


def plane(depth: float = Z) -> torch.Tensor:
    return torch.full((1, H, W), depth, dtype=torch.float64)


def test_identity_pose_is_the_identity():
    points = grid_points()
    valid, warped = warp_depth(points, plane(), plane(), K, K, pose())
    assert valid.all()
    assert torch.allclose(warped, points, atol=1e-9)


def test_fronto_parallel_plane_under_translation():
    """A plane at depth Z seen by a camera moved by (tx, ty, 0): every pixel shifts by f (tx, ty) / Z."""
    tx, ty = 0.4, -0.2  # camera-0 points in camera-1 coordinates: X1 = X0 + t
    points = grid_points()
    valid, warped = warp_depth(points, plane(), plane(), K, K, pose(t=(tx, ty, 0.0)))
    expected = points + torch.tensor([F * tx / Z, F * ty / Z], dtype=torch.float64)
    inside = (expected[..., 0] <= W - 1) & (expected[..., 1] >= 0)
    assert torch.equal(valid, inside)
    assert torch.allclose(warped[valid], expected[valid], atol=1e-9)


def test_rotation_about_the_optical_axis_by_90_degrees():
    """Camera 1 rolled by 90 degrees about its optical axis: pixels turn by 90 degrees about the principal
    point, (x, y) - c -> (-(y - c_y), x - c_x)."""
    Rz = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    square_K = K.clone()
    square_K[:, 1, 2] = (W - 1) / 2  # a W x W image, so that the rotated image is the image
    points = torch.stack(torch.meshgrid(torch.arange(0, W, 8.0), torch.arange(0, W, 8.0), indexing="xy"), -1)
    points = points.reshape(1, -1, 2).double()
    depth = torch.full((1, W, W), Z, dtype=torch.float64)
    valid, warped = warp_depth(points, depth, depth, square_K, square_K, pose(R=Rz))
    c = (W - 1) / 2
    expected = torch.stack([c - (points[..., 1] - c), c + (points[..., 0] - c)], -1)
    assert valid.all()
    assert torch.allclose(warped, expected, atol=1e-9)


def test_unknown_depth_and_occlusion_are_rejected():
    points = grid_points()
    depth0 = plane()
    depth0[0, :16] = 0.0  # no depth
    depth0[0, 16:32] = float("nan")  # a hole written as NaN
    depth1 = plane()
    depth1[0, 64:] = 0.5 * Z  # something in front of the plane in image 1 occludes it there
    valid, _ = warp_depth(points, depth0, depth1, K, K, pose())
    rows = points[0, :, 1]
    assert not valid[0, rows < 32].any()
    assert not valid[0, rows >= 64].any()
    assert valid[0, (rows >= 32) & (rows < 64)].all()


def test_points_behind_camera_one_are_rejected():
    valid, _ = warp_depth(grid_points(), plane(), plane(), K, K, pose(t=(0.0, 0.0, -2 * Z)))
    assert not valid.any()


def test_homography_matches_opencv():
    rng = np.random.default_rng(0)
    H_0to1 = np.array([[0.9, 0.1, 12.0], [-0.05, 1.1, -7.0], [1e-4, -2e-4, 1.0]])
    points = rng.uniform(0, 500, (1, 200, 2))
    expected = cv2.perspectiveTransform(points, H_0to1)
    warped = warp_homography(torch.from_numpy(points), torch.from_numpy(H_0to1)[None])
    assert np.allclose(warped.numpy(), expected, atol=1e-9)


def test_real_megadepth_pair_warps_back_to_itself():
    """Points of image 0 that pass the checks land, warped back with image 1's depth, where they started."""
    (depth0, depth1), K0, K1, T_0to1 = megadepth_pair()
    height, width = depth0.shape[1:]
    y, x = torch.meshgrid(torch.arange(0, height, 8.0), torch.arange(0, width, 8.0), indexing="ij")
    points = torch.stack([x, y], -1).reshape(1, -1, 2).double()
    valid, warped = warp_depth(points, depth0, depth1, K0, K1, T_0to1)
    assert valid.sum() > 1000  # overlap 0.64: thousands of the 30k grid points are seen by both
    back_valid, back = warp_depth(warped[valid][None], depth1, depth0, K1, K0, torch.linalg.inv(T_0to1))
    assert back_valid.float().mean() >= 0.99
    error = (back[0] - points[valid]).norm(dim=-1)[back_valid[0]]
    # nearest-pixel depth reads move a point by about a pixel on depth edges; most come back to < 1 px
    assert (error < 1.0).float().mean() >= 0.97
    assert math.isfinite(error.max().item())


def test_depth_is_interpolated_on_surfaces_and_not_across_edges():
    from geometry.warp import interpolate_depth

    ramp = torch.arange(10.0)[None, None, :].expand(1, 4, 10) + 10.0  # depth 10..19 along x
    step = ramp.clone()
    step[..., 5:] = 50.0  # a depth edge between x = 4 and x = 5
    points = torch.tensor([[[2.25, 1.5], [4.5, 1.0], [7.0, 2.0]]])
    assert torch.allclose(interpolate_depth(ramp, points)[0], torch.tensor([12.25, 14.5, 17.0]))
    edge = interpolate_depth(step, points)[0]
    assert edge[0] == 12.25 and edge[1] in (14.0, 50.0) and edge[2] == 50.0  # nearest pixel at the edge


def test_image_warp_moves_pixels_where_the_homography_maps_them():
    """An integer shift moves every pixel exactly; the points of a perspective warp land where
    `apply_homography` says (a bright dot, found by its centroid)."""
    image = (np.arange(20 * 30) % 251).astype(np.uint8).reshape(20, 30)
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]])
    moved = warp_image(image, shift)
    assert moved.shape == image.shape
    np.testing.assert_array_equal(moved[2:, 3:], image[:-2, :-3])
    assert (moved[:2] == 0).all() and (moved[:, :3] == 0).all()
    assert warp_image(image, shift, size=(40, 25)).shape == (25, 40)

    dot = np.zeros((60, 80), np.float32)
    dot[20:23, 30:33] = 1.0  # centred on (31, 21)
    H = np.array([[0.9, -0.1, 8.0], [0.05, 1.1, -3.0], [2e-4, 1e-4, 1.0]])
    warped = warp_image(dot, H)
    rows, cols = np.nonzero(warped)
    centroid = np.average(np.c_[cols, rows], axis=0, weights=warped[rows, cols])
    np.testing.assert_allclose(centroid, apply_homography(H, [[31.0, 21.0]])[0], atol=0.1)
