"""One pair's matches scored against its ground truth: the PairResult of evaluate.py, of the benchmark scripts
and of validation during training.

A pose pair (K0, K1, T_0to1) scores its relative-pose error, the epipolar error of every match and, with a
threshold, the share of matches under it; a homography pair (H_0to1) scores the mean corner error of the
homography estimated from the matches. Matches are in the pixels of the frames the ground truth is for.
"""

import numpy as np

from geometry.estimation import POSE_RANSAC_THRESHOLD_PX

from .metrics import PairResult, epipolar_errors, homography_error, match_precision, pose_error


def score_matches(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    *,
    name: str,
    group: str = "",
    runtime_s: float = 0.0,
    K0: np.ndarray | None = None,
    K1: np.ndarray | None = None,
    T_0to1: np.ndarray | None = None,
    H_0to1: np.ndarray | None = None,
    image0_size: tuple[int, int] | None = None,
    epipolar_threshold: float | None = None,
    ransac_seed: int | None = 0,
    ransac_threshold_px: float = POSE_RANSAC_THRESHOLD_PX,
    estimator: str = "opencv",
) -> tuple[PairResult, np.ndarray | None]:
    """The PairResult of matches kpts0, kpts1 (N, 2) (x, y) pixels of image 0 and image 1, and the squared
    symmetric epipolar error of each match (N,) (normalized coordinates, `epipolar_errors`), None for a
    homography pair.

    Give either a pose, T_0to1 (4, 4, camera 0 -> camera 1) with the intrinsics K0, K1 (3, 3), or a homography
    H_0to1 (3, 3, image-0 -> image-1 pixels) with image0_size (height, width) in pixels, whose corners the
    corner error maps. name, group, runtime_s (matching time, seconds): recorded as given.
    epipolar_threshold: pose pairs with one get `precision`, the share of matches under it.
    ransac_seed seeds the RANSAC (None: unseeded); ransac_threshold_px: the pose estimator's inlier
    threshold in pixels (LoFTR's 0.5 by default); the homography estimator keeps its 3 px. estimator: "opencv"
    (LoFTR's protocol) or "poselib" (LO-RANSAC, glue-factory's), for both (geometry/estimation.py).
    """
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    result = PairResult(name, group, len(kpts0), runtime_s)
    if T_0to1 is not None:
        if K0 is None or K1 is None:
            raise ValueError(f"pair {name}: a pose needs the intrinsics K0 and K1")
        result.pose = pose_error(T_0to1, kpts0, kpts1, K0, K1, threshold_px=ransac_threshold_px, seed=ransac_seed,
                                 estimator=estimator)
        errors = epipolar_errors(kpts0, kpts1, K0, K1, T_0to1)
        if epipolar_threshold is not None:
            result.precision = match_precision(errors, epipolar_threshold)
        return result, errors
    if H_0to1 is None or image0_size is None:
        raise ValueError(f"pair {name}: give a pose (T_0to1, K0, K1) or a homography (H_0to1, image0_size)")
    height, width = image0_size
    result.homography_error_px = homography_error(H_0to1, kpts0, kpts1, height, width, seed=ransac_seed,
                                                  estimator=estimator)
    return result, None
