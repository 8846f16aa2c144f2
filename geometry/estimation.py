"""Relative pose and homography from matches, and their errors against ground truth.

Three estimators: "opencv", RANSAC as LoFTR's and SuperGlue's evaluations run it (cv2.findEssentialMat on
normalised points, cv2.findHomography); "magsac", the same OpenCV calls with MAGSAC++ (Barath et al., CVPR
2020), whose threshold is the upper bound of its noise scale; and "poselib", PoseLib's LO-RANSAC with its
non-linear refinement, as glue-factory and later papers estimate (thresholds in pixels, Sampson error for the
pose). These run once per
test pair on the CPU, with numpy arrays, as evaluation does.
"""

import cv2
import numpy as np
import poselib

# LoFTR's evaluation: RANSAC threshold 0.5 px, normalized by the mean focal length; confidence 0.99999.
POSE_RANSAC_THRESHOLD_PX = 0.5
POSE_RANSAC_CONFIDENCE = 0.99999
HOMOGRAPHY_RANSAC_THRESHOLD_PX = 3.0  # OpenCV's default for cv2.findHomography, as HPatches evaluations use
ESTIMATORS = ("opencv", "magsac", "poselib")
ESTIMATOR_NAMES = {"opencv": "opencv RANSAC", "magsac": "opencv MAGSAC++", "poselib": "poselib LO-RANSAC"}


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is not one of {', '.join(ESTIMATORS)}")


def estimate_pose(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    threshold_px: float = POSE_RANSAC_THRESHOLD_PX,
    confidence: float = POSE_RANSAC_CONFIDENCE,
    seed: int | None = 0,
    estimator: str = "opencv",
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Relative pose from pixel matches (N, 2): essential matrix with RANSAC, then the cheirality check.

    "opencv" (and "magsac"): the matches are normalized with K0 / K1 and the pixel threshold divided by the mean
    of the four focal lengths, as LoFTR (and SuperGlue) evaluate. "poselib": LO-RANSAC on the Sampson error in pixels of
    the calibrated cameras, refined on its inliers. `seed` seeds the sampling so runs repeat.
    Returns (R (3, 3), t (3,) unit vector, inliers (N,) bool), or None with fewer than 5 matches or no model.
    """
    check_estimator(estimator)
    if len(kpts0) < 5:
        return None
    if estimator == "poselib":
        return _poselib_pose(kpts0, kpts1, K0, K1, threshold_px, confidence, seed)
    if seed is not None:
        cv2.setRNGSeed(seed)
    focal = np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
    x0 = (kpts0 - K0[[0, 1], [2, 2]][None]) / K0[[0, 1], [0, 1]][None]
    x1 = (kpts1 - K1[[0, 1], [2, 2]][None]) / K1[[0, 1], [0, 1]][None]
    E, mask = cv2.findEssentialMat(
        x0, x1, np.eye(3), threshold=threshold_px / focal, prob=confidence, method=_OPENCV_METHOD[estimator]
    )
    if E is None:
        return None
    best = None
    for candidate in np.split(E, len(E) // 3):  # OpenCV may return several solutions stacked
        count, R, t, _ = cv2.recoverPose(candidate, x0, x1, np.eye(3), 1e9, mask=mask.copy())
        if best is None or count > best[0]:
            best = (count, R, t[:, 0], mask.ravel() > 0)
    return best[1], best[2], best[3]


_OPENCV_METHOD = {"opencv": cv2.RANSAC, "magsac": cv2.USAC_MAGSAC}


def _poselib_pose(kpts0, kpts1, K0, K1, threshold_px, confidence, seed):
    def camera(K):
        return {"model": "PINHOLE", "width": 0, "height": 0, "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}
    options = {"max_epipolar_error": threshold_px, "success_prob": confidence, "seed": 0 if seed is None else seed}
    pose, info = poselib.estimate_relative_pose(np.ascontiguousarray(kpts0, np.float64),
                                                np.ascontiguousarray(kpts1, np.float64),
                                                camera(K0), camera(K1), options)
    if info["num_inliers"] < 5:
        return None
    t = np.asarray(pose.t, np.float64)
    return np.asarray(pose.R, np.float64), t / np.linalg.norm(t), np.asarray(info["inliers"], bool)


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two vectors."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def pose_errors(T_0to1: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(translation error, rotation error) in degrees of an estimate against the true pose (4, 4).

    The translation of an essential matrix is known up to scale and sign, so its error is the angle between
    the directions, folded to [0, 90] (min(e, 180 - e)), as LoFTR and SuperGlue report it.
    """
    t_err = angle_between(t, T_0to1[:3, 3])
    t_err = min(t_err, 180.0 - t_err)
    cos = (np.trace(R.T @ T_0to1[:3, :3]) - 1) / 2
    return t_err, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def estimate_homography(kpts0: np.ndarray, kpts1: np.ndarray, threshold_px: float = HOMOGRAPHY_RANSAC_THRESHOLD_PX,
                        seed: int | None = 0, estimator: str = "opencv") -> np.ndarray | None:
    """Homography (3, 3) image 0 -> image 1 from pixel matches with OpenCV's RANSAC (its default 3 px
    threshold) or MAGSAC++, or PoseLib's LO-RANSAC on the reprojection error; None with fewer than 4 matches
    or no model."""
    check_estimator(estimator)
    if len(kpts0) < 4:
        return None
    if estimator == "poselib":
        options = {"max_reproj_error": threshold_px, "seed": 0 if seed is None else seed}
        H, info = poselib.estimate_homography(np.ascontiguousarray(kpts0, np.float64),
                                              np.ascontiguousarray(kpts1, np.float64), options)
        return H if info["num_inliers"] >= 4 else None
    if seed is not None:
        cv2.setRNGSeed(seed)
    H, _ = cv2.findHomography(kpts0, kpts1, _OPENCV_METHOD[estimator], threshold_px)
    return H


def homography_corner_error(H_true: np.ndarray, H_est: np.ndarray, height: int, width: int) -> float:
    """Mean distance in pixels between the image-0 corners mapped by the true and the estimated homography
    (the HPatches measure LoFTR reports)."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
    true = corners @ H_true.T
    est = corners @ H_est.T
    return float(np.linalg.norm(true[:, :2] / true[:, 2:] - est[:, :2] / est[:, 2:], axis=1).mean())
