"""The matching metrics of LoFTR and SuperGlue: pose and homography AUC, epipolar precision, and a summary.

Estimation and the error measures themselves live in `geometry` (the same code labels training pairs); this
module scores one pair at a time and aggregates a benchmark's pairs into the numbers the papers report.
All errors are per pair; a failed estimate (too few matches, no model) scores an infinite error, which counts
as a miss at every threshold.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from geometry.epipolar import essential_from_pose, normalize_points, symmetric_epipolar_distance
from geometry.estimation import (
    POSE_RANSAC_CONFIDENCE,
    POSE_RANSAC_THRESHOLD_PX,
    estimate_homography,
    estimate_pose,
    homography_corner_error,
    pose_errors,
)

# LoFTR sec. 4.2 (after SuperGlue sec. 5.2): AUC of the pose error, the larger of the angular errors in
# rotation and translation, at 5, 10 and 20 degrees.
POSE_AUC_THRESHOLDS_DEG = (5.0, 10.0, 20.0)
# LoFTR sec. 4.1 (HPatches): AUC of the mean corner error at 3, 5 and 10 pixels; glue-factory's tables add 1 px.
HOMOGRAPHY_AUC_THRESHOLDS_PX = (1.0, 3.0, 5.0, 10.0)
# The Image Matching Benchmark (Jin et al., IJCV 2021; the IMC challenges): mean average accuracy of the pose error
# (the larger of the rotation and translation angular errors) at thresholds of 1 to 10 degrees.
MAA_THRESHOLDS_DEG = tuple(float(degrees) for degrees in range(1, 11))
# Squared symmetric epipolar distance (normalized coordinates) below which a match counts as correct: LoFTR's
# TRAINER.EPI_ERR_THR, "5e-4 for ScanNet, 1e-4 for MegaDepth (from SuperGlue)".
EPIPOLAR_THRESHOLD_SCANNET = 5e-4
EPIPOLAR_THRESHOLD_MEGADEPTH = 1e-4


def error_auc(errors: Iterable[float], thresholds: Sequence[float]) -> dict[float, float]:
    """Area under the cumulative error curve up to each threshold, divided by the threshold, in percent.

    errors: one error per pair (degrees, pixels, ...); inf or NaN is a failure, never under any threshold.
    The curve is SuperGlue's and LoFTR's: sorted errors e_i against recall (i + 1) / N, starting at (0, 0),
    linear between points and flat from the last error below the threshold to the threshold.
    Returns {threshold: auc in [0, 100]}; 100 when every error is 0.
    """
    errors = np.sort(np.nan_to_num(np.asarray(list(errors), np.float64), nan=np.inf))
    if errors.size == 0:
        raise ValueError("error_auc needs at least one error")
    if not thresholds or not all(0 < threshold < np.inf for threshold in thresholds):  # NaN fails both
        raise ValueError(f"AUC thresholds must be positive and finite, got {thresholds}")
    errors = np.concatenate([[0.0], errors])
    recall = np.arange(errors.size) / (errors.size - 1)
    aucs = {}
    for threshold in thresholds:
        last = int(np.searchsorted(errors, threshold))  # points strictly below the threshold
        x = np.concatenate([errors[:last], [threshold]])
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        aucs[threshold] = float(100 * np.trapezoid(y, x) / threshold)
    return aucs


def mean_average_accuracy(errors: Iterable[float], thresholds: Sequence[float] = MAA_THRESHOLDS_DEG) -> float:
    """IMC's mAA in percent: the share of `errors` (one per pair; inf or NaN a failure) below each threshold,
    averaged over the thresholds."""
    errors = np.nan_to_num(np.asarray(list(errors), np.float64), nan=np.inf)
    if errors.size == 0:
        raise ValueError("mean_average_accuracy needs at least one error")
    return float(100 * np.mean([np.mean(errors < threshold) for threshold in thresholds]))


def multiview_pose_errors(estimated: dict[str, np.ndarray | None], truth: dict[str, np.ndarray]
                          ) -> dict[tuple[str, str], "PoseError"]:
    """The relative pose error of every pair of a bag's images (`truth`'s names, in order) from a
    reconstruction: `estimated[name]` its world-to-camera (4, 4) (any similarity frame: relative rotations and
    translation directions do not see it), None or absent when the image was not registered, which fails all
    its pairs (IMC's rule); `truth[name]` the true world-to-camera (4, 4)."""
    names = list(truth)
    errors = {}
    for index, name0 in enumerate(names):
        for name1 in names[index + 1:]:
            pose0, pose1 = estimated.get(name0), estimated.get(name1)
            if pose0 is None or pose1 is None:
                errors[(name0, name1)] = PoseError.failure()
                continue
            relative = np.asarray(pose1, np.float64) @ np.linalg.inv(np.asarray(pose0, np.float64))
            true_relative = np.asarray(truth[name1], np.float64) @ np.linalg.inv(np.asarray(truth[name0], np.float64))
            errors[(name0, name1)] = score_pose(true_relative, relative[:3, :3], relative[:3, 3])
    return errors


@dataclass(frozen=True)
class PoseError:
    """Angular errors in degrees of an estimated relative pose; inf when estimation failed.

    translation_deg is folded to [0, 90] (the essential matrix fixes the direction up to sign).
    num_inliers: RANSAC inliers of the estimate (0 on failure).
    """

    rotation_deg: float
    translation_deg: float
    num_inliers: int = 0

    @property
    def max_deg(self) -> float:
        """The pose error of the AUC: the larger of the rotation and translation errors."""
        return max(self.rotation_deg, self.translation_deg)

    @classmethod
    def failure(cls) -> "PoseError":
        return cls(np.inf, np.inf, 0)


def score_pose(T_0to1: np.ndarray, R: np.ndarray, t: np.ndarray, num_inliers: int = 0) -> PoseError:
    """PoseError of an estimate R (3, 3), t (3,) (camera 0 -> camera 1, t up to scale) against T_0to1 (4, 4)."""
    t_err, R_err = pose_errors(T_0to1, R, t)
    return PoseError(rotation_deg=R_err, translation_deg=t_err, num_inliers=int(num_inliers))


def pose_error(
    T_0to1: np.ndarray,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    threshold_px: float = POSE_RANSAC_THRESHOLD_PX,
    confidence: float = POSE_RANSAC_CONFIDENCE,
    seed: int | None = 0,
    estimator: str = "opencv",
) -> PoseError:
    """Estimate the relative pose from pixel matches kpts0, kpts1 (N, 2) with intrinsics K0, K1 (3, 3) and
    score it against T_0to1 (4, 4, camera 0 -> camera 1 coordinates).

    RANSAC as LoFTR evaluates ("opencv": threshold_px (0.5) divided by the mean focal length, confidence
    0.99999), or PoseLib's LO-RANSAC ("poselib"), seeded for repeatable runs. Fewer than 5 matches or no model
    gives PoseError.failure() (inf errors).
    """
    estimate = estimate_pose(kpts0, kpts1, K0, K1, threshold_px, confidence, seed, estimator)
    if estimate is None:
        return PoseError.failure()
    R, t, inliers = estimate
    return score_pose(T_0to1, R, t, int(inliers.sum()))


def epipolar_errors(
    kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray, T_0to1: np.ndarray
) -> np.ndarray:
    """Squared symmetric epipolar distance (N,) of pixel matches kpts0, kpts1 (N, 2), as LoFTR computes it:
    the sum of the squared distances of each point to the other's epipolar line, in normalized camera
    coordinates (pixels / focal length, so unitless and squared). A match d off both lines scores 2 d^2: the
    MegaDepth threshold 1e-4 is d = 0.7 % of the focal length, about 7 px at f = 1000 px.

    K0, K1: (3, 3) intrinsics; T_0to1: (4, 4) camera 0 -> camera 1. Its scale does not matter.
    """
    def as_tensor(array):
        return torch.as_tensor(np.asarray(array, np.float64))
    K0, K1, T_0to1 = as_tensor(K0), as_tensor(K1), as_tensor(T_0to1)
    x0 = normalize_points(as_tensor(kpts0).reshape(-1, 2), K0)
    x1 = normalize_points(as_tensor(kpts1).reshape(-1, 2), K1)
    return symmetric_epipolar_distance(x0, x1, essential_from_pose(T_0to1)).numpy()


def match_precision(errors: np.ndarray, threshold: float) -> float:
    """Share in [0, 1] of one pair's matches with an error below `threshold`; 0 for a pair with no matches."""
    if not 0 < threshold < np.inf:  # inf would count every match correct
        raise ValueError(f"epipolar threshold must be positive and finite, got {threshold}")
    errors = np.asarray(errors)
    return float((errors < threshold).mean()) if errors.size else 0.0


def homography_error(
    H_true: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray, height: int, width: int, seed: int | None = 0,
    estimator: str = "opencv",
) -> float:
    """Mean corner error in pixels of the homography estimated from pixel matches kpts0, kpts1 (N, 2) (RANSAC or
    LO-RANSAC, 3 px) against H_true (3, 3, image 0 -> image 1 pixels); the corners are those of image 0,
    (height, width). inf with fewer than 4 matches or no model."""
    H_est = estimate_homography(np.asarray(kpts0, np.float64), np.asarray(kpts1, np.float64), seed=seed,
                                estimator=estimator)
    if H_est is None:
        return np.inf
    return homography_corner_error(H_true, H_est, height, width)


@dataclass
class PairResult:
    """What a benchmark records for one pair.

    num_matches: matches the matcher returned; runtime_s: its matching time in seconds.
    pose: the relative-pose error (pose benchmarks); homography_error_px: the mean corner error (homography
    benchmarks); precision: share in [0, 1] of matches under the benchmark's epipolar threshold, None where
    not measured.
    """

    name: str
    group: str
    num_matches: int
    runtime_s: float
    pose: PoseError | None = None
    homography_error_px: float | None = None
    precision: float | None = None


def summarize(results: Sequence[PairResult], kind: Literal["pose", "homography"]) -> dict[str, float]:
    """The numbers of a results table from per-pair records.

    Keys: "auc@5", "auc@10", "auc@20" (pose, degrees) and "mAA", their mean (glue-factory's rel_pose_error_mAA),
    or "auc@1", "auc@3", "auc@5", "auc@10" (homography, pixels), in percent; "precision" (percent, only when
    every record has one); "matches" (mean per pair); "runtime_ms" (median per pair); "pairs" (count).
    """
    if not results:
        raise ValueError("summarize needs at least one result")
    if kind == "pose":
        thresholds, errors = POSE_AUC_THRESHOLDS_DEG, [_pose_error_of(r).max_deg for r in results]
    elif kind == "homography":
        thresholds, errors = HOMOGRAPHY_AUC_THRESHOLDS_PX, [_homography_error_of(r) for r in results]
    else:
        raise ValueError(f"kind must be 'pose' or 'homography', got {kind!r}")
    summary = {f"auc@{t:g}": auc for t, auc in error_auc(errors, thresholds).items()}
    if kind == "pose":
        summary["mAA"] = float(np.mean(list(summary.values())))
    if all(r.precision is not None for r in results):
        summary["precision"] = 100 * float(np.mean([r.precision for r in results]))
    summary["matches"] = float(np.mean([r.num_matches for r in results]))
    summary["runtime_ms"] = 1000 * float(np.median([r.runtime_s for r in results]))
    summary["pairs"] = float(len(results))
    return summary


def summarize_groups(
    results: Sequence[PairResult], kind: Literal["pose", "homography"]
) -> dict[str, dict[str, float]]:
    """`summarize` per group (scene, rotation bin, ...), groups in order of first appearance."""
    groups: dict[str, list[PairResult]] = defaultdict(list)
    for result in results:
        groups[result.group].append(result)
    return {group: summarize(members, kind) for group, members in groups.items()}


def _pose_error_of(result: PairResult) -> PoseError:
    if result.pose is None:
        raise ValueError(f"pair {result.name}: no pose error recorded for a pose summary")
    return result.pose


def _homography_error_of(result: PairResult) -> float:
    if result.homography_error_px is None:
        raise ValueError(f"pair {result.name}: no homography error recorded for a homography summary")
    return result.homography_error_px
