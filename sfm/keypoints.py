"""One keypoint set per image from pairwise matches, what structure from motion (COLMAP, hloc) takes.

A semi-dense matcher (the LoFTR family) places its keypoints anew in every pair, so one scene point seen in
three pairs is three slightly different keypoints of an image. As hloc does for LoFTR (Sarlin et al.,
`match_dense.py`: keypoints quantised to a `cell_size` grid, merged within `max_error` px), every keypoint of an
image, whatever its pair, is snapped to the centre of its `cell_size` pixel cell; the snapped points are merged
within `max_error` pixels (greedily, the one with the most summed confidence kept and the others merged into
it); a match is then a pair of merged keypoints, and a keypoint matched twice in one pair keeps its most
confident match only (both ways). A sparse matcher's keypoints repeat exactly from pair to pair: `cell_size` 0
and `max_error` 0 keep them as they are, exact duplicates merged.

    QuantizationConfig(cell_size, max_error): hloc's `loftr` preset by default; PRESETS holds its three and none.
    sfm_features(pair_matches, config) -> SfMFeatures: keypoints per image, index matches and scores per pair.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from geometry.points import assign_to_kept
from models.matches import Matches
from utils.values import check_number

Pair = tuple[str, str]


@dataclass(frozen=True)
class QuantizationConfig:
    """cell_size: pixels of the snapping grid (0: no snapping); max_error: pixels within which snapped points of
    one image become one keypoint (0: exact duplicates only). Defaults: hloc's `loftr` preset (1 and 1)."""

    cell_size: float = 1.0
    max_error: float = 1.0

    def __post_init__(self):
        check_number("cell_size", self.cell_size, 0)
        check_number("max_error", self.max_error, 0)


# hloc's match_dense.py presets (cell_size, max_error): every keypoint kept to the pixel for small scenes; fewer
# keypoints for large ones (Aachen); SuperPoint-like density. And "none": a detector's keypoints as they are
PRESETS = {"loftr": QuantizationConfig(1, 1), "loftr_aachen": QuantizationConfig(8, 2),
           "loftr_superpoint": QuantizationConfig(4, 4), "none": QuantizationConfig(0, 0)}


@dataclass
class SfMFeatures:
    """keypoints: {image name: (K, 2) float64 (x, y) pixels, pixel (c, r) at (c, r)}; matches: {(name0, name1):
    (M, 2) int64 indices into the two images' keypoints}; scores: {(name0, name1): (M,) the matches'
    confidences}. Pairs as given, each index in a pair used once per side."""

    keypoints: dict[str, np.ndarray] = field(default_factory=dict)
    matches: dict[Pair, np.ndarray] = field(default_factory=dict)
    scores: dict[Pair, np.ndarray] = field(default_factory=dict)


def snapped(points: np.ndarray, cell_size: float) -> np.ndarray:
    """(N, 2) pixels moved to the centre of their `cell_size` cell (cells tiling the image from its corner at
    (-0.5, -0.5)); unchanged for 0. Cell size 1: each point to its pixel's centre."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if cell_size == 0:
        return points
    return (np.floor((points + 0.5) / cell_size) + 0.5) * cell_size - 0.5


def sfm_features(pair_matches: Mapping[Pair, Matches], config: QuantizationConfig | None = None) -> SfMFeatures:
    """One keypoint set per image and index matches per pair from `pair_matches` ({(name0, name1): Matches in
    each image's pixels}): see the module's docstring. A keypoint is at its merged points' strongest snapped
    position."""
    config = config or QuantizationConfig()
    observed: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # name -> [(snapped (N, 2), confidence (N,))]
    slots = []  # per pair: per side, (image name, where in observed[name] its observations are)
    for (name0, name1), matches in pair_matches.items():
        confidence = np.asarray(matches.confidence, np.float64).reshape(-1)
        sides = []
        for name, points in ((name0, matches.keypoints0), (name1, matches.keypoints1)):
            sides.append((name, len(observed.setdefault(name, []))))
            observed[name].append((snapped(points, config.cell_size), confidence))
        slots.append(sides)
    features, ids = SfMFeatures(), {}
    for name, seen in observed.items():
        points = np.concatenate([points for points, _ in seen])
        confidence = np.concatenate([confidence for _, confidence in seen])
        unique, inverse = np.unique(points, axis=0, return_inverse=True)
        support = np.bincount(inverse.reshape(-1), weights=confidence, minlength=len(unique))
        kept, assignment = assign_to_kept(unique, support, config.max_error)
        features.keypoints[name] = unique[kept]
        ids[name] = np.split(assignment[inverse.reshape(-1)], np.cumsum([len(p) for p, _ in seen])[:-1])
    for (pair, matches), sides in zip(pair_matches.items(), slots):
        pair_ids = [ids[name][slot] for name, slot in sides]
        features.matches[pair], features.scores[pair] = one_to_one(*pair_ids, np.asarray(matches.confidence))
    return features


def one_to_one(ids0: np.ndarray, ids1: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index matches (M, 2) int64 and their confidences (M,) from keypoint ids (N,) of two images: for each id
    of either image its most confident match (ties: the first), kept when it is also its partner's."""
    confidence = np.asarray(confidence, np.float64).reshape(-1)
    order = np.argsort(-confidence, kind="stable")
    best0 = _first_of_each(ids0[order])
    best1 = _first_of_each(ids1[order])
    chosen = np.sort(order[np.intersect1d(best0, best1)])
    return np.stack([ids0[chosen], ids1[chosen]], 1).astype(np.int64).reshape(-1, 2), confidence[chosen]


def _first_of_each(values: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct value."""
    return np.unique(values, return_index=True)[1]
