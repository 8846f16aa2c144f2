"""The benchmark metrics on exact synthetic geometry and hand-computed cases."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from evaluation.metrics import (
    EPIPOLAR_THRESHOLD_MEGADEPTH,
    EPIPOLAR_THRESHOLD_SCANNET,
    HOMOGRAPHY_AUC_THRESHOLDS_PX,
    POSE_AUC_THRESHOLDS_DEG,
    PairResult,
    PoseError,
    epipolar_errors,
    error_auc,
    homography_error,
    match_precision,
    mean_average_accuracy,
    multiview_pose_errors,
    pose_error,
    score_pose,
    summarize,
    summarize_groups,
)

K0 = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
K1 = np.array([[500.0, 0, 300], [0, 510, 250], [0, 0, 1]])


def rotation(axis, degrees) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis, float) / np.linalg.norm(axis) * np.radians(degrees))[0]


def two_view(num_points: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A relative pose (4, 4) and the exact pixel projections (N, 2) of random points in both cameras."""
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation([0.2, 1.0, 0.1], 12.0), [0.5, 0.05, 0.1]
    X0 = rng.uniform([-2, -1.5, 4], [2, 1.5, 9], (num_points, 3))
    X1 = X0 @ T[:3, :3].T + T[:3, 3]
    return T, ((X0 / X0[:, 2:]) @ K0.T)[:, :2], ((X1 / X1[:, 2:]) @ K1.T)[:, :2]


def test_auc_hand_computed():
    """errors [1, 3, inf, 7] sort to [1, 3, 7, inf] with recalls 1/4, 2/4, 3/4, 1; with (0, 0) in front:
    at 5 px the curve is (0, 0) (1, .25) (3, .5) then flat to (5, .5): trapezoids .125 + .75 + 1 = 1.875,
    / 5 = 37.5 %. At 10: .125 + .75 + (.5 + .75) / 2 * 4 = 3.375, plus flat .75 * 3 = 2.25: 5.625 / 10.
    At 1 nothing is strictly below the threshold: 0."""
    aucs = error_auc([1.0, 3.0, np.inf, 7.0], (1.0, 5.0, 10.0))
    assert aucs == pytest.approx({1.0: 0.0, 5.0: 37.5, 10.0: 56.25}, abs=1e-12)
    assert error_auc([3.0, 7.0, 1.0, np.nan], (5.0,)) == pytest.approx({5.0: 37.5})  # unsorted, NaN fails
    assert error_auc([0.0, 0.0], POSE_AUC_THRESHOLDS_DEG) == {5.0: 100.0, 10.0: 100.0, 20.0: 100.0}
    assert error_auc([np.inf] * 3, (5.0,)) == {5.0: 0.0}
    with pytest.raises(ValueError):
        error_auc([], (5.0,))


def test_perfect_matches_give_zero_pose_error_and_full_auc():
    T, kpts0, kpts1 = two_view()
    error = pose_error(T, kpts0, kpts1, K0, K1)
    assert error.rotation_deg < 1e-3 and error.translation_deg < 1e-3
    assert error.num_inliers == len(kpts0)
    for auc in error_auc([error.max_deg] * 4, POSE_AUC_THRESHOLDS_DEG).values():
        assert auc == pytest.approx(100.0, abs=1e-3)


def test_pose_failure_is_infinite():
    T, kpts0, kpts1 = two_view()
    error = pose_error(T, kpts0[:4], kpts1[:4], K0, K1)
    assert error == PoseError.failure() and error.max_deg == np.inf
    assert error_auc([error.max_deg], POSE_AUC_THRESHOLDS_DEG) == {5.0: 0.0, 10.0: 0.0, 20.0: 0.0}


@pytest.mark.parametrize("degrees", [0.5, 2.0, 7.0, 30.0])
def test_known_rotation_and_translation_errors(degrees):
    T, _, _ = two_view()
    t = T[:3, 3]
    off_axis = np.cross(t, [0.0, 0.0, 1.0])  # perpendicular to t: rotating t about it turns it by `degrees`
    error = score_pose(T, T[:3, :3] @ rotation([1, 2, 3], degrees), -2.0 * t, num_inliers=7)
    assert error.rotation_deg == pytest.approx(degrees, abs=1e-6)
    assert error.translation_deg == pytest.approx(0.0, abs=1e-5)  # scale and sign free; arccos near 1: ~1e-6
    error = score_pose(T, T[:3, :3], rotation(off_axis, degrees / 2) @ t)
    assert (error.rotation_deg, error.translation_deg) == pytest.approx((0.0, degrees / 2), abs=1e-5)
    assert error.max_deg == pytest.approx(degrees / 2, abs=1e-6)


def test_single_known_error_auc():
    """One pair 2 degrees off: the curve rises to 1 at 2 and stays: (2 * 1 / 2 + 3 * 1) / 5 = 80 %."""
    T, _, _ = two_view()
    error = score_pose(T, T[:3, :3] @ rotation([0, 0, 1], 2.0), T[:3, 3])
    assert error_auc([error.max_deg], (5.0,))[5.0] == pytest.approx(80.0, abs=1e-6)


def test_epipolar_error_is_squared_and_normalized():
    """A camera moving along x has horizontal epipolar lines in both images: a match moved d pixels
    vertically in image 1 (focal f_y) is d / f_y off each line, so the error is 2 (d / f_y)^2."""
    T = np.eye(4)
    T[0, 3] = 0.3
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    rng = np.random.default_rng(0)
    X0 = rng.uniform([-2, -1.5, 4], [2, 1.5, 9], (8, 3))
    kpts0 = ((X0 / X0[:, 2:]) @ K.T)[:, :2]
    kpts1 = (((X0 + T[:3, 3]) / X0[:, 2:]) @ K.T)[:, :2]
    offsets = np.array([0, 0, 0, 0, 0, 0, 10.0, -15.0])  # pixels
    errors = epipolar_errors(kpts0, kpts1 + np.stack([np.zeros(8), offsets], -1), K, K, T)
    assert errors == pytest.approx(2 * (offsets / 500) ** 2, abs=1e-15)
    # 10 px: 8e-4, over both thresholds; the exact six are under them
    assert match_precision(errors, EPIPOLAR_THRESHOLD_SCANNET) == pytest.approx(0.75)
    assert match_precision(errors, EPIPOLAR_THRESHOLD_MEGADEPTH) == pytest.approx(0.75)
    # 4 px: 1.28e-4, correct on ScanNet, wrong on MegaDepth
    errors = epipolar_errors(kpts0[:2], kpts1[:2] + [[0, 4.0], [0, 0]], K, K, T)
    assert match_precision(errors, EPIPOLAR_THRESHOLD_SCANNET) == 1.0
    assert match_precision(errors, EPIPOLAR_THRESHOLD_MEGADEPTH) == 0.5


def test_epipolar_precision_general_pose():
    """Exact matches are all correct; the same matches moved 20 px across their epipolar line in image 1 are
    all wrong; a pair with no matches scores 0."""
    T, kpts0, kpts1 = two_view(num_points=50)
    exact = epipolar_errors(kpts0, kpts1, K0, K1, T)
    assert exact.max() < 1e-20
    F = np.linalg.inv(K1).T @ (np.cross(np.eye(3), T[:3, 3]) @ T[:3, :3]).T @ np.linalg.inv(K0)
    lines = np.concatenate([kpts0, np.ones((50, 1))], 1) @ F.T  # epipolar lines in image-1 pixels
    normals = lines[:, :2] / np.linalg.norm(lines[:, :2], axis=1, keepdims=True)
    moved = epipolar_errors(kpts0, kpts1 + 20 * normals, K0, K1, T)
    assert moved.min() > EPIPOLAR_THRESHOLD_SCANNET
    mixed = np.concatenate([exact[:30], moved[30:]])
    assert match_precision(exact, EPIPOLAR_THRESHOLD_SCANNET) == 1.0
    assert match_precision(moved, EPIPOLAR_THRESHOLD_SCANNET) == 0.0
    assert match_precision(mixed, EPIPOLAR_THRESHOLD_SCANNET) == pytest.approx(0.6)
    assert match_precision(np.zeros(0), EPIPOLAR_THRESHOLD_SCANNET) == 0.0
    assert epipolar_errors(np.zeros((0, 2)), np.zeros((0, 2)), K0, K1, T).shape == (0,)


def test_homography_exact_matches_give_full_auc():
    rng = np.random.default_rng(1)
    H = np.array([[1.1, 0.05, 10.0], [-0.03, 0.95, -5.0], [2e-4, 1e-4, 1.0]])
    errors = []
    for _ in range(3):
        kpts0 = rng.uniform(0, 400, (100, 2))
        kpts1 = cv2.perspectiveTransform(kpts0[None], H)[0]
        errors.append(homography_error(H, kpts0, kpts1, 300, 400))
    assert max(errors) < 1e-4
    for auc in error_auc(errors, HOMOGRAPHY_AUC_THRESHOLDS_PX).values():
        assert auc == pytest.approx(100.0, abs=1e-3)
    assert homography_error(H, kpts0[:3], kpts1[:3], 300, 400) == np.inf


def test_summarize_pose_and_groups():
    errors = [1.0, 3.0, np.inf, 7.0]  # the hand-computed AUC case
    results = [
        PairResult(f"p{i}", "a" if i < 2 else "b", num_matches=10 * (i + 1), runtime_s=0.01 * (i + 1) ** 2,
                   pose=PoseError(e / 2, e, 5), precision=i / 4)
        for i, e in enumerate(errors)
    ]
    summary = summarize(results, "pose")
    auc20 = error_auc(errors, (20.0,))[20.0]
    assert summary == pytest.approx({"auc@5": 37.5, "auc@10": 56.25, "auc@20": auc20, "mAA": (93.75 + auc20) / 3,
                                     "precision": 37.5, "matches": 25.0, "runtime_ms": 65.0, "pairs": 4.0})  # median
    groups = summarize_groups(results, "pose")
    assert list(groups) == ["a", "b"] and groups["b"]["auc@5"] == 0.0 and groups["a"]["matches"] == 15.0
    with pytest.raises(ValueError, match="p0"):
        summarize(results, "homography")


def test_summarize_homography():
    results = [PairResult("h0", "i", 100, 0.02, homography_error_px=0.0),
               PairResult("h1", "v", 50, 0.04, homography_error_px=np.inf)]
    summary = summarize(results, "homography")
    assert summary == pytest.approx({"auc@1": 50.0, "auc@3": 50.0, "auc@5": 50.0, "auc@10": 50.0, "matches": 75.0,
                                     "runtime_ms": 30.0, "pairs": 2.0})
    with pytest.raises(ValueError):
        summarize(results, "depth")


def _cameras_on_a_line(count: int = 5) -> dict[str, np.ndarray]:
    """World-to-camera poses (4, 4) of `count` cameras of one orientation on the world x axis, looking along z."""
    rotation = Rotation.from_euler("xyz", [0.1, -0.2, 0.05]).as_matrix()
    poses = {}
    for k in range(count):
        pose = np.eye(4)
        pose[:3, :3] = rotation
        pose[:3, 3] = -rotation @ np.array([0.7 * k, 0.0, 0.0])  # centre (0.7 k, 0, 0)
        poses[f"image{k}"] = pose
    return poses


def test_a_reconstruction_equal_to_the_truth_up_to_a_similarity_has_maa_100():
    truth = _cameras_on_a_line()
    for k, pose in enumerate(truth.values()):  # each camera turned its own way: relative rotations differ
        centre = -pose[:3, :3].T @ pose[:3, 3]
        pose[:3, :3] = Rotation.from_euler("xyz", [0.1 * k, -0.05 * k, 0.2]).as_matrix()
        pose[:3, 3] = -pose[:3, :3] @ centre
    similarity = np.eye(4)  # world' = 2.5 R X + t
    similarity[:3, :3] = 2.5 * Rotation.from_euler("zyx", [40, -15, 70], degrees=True).as_matrix()
    similarity[:3, 3] = [3.0, -1.0, 7.0]
    estimated = {}
    for name, pose in truth.items():
        moved = pose @ np.linalg.inv(similarity)  # camera from world', scaled by 1 / 2.5
        moved[:3, :] *= 2.5  # rigid again in the scaled world: translations scale, as a reconstruction's do
        moved[3] = [0, 0, 0, 1]
        estimated[name] = moved
    errors = multiview_pose_errors(estimated, truth)
    assert len(errors) == 10 and max(error.max_deg for error in errors.values()) < 1e-5
    assert mean_average_accuracy(error.max_deg for error in errors.values()) == 100.0


def test_one_camera_turned_by_5_5_degrees_gives_the_analytic_maa():
    """Camera 2 turned by 5.5 degrees about the line of the cameras (its centre kept): its 4 pairs of 10 have a
    rotation error of 5.5 degrees and no translation error, so they fail thresholds 1 to 5 and pass 6 to 10:
    mAA = (5 x 6/10 + 5 x 10/10) / 10 = 80%. Camera 2 unregistered instead: its pairs fail every threshold, 60%."""
    truth = _cameras_on_a_line()
    estimated = {name: pose.copy() for name, pose in truth.items()}
    axis = truth["image2"][:3, :3] @ np.array([1.0, 0.0, 0.0])  # the cameras' line, in camera 2's frame
    turn = Rotation.from_rotvec(np.radians(5.5) * axis).as_matrix()
    estimated["image2"][:3, :] = turn @ estimated["image2"][:3, :]
    errors = multiview_pose_errors(estimated, truth)
    turned = [pair for pair in errors if "image2" in pair]
    assert len(turned) == 4
    for pair, error in errors.items():
        assert error.rotation_deg == pytest.approx(5.5 if pair in turned else 0.0, abs=1e-6)
        assert error.translation_deg == pytest.approx(0.0, abs=1e-5)
    assert mean_average_accuracy(error.max_deg for error in errors.values()) == pytest.approx(80.0)
    del estimated["image2"]
    errors = multiview_pose_errors(estimated, truth)
    assert mean_average_accuracy(error.max_deg for error in errors.values()) == pytest.approx(60.0)
