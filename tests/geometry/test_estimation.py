"""Pose and homography estimation on noise-free synthetic matches, and the error measures on exact cases."""

import cv2
import numpy as np
import pytest

from geometry.estimation import ESTIMATORS, estimate_homography, estimate_pose, homography_corner_error, pose_errors


def rotation(axis, degrees) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis, float) / np.linalg.norm(axis) * np.radians(degrees))[0]


def test_pose_from_noise_free_matches():
    rng = np.random.default_rng(0)
    K0 = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    K1 = np.array([[500.0, 0, 300], [0, 510, 250], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation([0.2, 1.0, 0.1], 12.0), [0.5, 0.05, 0.1]
    X0 = rng.uniform([-2, -1.5, 4], [2, 1.5, 9], (300, 3))
    X1 = X0 @ T[:3, :3].T + T[:3, 3]
    kpts0 = (X0 / X0[:, 2:]) @ K0.T
    kpts1 = (X1 / X1[:, 2:]) @ K1.T
    R, t, inliers = estimate_pose(kpts0[:, :2], kpts1[:, :2], K0, K1)
    t_err, R_err = pose_errors(T, R, t)
    assert t_err < 0.1 and R_err < 0.05
    assert inliers.mean() > 0.95
    assert estimate_pose(kpts0[:4, :2], kpts1[:4, :2], K0, K1) is None  # fewer than five matches


def test_pose_errors_exact_cases():
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation([0, 0, 1], 30.0), [1.0, 2.0, 0.5]
    R_off = T[:3, :3] @ rotation([1, 0, 0], 5.0)
    assert np.allclose(pose_errors(T, T[:3, :3], -3 * T[:3, 3]), (0.0, 0.0), atol=1e-6)  # scale and sign free
    t_err, R_err = pose_errors(T, R_off, np.cross(T[:3, 3], [0, 0, 1]))
    assert abs(t_err - 90.0) < 1e-6 and abs(R_err - 5.0) < 1e-6


def test_homography_estimate_and_corner_error():
    rng = np.random.default_rng(1)
    H = np.array([[1.1, 0.05, 10.0], [-0.03, 0.95, -5.0], [2e-4, 1e-4, 1.0]])
    kpts0 = rng.uniform(0, 400, (100, 2))
    kpts1 = cv2.perspectiveTransform(kpts0[None], H)[0]
    estimate = estimate_homography(kpts0, kpts1)
    assert homography_corner_error(H, estimate, 300, 400) < 1e-4  # OpenCV refines in float precision
    shifted = np.array([[1.0, 0, 3.0], [0, 1.0, 4.0], [0, 0, 1.0]])
    assert abs(homography_corner_error(np.eye(3), shifted, 300, 400) - 5.0) < 1e-12
    assert estimate_homography(kpts0[:3], kpts1[:3]) is None


def two_view_scene(count: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    K0 = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    K1 = np.array([[500.0, 0, 300], [0, 510, 250], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation([0.2, 1.0, 0.1], 12.0), [0.5, 0.05, 0.1]
    X0 = rng.uniform([-2, -1.5, 4], [2, 1.5, 9], (count, 3))
    X1 = X0 @ T[:3, :3].T + T[:3, 3]
    return K0, K1, T, ((X0 / X0[:, 2:]) @ K0.T)[:, :2], ((X1 / X1[:, 2:]) @ K1.T)[:, :2]


def test_every_estimator_is_exact_on_exact_matches():
    K0, K1, T, kpts0, kpts1 = two_view_scene()
    for estimator in ESTIMATORS:
        R, t, inliers = estimate_pose(kpts0, kpts1, K0, K1, estimator=estimator)
        assert max(pose_errors(T, R, t)) < 1e-3 and inliers.all(), estimator
        assert estimate_pose(kpts0[:4], kpts1[:4], K0, K1, estimator=estimator) is None
    H = np.array([[1.1, 0.05, 10.0], [-0.03, 0.95, -5.0], [2e-4, 1e-4, 1.0]])
    points = np.random.default_rng(1).uniform(0, 400, (100, 2))
    for estimator in ESTIMATORS:
        estimate = estimate_homography(points, cv2.perspectiveTransform(points[None], H)[0], estimator=estimator)
        # OpenCV stops near 3e-6 px (RANSAC) and 4e-5 px (MAGSAC++), PoseLib under 1e-6
        assert homography_corner_error(H, estimate, 300, 400) < 1e-4, estimator


def test_poselib_is_at_least_as_accurate_on_noisy_matches():
    """1 px noise and 30% outliers, 10 seeded scenes: LO-RANSAC's mean pose error is at most OpenCV's RANSAC's
    and so is MAGSAC++'s (measured: 1.34 and 4.20 against 4.83 degrees)."""
    errors = {estimator: [] for estimator in ESTIMATORS}
    for seed in range(10):
        K0, K1, T, kpts0, kpts1 = two_view_scene(400, seed)
        rng = np.random.default_rng(100 + seed)
        kpts1 = kpts1 + rng.normal(0, 1.0, kpts1.shape)
        outliers = rng.random(len(kpts1)) < 0.3
        kpts1[outliers] = rng.uniform([0, 0], [640, 480], (int(outliers.sum()), 2))
        for estimator in ESTIMATORS:
            R, t, _ = estimate_pose(kpts0, kpts1, K0, K1, threshold_px=1.0, estimator=estimator)
            errors[estimator].append(max(pose_errors(T, R, t)))
    assert np.mean(errors["poselib"]) <= np.mean(errors["opencv"])
    assert np.mean(errors["magsac"]) <= np.mean(errors["opencv"])


def test_an_unknown_estimator_is_named():
    K0, K1, _, kpts0, kpts1 = two_view_scene()
    with pytest.raises(ValueError, match="estimator='magic'.*opencv, magsac, poselib"):
        estimate_pose(kpts0, kpts1, K0, K1, estimator="magic")
