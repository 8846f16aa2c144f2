"""Point sets in one image's pixels: greedy suppression by score within a radius, and assignment of every point
to the strongest kept one near it. The affine simulation merges its views' matches with the first; the SfM
export gives each image one keypoint set with both."""

import numpy as np
from scipy.spatial import cKDTree


def suppress(points: np.ndarray, scores: np.ndarray, radius: float) -> np.ndarray:
    """Greedy non-maximum suppression: the highest-scoring point is kept, every point within `radius` pixels of a
    kept one (distance <= radius) is dropped, then the next highest remaining one, and so on. Exact greedy
    result in vectorised rounds over the close pairs (a k-d tree finds them): each round keeps the points that
    no higher-ranked undecided or kept point is close to, and drops those close to a kept one.
    points (N, 2) pixels, scores (N,). Returns the kept indices in order of decreasing score (ties: input order)."""
    count = len(points)
    if count == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    rank = np.empty(count, np.int64)
    rank[order] = np.arange(count)
    pairs = cKDTree(np.asarray(points, np.float64)).query_pairs(radius, output_type="ndarray")
    if len(pairs):
        first, second = pairs[:, 0], pairs[:, 1]
        swap = rank[first] > rank[second]
        stronger, weaker = np.where(swap, second, first), np.where(swap, first, second)  # by rank
    else:
        stronger = weaker = np.zeros(0, np.int64)
    undecided, kept = np.ones(count, bool), np.zeros(count, bool)
    while undecided.any():
        blocked = np.zeros(count, bool)
        blocked[weaker[undecided[stronger] | kept[stronger]]] = True
        kept |= undecided & ~blocked
        undecided &= ~kept
        suppressed = np.zeros(count, bool)
        suppressed[weaker[kept[stronger]]] = True
        undecided &= ~suppressed
    return order[kept[order]]


def assign_to_kept(points: np.ndarray, scores: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """`suppress`, then each point assigned to a kept one: the highest-scoring kept point within `radius` (the
    one that suppressed it; a kept point is its own). Returns (kept indices (K,) in order of decreasing score,
    assignment (N,) int64 in [0, K): the position in `kept` of each point's)."""
    kept = suppress(points, scores, radius)
    assignment = np.empty(len(points), np.int64)
    if len(kept) == 0:
        return kept, assignment
    points = np.asarray(points, np.float64)
    tree = cKDTree(points[kept])
    # kept are ordered by decreasing score: the first (lowest position) kept neighbour is the strongest; the
    # nearest kept one where rounding leaves none within the radius
    nearest = tree.query(points)[1]
    assignment[:] = [min(near) if near else fallback
                     for near, fallback in zip(tree.query_ball_point(points, radius), nearest)]
    return kept, assignment
