"""Classical baselines: OpenCV features matched by mutual nearest neighbours and Lowe's ratio test.

    sift   OpenCV SIFT, mutual nearest neighbours passing Lowe's ratio test
    asift  SIFT on affine-simulated views (OpenCV's AffineFeature, Yu & Morel's ASIFT), same matching

Both take (H, W) uint8 images as given and return `Matches` in their pixels (data/pairs.py).
"""

import cv2
import numpy as np

from models.matches import Matches, check_grayscale
from utils.values import check_number

# Lowe (IJCV 2004, sec. 7.1) rejects matches whose nearest/second-nearest distance ratio exceeds 0.8; the SIFT
# baselines of SuperGlue (Sarlin et al., CVPR 2020) use the same 0.8.
RATIO_THRESHOLD = 0.8


def mutual_ratio_matches(
    descriptors0: np.ndarray, descriptors1: np.ndarray, ratio: float = RATIO_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute-force L2 matching of descriptors (N0, D) and (N1, D): the pairs (i, j) that are each other's
    nearest neighbour (mutual check) and pass Lowe's ratio test in both directions (nearest distance below
    `ratio` times the second nearest). The rule is symmetric: swapping the inputs swaps the pairs.

    Returns index0, index1 (M,) int64 and confidence (M,) float32 = 1 - the larger of the two distance ratios,
    in (0, 1]; sorted by index0. Against a single descriptor there is no second neighbour, so no ratio test in
    that direction.
    """
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if descriptors0 is None or descriptors1 is None or len(descriptors0) == 0 or len(descriptors1) == 0:
        return empty
    descriptors0 = np.ascontiguousarray(descriptors0, np.float32)
    descriptors1 = np.ascontiguousarray(descriptors1, np.float32)
    nearest01, ratio01 = _nearest_two(descriptors0, descriptors1)
    nearest10, ratio10 = _nearest_two(descriptors1, descriptors0)
    index0 = np.arange(len(descriptors0))
    mutual = nearest10[nearest01] == index0
    worst = np.maximum(ratio01, ratio10[nearest01])
    keep = mutual & (worst < ratio)
    return index0[keep], nearest01[keep], (1.0 - worst[keep]).astype(np.float32)


def _nearest_two(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query (N, D): index of its nearest train descriptor (N,) int64 and the distance ratio
    nearest / second nearest (N,) float64; 0 without a second neighbour, inf when both distances are 0
    (two identical candidates: ambiguous)."""
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(queries, train, k=2)
    nearest = np.array([pair[0].trainIdx for pair in knn], np.int64)
    first = np.array([pair[0].distance for pair in knn], np.float64)
    second = np.array([pair[1].distance if len(pair) > 1 else np.inf for pair in knn], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(first == 0, np.where(second == 0, np.inf, 0.0), first / second)
    return nearest, ratio


class _DescriptorMatcher:
    """Detect and describe with an OpenCV Feature2D, then `mutual_ratio_matches`."""

    name = ""

    def __init__(self, features: cv2.Feature2D, ratio: float):
        check_number("ratio", ratio, 0, 1, above=True)
        self.features, self.ratio = features, ratio

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """Matches between (H, W) uint8 images; keypoints (N, 2) float32 (x, y) pixels, confidence (N,)."""
        check_grayscale(image0, "image0")
        check_grayscale(image1, "image1")
        points0, descriptors0 = self.describe(image0)
        points1, descriptors1 = self.describe(image1)
        index0, index1, confidence = mutual_ratio_matches(descriptors0, descriptors1, self.ratio)
        return Matches(points0[index0], points1[index1], confidence)

    def describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints (N, 2) float32 (x, y) pixels of `image` and their descriptors (N, D) (None without any)."""
        keypoints, descriptors = self.features.detectAndCompute(image, None)
        points = np.array([kp.pt for kp in keypoints], np.float32).reshape(-1, 2)
        return points, descriptors


class SIFTMatcher(_DescriptorMatcher):
    """OpenCV SIFT keypoints and descriptors, matched by `mutual_ratio_matches`.

    max_features: keep the strongest this many keypoints per image (0: all, OpenCV's default).
    ratio: Lowe's ratio threshold (0.8).
    """

    name = "sift"

    def __init__(self, max_features: int = 0, ratio: float = RATIO_THRESHOLD):
        check_number("max_features", max_features, 0, integer=True)
        super().__init__(cv2.SIFT_create(nfeatures=max_features), ratio)


class ASIFTMatcher(_DescriptorMatcher):
    """Affine-SIFT: SIFT run on affine-simulated views of each image (OpenCV's AffineFeature wrapper, after Yu &
    Morel, "ASIFT", IPOL 2011), keypoints mapped back to the image, matched by `mutual_ratio_matches`.

    The views sample the camera's tilt t = tilt_step^k for k = min_tilt..max_tilt and, per tilt, the longitude
    in steps of rotate_step_base / t degrees over [0, 180). OpenCV's defaults, the paper's: t = 1, sqrt 2, 2,
    2 sqrt 2, 4, 4 sqrt 2 (up to ~5.7, an ~80 degree viewing angle) and 72 / t degree steps: 1 + 4 + 5 + 8 + 10 +
    15 = 43 views.
    max_features limits the SIFT keypoints of each view (0: all).
    """

    name = "asift"

    def __init__(
        self,
        max_features: int = 0,
        ratio: float = RATIO_THRESHOLD,
        max_tilt: int = 5,  # OpenCV's default, n = 5 in the paper
        min_tilt: int = 0,
        tilt_step: float = float(np.sqrt(2.0)),
        rotate_step_base: float = 72.0,
    ):
        check_number("max_features", max_features, 0, integer=True)
        check_number("min_tilt", min_tilt, 0, integer=True)
        check_number("max_tilt", max_tilt, min_tilt, integer=True)
        check_number("tilt_step", tilt_step, 1, above=True)  # tilts tilt_step^k grow
        check_number("rotate_step_base", rotate_step_base, 0, 180, above=True)  # degrees
        sift = cv2.SIFT_create(nfeatures=max_features)
        super().__init__(cv2.AffineFeature_create(sift, max_tilt, min_tilt, tilt_step, rotate_step_base), ratio)
