"""Affine simulation around any matcher (IMAS: Rodriguez, Delon & Morel, "Fast affine invariant image
matching", IPOL 2018): simulated tilts of image 0, each matched against image 1, the matches taken back to
image 0 through each view's exact inverse, merged and filtered by one geometric model.

    AffineSimulationConfig: the options (evaluate.py's `affine=simulated`, match.py's --affine-simulation,
        load_matcher(affine=...)); a wrong value is a ValueError whose message starts with the field's name.
    views_of(config): the views, (tilt, direction in degrees), that a pair is matched with.
    AffineSimulation(inner, config): a matcher (`name`, `match(image0, image1) -> Matches`, uint8 (H, W)
        images as given, keypoints in their pixels) wrapping `inner`, any matcher of that interface;
        `views` is the number of views it matches a pair with, `last_stats` what the last pair took.

Views are ASIFT's (geometry/affine.py, `tilt_view`): compressions along a direction, no in-plane rotation, so
an upright matcher sees upright images. By default they are screened first, after ASIFT's two-resolution
scheme: all matched at half scale (a ManyMatcher's coarse matches alone, the fine stage skipped), the few whose
matches one geometric model explains best again at full resolution. An inner matcher with
`match_many(images0, image1)` (LoFTRMatcher) gets the views of one shape in batches of `batch_size`; any other
gets them one by one.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from geometry.affine import MAX_TILT, tilt_view
from geometry.points import suppress
from utils.resize import resized
from utils.values import check_number

from .matches import ImageTooSmallError, Matches, check_grayscale

AFFINE_SUFFIX = "+affine"  # the end of a simulated matcher's name: "sift+affine"
FILTERS = ("fundamental", "homography", "none")
FILTER_MIN_MATCHES = {"fundamental": 8, "homography": 4}  # fewer: kept unfiltered (no model to fit)
FILTER_CONFIDENCE = 0.999  # the filter's success probability
FILTER_MAX_ITERATIONS = 10_000
# Dense check of a covering: tilts (log-spaced) x directions in [0, 180) at which it must hold
COVERING_CHECK_TILTS, COVERING_CHECK_DIRECTIONS = 129, 180
# Bands tried beyond the fewest a covering can have (trying 20 changes no count for tolerances 1.2 to 3 and max
# tilts 2 to 64; only coverings of thousands of views, at tolerance 1.1, shrink by a few percent), and the
# candidate tilts of a level tried in its band
COVERING_EXTRA_LEVELS, COVERING_LEVEL_CANDIDATES = 6, 401


@dataclass
class AffineSimulationConfig:
    """Typed loosely (Any) because evaluate.py's schema holds this class: the check here says what is wanted.
    After __post_init__ the numbers are floats (counts ints) and tilts, longitudes lists."""

    max_tilt: Any = 8.0  # transition tilts covered, 1 to max_tilt (ASIFT's stress range, t = 1 / cos 82.8 deg)
    tolerance: Any = 1.5  # the transition tilt the inner matcher handles itself (provisional: measured by stress=tilt)
    tilts: Any = None  # explicit view tilts (>= 1) instead of the covering of max_tilt at `tolerance`
    longitudes: Any = None  # with `tilts`: how many equally spaced directions in [0, 180) each tilt has
    max_views: Any = 64  # refuse more views (the default covering, tolerance 1.5 up to tilt 8, has 61)
    merge_radius: Any = 2.0  # image-0 pixels: of matches closer than this, the most confident is kept
    filter: Any = "fundamental"  # fundamental | homography | none: MAGSAC++ inliers of the merged matches
    filter_threshold: Any = 3.0  # pixels of the images as given: the filter's inlier threshold
    both_images: Any = False  # also simulate image 1's views against image 0
    batch_size: Any = 8  # views per forward where the inner matcher matches batches
    # ASIFT's two-resolution scheme (Morel & Yu 2009; Yu & Morel, IPOL 2011: images subsampled by K = 3, the
    # M = 5 views with the most matches redone): every view first matched with both images scaled by
    # `screening_scale` (a ManyMatcher's coarse matches alone), then the `views_kept` views with the most filter
    # inliers at full resolution. 1: every view at full resolution. Measured on photos (benchmarks/RESULTS.md):
    # a learned matcher at 1/3 scale ranks the views worse; at half scale, 5 views as ASIFT's M match as well
    # as 8 or all 61, at a quarter of the full simulation's time
    screening_scale: Any = 0.5
    views_kept: Any = 5

    def __post_init__(self):
        check_number("max_tilt", self.max_tilt, 1, MAX_TILT)
        check_number("tolerance", self.tolerance, 1, MAX_TILT, above=True)
        if self.tilts is not None or self.longitudes is not None:
            _check_explicit_views(self.tilts, self.longitudes)
        check_number("max_views", self.max_views, 1, integer=True)
        check_number("merge_radius", self.merge_radius, 0, above=True)
        if not isinstance(self.filter, str) or self.filter not in FILTERS:
            raise ValueError(f"filter={self.filter!r}: must be one of {', '.join(FILTERS)}")
        check_number("filter_threshold", self.filter_threshold, 0, above=True)
        if not isinstance(self.both_images, bool):
            raise ValueError(f"both_images={self.both_images!r}: must be true or false")
        check_number("batch_size", self.batch_size, 1, integer=True)
        check_number("screening_scale", self.screening_scale, 0, 1, above=True)
        check_number("views_kept", self.views_kept, 1, integer=True)
        # one spelling per value (tolerance=2 and 2.0 are one setting, as stored predictions compare them)
        for key in ("max_tilt", "tolerance", "merge_radius", "filter_threshold", "screening_scale"):
            setattr(self, key, float(getattr(self, key)))
        for key in ("max_views", "batch_size", "views_kept"):
            setattr(self, key, int(getattr(self, key)))
        if self.tilts is not None:
            self.tilts = [float(tilt) for tilt in self.tilts]
            self.longitudes = [int(count) for count in self.longitudes]
        count = view_count(self)
        if count > self.max_views:
            if self.tilts is None:
                views, change = f"the covering of max_tilt {self.max_tilt} at tolerance {self.tolerance}", (
                    "raise tolerance or lower max_tilt")
            else:
                views, change = "tilts x longitudes", "give fewer tilts or longitudes"
            raise ValueError(f"max_views={self.max_views}: {views} has {count} views; raise max_views, or {change}")


def _check_explicit_views(tilts: Any, longitudes: Any) -> None:
    """ValueError naming `tilts` or `longitudes` unless they are two lists of one length: tilts in
    [1, MAX_TILT], direction counts whole numbers >= 1."""
    for key, value in (("tilts", tilts), ("longitudes", longitudes)):
        if value is not None and (isinstance(value, str | bytes) or not isinstance(value, Sequence)):
            raise ValueError(f"{key}={value!r}: must be a list")
    if tilts is not None and len(tilts) == 0:
        raise ValueError("tilts=[]: an empty list of views matches nothing; give at least one tilt (1: the image)")
    for key, value, other in (("tilts", tilts, "longitudes"), ("longitudes", longitudes, "tilts")):
        if value is None:
            raise ValueError(f"{key}=None: give it with {other} (one direction count per tilt), or neither")
    if len(longitudes) != len(tilts):
        raise ValueError(f"longitudes={list(longitudes)}: must have one direction count per tilt "
                         f"({len(tilts)} tilts, {len(longitudes)} counts)")
    for index, (tilt, count) in enumerate(zip(tilts, longitudes)):
        check_number(f"tilts[{index}]", tilt, 1, MAX_TILT)
        check_number(f"longitudes[{index}]", count, 1, integer=True)


def views_of(config: AffineSimulationConfig) -> list[tuple[float, float]]:
    """The views a pair is matched with, (tilt, direction in degrees in [0, 180)), tilt 1 (the image) first:
    the explicit `tilts` x `longitudes` when given (tilt 1 once, whatever its count), else the covering of
    tilts 1 to max_tilt at `tolerance` (`covering`)."""
    if config.tilts is None:
        return list(covering(float(config.max_tilt), float(config.tolerance)))
    views = []
    for tilt, count in zip(config.tilts, config.longitudes):
        steps = 1 if tilt == 1 else int(count)
        views += [(float(tilt), 180.0 * step / steps) for step in range(steps)]
    return sorted(set(views), key=lambda view: (view[0], view[1]))


def view_count(config: AffineSimulationConfig) -> int:
    """len(views_of(config)), without spelling a large covering out."""
    if config.tilts is None:
        return sum(count for _, count in covering_levels(float(config.max_tilt), float(config.tolerance)))
    return len(views_of(config))


def transition_tilts(view_tilt, view_direction, tilt, direction) -> np.ndarray:
    """The transition tilt (Morel & Yu, "ASIFT", SIAM J. Imaging Sciences 2009) between the views
    `tilt_linear(view_tilt, view_direction)` and `tilt_linear(tilt, direction)` (directions in degrees),
    broadcast over arrays: with a = log(t / t'), b = log(t t') and d the angle between the directions,
    cosh(log tau) = cosh(a) cos^2 d + cosh(b) sin^2 d (geometry/affine.py's `transition_tilt`, in closed form)."""
    log_view, log_tilt = np.log(view_tilt), np.log(tilt)
    sin2 = np.sin(np.radians(np.subtract(direction, view_direction))) ** 2
    cosh = np.cosh(log_tilt - log_view) * (1 - sin2) + np.cosh(log_tilt + log_view) * sin2
    return np.exp(np.arccosh(np.maximum(cosh, 1.0)))


@lru_cache(maxsize=64)
def covering(max_tilt: float, tolerance: float) -> tuple[tuple[float, float], ...]:
    """Few views (tilt, direction in degrees) such that every tilt t in [1, max_tilt] in any direction is
    within transition tilt `tolerance` of one of them: what the inner matcher then handles itself.
    `covering_levels` chooses them; here they are spelled out and checked on a dense grid of (tilt, direction)."""
    views = [(tilt, 180.0 * j / count) for tilt, count in covering_levels(max_tilt, tolerance) for j in range(count)]
    return tuple(_checked_covering(views, max_tilt, tolerance))


@lru_cache(maxsize=64)
def covering_levels(max_tilt: float, tolerance: float) -> tuple[tuple[float, int], ...]:
    """The levels of `covering`: (tilt, how many equally spaced directions in [0, 180)), tilt 1 first.

    IMAS's idea (Rodriguez, Delon & Morel 2018): the tilts form a space in which the log of the transition tilt
    (Morel & Yu 2009) is a distance, and the views are a covering of the tilt range by balls of radius
    log(tolerance). Here the image (tilt 1) covers the tilts up to `tolerance`; the rest, tolerance to
    max_tilt, is cut into bands of equal width in log t, and each band gets one level: a tilt inside it with
    the fewest equally spaced directions that cover the whole band. By the closed form of `transition_tilts`
    the worst point of a band is at one of its edges, halfway between two directions, so each count is exact;
    the number of bands with the fewest views overall is kept."""
    if max_tilt <= tolerance:
        return ((1.0, 1),)
    log_max, log_tolerance = math.log(max_tilt), math.log(tolerance)
    # each band narrower than 2 log(tolerance), so that its centre covers it in some count of directions
    fewest_bands = math.floor((log_max - log_tolerance) / (2 * log_tolerance) + 1e-9) + 1
    best = None
    for bands in range(fewest_bands, fewest_bands + COVERING_EXTRA_LEVELS):
        edges = np.linspace(log_tolerance, log_max, bands + 1)
        levels = [(1.0, 1)]
        for low, high in zip(edges[:-1], edges[1:]):
            level = np.linspace(low, high, COVERING_LEVEL_CANDIDATES)  # log of the level's tilt
            counts = np.maximum(_directions_needed(low, level, log_tolerance),
                                _directions_needed(high, level, log_tolerance))
            choice = np.lexsort((np.abs(level - (low + high) / 2), counts))[0]  # fewest, then the band's centre
            if not np.isfinite(counts[choice]):
                break
            levels.append((float(np.exp(level[choice])), int(counts[choice])))
        else:
            if best is None or sum(count for _, count in levels) < sum(count for _, count in best):
                best = levels
    return tuple(best)


def _directions_needed(log_tilt: float, log_level: np.ndarray, log_tolerance: float) -> np.ndarray:
    """The fewest equally spaced directions in [0, 180) at tilts exp(log_level) (array) that cover the tilt
    exp(log_tilt) in every direction within `tolerance` (inf where none do): the worst direction lies halfway
    between two, at the angle d of `transition_tilts`' closed form, which needs
    sin^2 d <= (cosh(log tol) - cosh(a)) / (cosh(b) - cosh(a))."""
    near, far = np.cosh(log_tilt - log_level), np.cosh(log_tilt + log_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        spare = np.where(far > near, (math.cosh(log_tolerance) - near) / (far - near), 1.0)
    widest = np.degrees(np.arcsin(np.sqrt(np.clip(spare, 0.0, 1.0))))  # the largest angle to a direction
    with np.errstate(divide="ignore"):
        counts = np.ceil(90.0 / widest * (1 + 1e-12))
    return np.where(near > math.cosh(log_tolerance), np.inf, np.maximum(counts, 1.0))


def _checked_covering(views: list[tuple[float, float]], max_tilt: float, tolerance: float
                      ) -> list[tuple[float, float]]:
    """`views`, with one more direction at the level of any point of the dense check grid they leave
    uncovered (none by construction; this guards the construction)."""
    tilts = np.exp(np.linspace(0.0, math.log(max_tilt), COVERING_CHECK_TILTS))
    directions = np.arange(COVERING_CHECK_DIRECTIONS) * 180.0 / COVERING_CHECK_DIRECTIONS
    tilt, direction = (grid.ravel() for grid in np.meshgrid(tilts, directions))
    while True:
        view_tilts, view_directions = (np.array(values)[:, None] for values in zip(*views))
        nearest = transition_tilts(view_tilts, view_directions, tilt, direction).min(0)
        uncovered = np.flatnonzero(nearest > tolerance)
        if len(uncovered) == 0:
            return views
        level = float(view_tilts[np.argmin(np.abs(np.log(view_tilts[:, 0] / tilt[uncovered[0]])))][0])
        count = sum(1 for view_tilt, _ in views if view_tilt == level) + 1
        views = [view for view in views if view[0] != level] + [(level, 180.0 * j / count) for j in range(count)]
        views.sort()


@runtime_checkable
class ManyMatcher(Protocol):
    """A matcher that also matches several image-0 views against one image 1 in one call (LoFTRMatcher: one
    forward). `match_many(images0, image1)[k]` is `match(images0[k], image1)`; with `refine=False` its coarse
    matches alone, each keypoint up to `coarse_stride` pixels off: enough to screen views, at a fraction of
    the cost."""

    coarse_stride: int

    def match_many(self, images0: list[np.ndarray], image1: np.ndarray, refine: bool = True) -> list[Matches]: ...


@dataclass
class SimulationStats:
    """What matching one pair took: views matched at full resolution, matches pooled from them, left after the
    merge and after the filter, wall-clock seconds (views, matching, merge, filter), and views matched at the
    screening scale (0 without screening)."""

    views: int
    pooled: int
    merged: int
    kept: int
    seconds: float
    screened: int = 0


class AffineSimulation:
    """`inner`, any matcher (`name`, `match(image0, image1) -> Matches`), on simulated tilts of image 0 (and
    of image 1 with `both_images`): a matcher of the same interface that takes images as given, (H, W) uint8,
    and returns keypoints in their pixels (float64) with the inner matcher's confidences. Its `last_stats`
    (`SimulationStats`, None before the first pair) says what the last pair took."""

    def __init__(self, inner, config: AffineSimulationConfig | None = None):
        self.inner = inner
        self.config = AffineSimulationConfig() if config is None else config
        self.tilts = views_of(self.config)  # (tilt, direction) of each view of one image
        self.last_stats: SimulationStats | None = None

    @property
    def name(self) -> str:
        return f"{self.inner.name}{AFFINE_SUFFIX}"

    @property
    def views(self) -> int:
        """Views simulated per pair: the image's views, twice with `both_images` (all matched at the screening
        scale when it screens, `full_resolution_views` of them at full resolution)."""
        return len(self.tilts) * self.sides

    @property
    def sides(self) -> int:
        return 2 if self.config.both_images else 1

    @property
    def screens(self) -> bool:
        """Whether views are screened at low resolution first (ASIFT's two-resolution scheme): only when a
        screening scale below 1 leaves fewer views than there are."""
        return self.config.screening_scale < 1 and self.config.views_kept < len(self.tilts)

    @property
    def full_resolution_views(self) -> int:
        """Views matched at full resolution per pair."""
        return self.config.views_kept * self.sides if self.screens else self.views

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """Matches of two (H, W) uint8 images: every view of image 0 against image 1 (and every view of image 1
        against image 0 with `both_images`; when it `screens`, only the `_chosen` views at full resolution),
        keypoints taken back through each view's exact inverse warp and kept inside the images, then `merge`d
        (one match per `merge_radius` of image 0, the most confident) and `geometric_filter`ed. keypoints0,
        keypoints1 (N, 2) float64 pixels; confidence (N,). A view too small for the inner matcher (its
        ImageTooSmallError) matches nothing."""
        check_grayscale(image0, "image0")
        check_grayscale(image1, "image1")
        start = time.perf_counter()
        parts = self._matched_views(image0, image1, self._chosen(image0, image1))
        if self.config.both_images:
            parts += [Matches(m.keypoints1, m.keypoints0, m.confidence) for m in
                      self._matched_views(image1, image0, self._chosen(image1, image0))]
        pooled = Matches(*(np.concatenate([getattr(m, key) for m in parts]) for key in
                           ("keypoints0", "keypoints1", "confidence")))
        merged = merge(pooled, self.config.merge_radius)
        kept = geometric_filter(merged, self.config.filter, self.config.filter_threshold)
        self.last_stats = SimulationStats(self.full_resolution_views, len(pooled), len(merged), len(kept),
                                          time.perf_counter() - start, self.views if self.screens else 0)
        return kept

    def _chosen(self, image: np.ndarray, other: np.ndarray) -> list[tuple[float, float]]:
        """The views of `image` to match at full resolution: all of them, or when it `screens`, the `views_kept`
        whose matches, once both images are scaled by `screening_scale`, hold the most inliers of the filter
        (its threshold scaled alike; ties: the lower tilt). A matcher finds matches in every view, right or
        not: only those one geometric model explains tell the views near the true tilt."""
        if not self.screens:
            return self.tilts
        scale = self.config.screening_scale
        small, small_other = (resized(picture, (scale, scale))[0] for picture in (image, other))
        threshold = self.config.filter_threshold * scale
        if isinstance(self.inner, ManyMatcher):  # coarse matches: a cell off at most, which the threshold allows
            threshold = max(threshold, float(self.inner.coarse_stride))
        counts = [len(geometric_filter(matches, self.config.filter, threshold))
                  for matches in self._matched_views(small, small_other, self.tilts, refine=False)]
        best = sorted(range(len(counts)), key=lambda view: -counts[view])[:self.config.views_kept]
        return [self.tilts[view] for view in sorted(best)]

    def _matched_views(self, image: np.ndarray, other: np.ndarray, tilts: list[tuple[float, float]],
                       refine: bool = True) -> list[Matches]:
        """The matches of the views `tilts` of `image` against `other`, keypoints0 back in `image`'s pixels and
        inside it (a view's black border matches nothing of the image); `refine` False: a ManyMatcher's coarse
        matches alone (any other matcher's are refined anyway)."""
        views, warps = zip(*(tilt_view(image, tilt, direction) for tilt, direction in tilts))
        matched: list[Matches] = [_NO_MATCHES] * len(views)
        # batches of views of one shape where the inner matcher takes them: a batch is padded to its largest view,
        # which would cost as much; a view too small for the matcher matches nothing
        many = isinstance(self.inner, ManyMatcher)
        batch = self.config.batch_size if many else 1
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, view in enumerate(views):
            by_shape.setdefault(view.shape, []).append(index)
        for indices in by_shape.values():
            for start in range(0, len(indices), batch):
                chunk = indices[start:start + batch]
                try:
                    if many:
                        results = self.inner.match_many([views[index] for index in chunk], other, refine=refine)
                    else:
                        results = [self.inner.match(views[chunk[0]], other)]
                except ImageTooSmallError:
                    continue
                for index, matches in zip(chunk, results):
                    matched[index] = matches
        return [_back_to_image(m, warp, image.shape) for m, warp in zip(matched, warps)]


_NO_MATCHES = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))


def _back_to_image(matches: Matches, warp: np.ndarray, shape: tuple[int, int]) -> Matches:
    """`matches` of a view, keypoints0 taken back to the image of `shape` (H, W) through the exact inverse of
    the view's `warp` (3, 3, image -> view pixels), float64; those landing outside the image dropped."""
    points = back_to_image(matches.keypoints0, warp)
    height, width = shape
    inside = ((points >= -0.5) & (points <= np.array([width - 0.5, height - 0.5]))).all(1)
    return Matches(points[inside], np.asarray(matches.keypoints1, np.float64)[inside],
                   np.asarray(matches.confidence)[inside])


def back_to_image(points: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """(N, 2) view pixels -> image pixels through the inverse of `warp` (3, 3, image -> view pixels), float64."""
    inverse = np.linalg.inv(np.asarray(warp, np.float64))
    return np.asarray(points, np.float64).reshape(-1, 2) @ inverse[:2, :2].T + inverse[:2, 2]


def merge(matches: Matches, radius: float) -> Matches:
    """Greedy non-maximum suppression on image 0 (geometry.points.suppress): the most confident match is kept,
    every match whose image-0 keypoint lies within `radius` pixels of a kept one (distance <= radius) is dropped,
    then the next most confident remaining one, and so on. Kept matches in order of decreasing confidence (ties:
    pooled order)."""
    chosen = suppress(matches.keypoints0, matches.confidence, radius)
    return Matches(matches.keypoints0[chosen], matches.keypoints1[chosen], matches.confidence[chosen])


def geometric_filter(matches: Matches, model: str, threshold: float) -> Matches:
    """The inliers of one model fitted over `matches` by OpenCV's MAGSAC++ (USAC, seeded by OpenCV itself, so
    the same matches give the same inliers): "fundamental" (epipolar distance, at least 8 matches),
    "homography" (reprojection error, at least 4); "none", too few matches or no model found (a degenerate
    set included): all of them.
    threshold: pixels."""
    if model == "none" or len(matches) < FILTER_MIN_MATCHES[model]:
        return matches
    points0, points1 = (np.ascontiguousarray(points, np.float64) for points in (matches.keypoints0,
                                                                              matches.keypoints1))
    try:
        if model == "fundamental":
            found, inliers = cv2.findFundamentalMat(points0, points1, cv2.USAC_MAGSAC, threshold, FILTER_CONFIDENCE,
                                                    FILTER_MAX_ITERATIONS)
        else:
            found, inliers = cv2.findHomography(points0, points1, cv2.USAC_MAGSAC, threshold,
                                                maxIters=FILTER_MAX_ITERATIONS, confidence=FILTER_CONFIDENCE)
    except cv2.error:  # MAGSAC++ asserts on some degenerate sets (points on a line, repeated): no model
        return matches
    if found is None or inliers is None:
        return matches
    keep = inliers.ravel() > 0
    return Matches(matches.keypoints0[keep], matches.keypoints1[keep], matches.confidence[keep])
