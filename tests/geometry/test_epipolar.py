"""Epipolar distances against hand-derived values."""

import torch

from geometry.epipolar import essential_from_pose, normalize_points, skew, symmetric_epipolar_distance


def translation_x() -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = 1.0
    return T


def test_skew_is_the_cross_product():
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose((skew(a) @ b[..., None])[..., 0], torch.linalg.cross(a, b))


def test_true_matches_have_zero_distance():
    R = torch.linalg.matrix_exp(skew(torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)))
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = R, torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64)
    X0 = torch.rand(50, 3, dtype=torch.float64) + torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    X1 = X0 @ R.T + T[:3, 3]
    x0, x1 = X0[:, :2] / X0[:, 2:], X1[:, :2] / X1[:, 2:]
    E = essential_from_pose(T)
    assert symmetric_epipolar_distance(x0, x1, E).max() < 1e-20


def test_vertical_offset_under_horizontal_translation():
    """A camera moving along x has horizontal epipolar lines of unit normal: a match off by d vertically is d
    from each line, so the symmetric distance is 2 d^2."""
    E = essential_from_pose(translation_x())
    x0 = torch.tensor([[0.1, 0.2], [-0.3, 0.0], [0.5, -0.4]], dtype=torch.float64)
    d = torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)
    x1 = x0 + torch.stack([torch.tensor([0.7, -0.1, 0.2], dtype=torch.float64), d], -1)
    assert torch.allclose(symmetric_epipolar_distance(x0, x1, E), 2 * d**2)


def test_normalize_points_inverts_the_intrinsics():
    K = torch.tensor([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    x = torch.randn(10, 2, dtype=torch.float64)
    pixels = x @ K[:2, :2].T + K[:2, 2]
    assert torch.allclose(normalize_points(pixels, K), x)
