"""score_matches: one pair's PairResult from exact matches, displaced matches and too few matches, for poses and
homographies alike."""

import cv2
import numpy as np
import pytest

from evaluation.metrics import epipolar_errors, homography_error, pose_error
from evaluation.scoring import score_matches

K0 = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
K1 = np.array([[500.0, 0, 300], [0, 510, 250], [0, 0, 1]])
H = np.array([[1.1, 0.05, 10.0], [-0.03, 0.95, -5.0], [2e-4, 1e-4, 1.0]])


def two_view(num_points: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A relative pose (4, 4) and the exact pixels (N, 2) of random points in both cameras."""
    rng = np.random.default_rng(0)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = cv2.Rodrigues(np.array([0.02, 0.2, 0.01]))[0], [0.5, 0.05, 0.1]
    X0 = rng.uniform([-2, -1.5, 4], [2, 1.5, 9], (num_points, 3))
    X1 = X0 @ T[:3, :3].T + T[:3, 3]
    return T, ((X0 / X0[:, 2:]) @ K0.T)[:, :2], ((X1 / X1[:, 2:]) @ K1.T)[:, :2]


def test_a_pose_pair_scores_pose_errors_and_precision():
    T, kpts0, kpts1 = two_view()
    kpts1[:20, 1] += 15.0  # 20 matches far off their epipolar lines
    result, errors = score_matches(kpts0, kpts1, name="p", group="g", runtime_s=0.25, K0=K0, K1=K1, T_0to1=T,
                                   epipolar_threshold=1e-4)
    assert (result.name, result.group, result.num_matches, result.runtime_s) == ("p", "g", 100, 0.25)
    np.testing.assert_array_equal(errors, epipolar_errors(kpts0, kpts1, K0, K1, T))
    assert result.precision == pytest.approx(0.8)
    assert result.pose == pose_error(T, kpts0, kpts1, K0, K1, seed=0)
    assert result.pose.max_deg < 0.1 and result.homography_error_px is None
    unthresholded, _ = score_matches(kpts0, kpts1, name="p", K0=K0, K1=K1, T_0to1=T)
    assert unthresholded.precision is None


def test_the_pose_ransac_threshold_is_passed_on():
    T, kpts0, kpts1 = two_view()
    noisy = kpts1 + np.random.default_rng(1).normal(0, 1.0, kpts1.shape)
    inliers = []
    for threshold in (0.5, 3.0):
        result, _ = score_matches(kpts0, noisy, name="p", K0=K0, K1=K1, T_0to1=T, ransac_threshold_px=threshold)
        assert result.pose == pose_error(T, kpts0, noisy, K0, K1, threshold_px=threshold, seed=0)
        inliers.append(result.pose.num_inliers)
    assert inliers[0] < inliers[1]  # 1 px noise: a 3 px threshold keeps more matches than 0.5 px


def test_a_homography_pair_scores_the_corner_error_of_image0():
    kpts0 = np.random.default_rng(2).uniform(0, 400, (50, 2))
    kpts1 = cv2.perspectiveTransform(kpts0[None], H)[0]
    result, errors = score_matches(kpts0, kpts1, name="h", H_0to1=H, image0_size=(300, 400))
    assert errors is None and result.pose is None and result.precision is None
    assert result.homography_error_px < 1e-4
    moved, _ = score_matches(kpts0, kpts1 + [3.0, 0.0], name="h", H_0to1=H, image0_size=(300, 400))
    assert moved.homography_error_px == pytest.approx(homography_error(H, kpts0, kpts1 + [3.0, 0.0], 300, 400))
    failed, _ = score_matches(kpts0[:3], kpts1[:3], name="h", H_0to1=H, image0_size=(300, 400))
    assert failed.homography_error_px == np.inf and failed.num_matches == 3


def test_no_matches_is_a_failure_not_a_crash():
    T, _, _ = two_view()
    result, errors = score_matches(np.zeros((0, 2)), np.zeros((0, 2)), name="p", K0=K0, K1=K1, T_0to1=T,
                                   epipolar_threshold=1e-4)
    assert result.pose.max_deg == np.inf and result.precision == 0.0 and errors.shape == (0,)


def test_incomplete_ground_truth_is_named():
    T, kpts0, kpts1 = two_view()
    with pytest.raises(ValueError, match="pair p: a pose needs the intrinsics"):
        score_matches(kpts0, kpts1, name="p", T_0to1=T)
    with pytest.raises(ValueError, match="pair h: give a pose .* or a homography"):
        score_matches(kpts0, kpts1, name="h", H_0to1=H)
