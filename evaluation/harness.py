"""Run a matcher over a benchmark's pairs and score every pair in its original frames.

Every matcher sees the same pixels: both images resized by the benchmark's rule (`Benchmark.resize`). The
matches are scaled back to the original frames, image 1's stress transform (`EvalPair.warp1`) is undone, and
the pair is scored there with the estimation and metrics the papers use (evaluation/metrics.py).
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from tqdm import tqdm

from .benchmarks import Benchmark
from .matchers import Matcher, resized
from .metrics import PairResult, epipolar_errors, homography_error, match_precision, pose_error
from .pairs import EvalPair, Matches
from .stress import StressConfig, rotate_pair, tilt_direction, tilt_pair

STRESS_KINDS = ("rotation", "tilt")


@dataclass
class HarnessConfig:
    stress: str | None = None  # None, "rotation" (image 1 turned by each angle) or "tilt" (ASIFT tilts)
    stress_config: StressConfig = field(default_factory=StressConfig)
    max_pairs: int | None = None  # the first N pairs of the benchmark; None: all
    ransac_seed: int = 0  # OpenCV's RANSAC is seeded per pair, so runs repeat

    def __post_init__(self):
        if self.stress not in (None, *STRESS_KINDS):
            raise ValueError(f"stress={self.stress!r} is not one of None, {', '.join(map(repr, STRESS_KINDS))}")
        if self.stress is not None and stress_count(self) == 0:
            kind, key = ("angle", "angles") if self.stress == "rotation" else ("tilt", "tilts")
            raise ValueError(f"stress={self.stress} needs at least one {kind}: stress_config.{key} is empty")
        if self.max_pairs is not None and (not isinstance(self.max_pairs, int) or isinstance(self.max_pairs, bool)
                                           or self.max_pairs < 1):
            raise ValueError(f"max_pairs must be a whole number >= 1 (or null: all pairs), got {self.max_pairs!r}")


@dataclass
class ScoredPair:
    """A pair's result, with its matches in the original frames (kpts1 in image 1's original frame) and the
    per-match epipolar errors (pose benchmarks), for pictures."""

    pair: EvalPair
    result: PairResult
    matches: Matches
    errors: np.ndarray | None


def resize_factors(benchmark: Benchmark, image: np.ndarray) -> tuple[float, float]:
    """(x, y) factors from original pixels to the benchmark's matching resolution for `image` (H, W)."""
    height, width = image.shape[:2]
    new_width, new_height = benchmark.resize.output_size(width, height)
    return new_width / width, new_height / height


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) mapped by a (3, 3) homography."""
    projected = np.c_[points, np.ones(len(points))] @ homography.T
    return projected[:, :2] / projected[:, 2:]


def match_pair(pair: EvalPair, matcher: Matcher, factors: tuple[tuple[float, float], tuple[float, float]]
               ) -> tuple[Matches, float]:
    """Matches in the ORIGINAL frames of both images (undoing the resize and `warp1`), and the matching time
    in seconds. `factors`: each image's resize factors (x, y)."""
    (image0, scale0), (image1, scale1) = resized(pair.image0, factors[0]), resized(pair.image1, factors[1])
    start = time.perf_counter()
    matches = matcher.match(image0, image1)
    runtime = time.perf_counter() - start
    kpts0 = np.asarray(matches.kpts0, np.float64).reshape(-1, 2) / scale0
    kpts1 = np.asarray(matches.kpts1, np.float64).reshape(-1, 2) / scale1
    if pair.warp1 is not None:
        kpts1 = apply_homography(np.linalg.inv(pair.warp1), kpts1)
    return Matches(kpts0, kpts1, np.asarray(matches.confidence, np.float64).reshape(-1)), runtime


def score_pair(pair: EvalPair, matches: Matches, runtime: float, benchmark: Benchmark, seed: int) -> ScoredPair:
    """The PairResult of `matches` (original frames) on `pair`."""
    result = PairResult(pair.name, pair.group, len(matches), runtime)
    errors = None
    if pair.has_pose:
        result.pose = pose_error(pair.T_0to1, matches.kpts0, matches.kpts1, pair.K0, pair.K1, seed=seed)
        errors = epipolar_errors(matches.kpts0, matches.kpts1, pair.K0, pair.K1, pair.T_0to1)
        if benchmark.epipolar_threshold is not None:
            result.precision = match_precision(errors, benchmark.epipolar_threshold)
    else:
        height, width = pair.image0.shape[:2]
        result.homography_error_px = homography_error(pair.H_0to1, matches.kpts0, matches.kpts1, height, width,
                                                      seed=seed)
    return ScoredPair(pair, result, matches, errors)


def stressed(pair: EvalPair, index: int, config: HarnessConfig) -> Iterator[EvalPair]:
    """The pair itself, or its image 1 at every angle / tilt of the stress test."""
    if config.stress is None:
        yield pair
    elif config.stress == "rotation":
        yield from (rotate_pair(pair, angle) for angle in config.stress_config.angles)
    else:
        direction = tilt_direction(config.stress_config.seed, index, pair.name)
        yield from (tilt_pair(pair, tilt, direction) for tilt in config.stress_config.tilts)


def stress_count(config: HarnessConfig) -> int:
    """How many variants of each pair `run` scores: 1, or one per angle / tilt."""
    if config.stress is None:
        return 1
    return len(config.stress_config.angles if config.stress == "rotation" else config.stress_config.tilts)


def pair_count(benchmark: Benchmark, config: HarnessConfig) -> int | None:
    """How many pairs `run` scores (before stress variants), or None where the benchmark cannot tell cheaply."""
    try:
        count = benchmark.num_pairs()
    except NotImplementedError:  # a benchmark that only iterates
        return config.max_pairs
    return count if config.max_pairs is None else min(count, config.max_pairs)


def run(benchmark: Benchmark, matcher: Matcher, config: HarnessConfig | None = None,
        on_pair: Callable[[ScoredPair], None] | None = None, progress: bool = True) -> list[PairResult]:
    """Score `matcher` on every pair of `benchmark` (and every stress setting); `on_pair` sees each scored pair
    as it is done (pictures). A stressed image 1 is resized by the factors of its original (their geometric
    mean, the same in x and y), so only the rotation or tilt changes, not the scale. `progress`: a tqdm bar on
    stderr, one step per scored pair (variant), named "benchmark / matcher"; TQDM_DISABLE=1 turns it off."""
    config = config if config is not None else HarnessConfig()
    pairs = pair_count(benchmark, config)
    label = " / ".join([benchmark.name, matcher.name, *([config.stress] if config.stress else [])])
    # only progress=False sets `disable`: an explicit value would override TQDM_DISABLE, tqdm's default
    bar = tqdm(total=None if pairs is None else pairs * stress_count(config), desc=label, unit="pair",
               dynamic_ncols=True, **({} if progress else {"disable": True}))
    results = []
    with bar:
        for index, pair in enumerate(islice(benchmark.pairs(), config.max_pairs)):
            factors0, factors1 = resize_factors(benchmark, pair.image0), resize_factors(benchmark, pair.image1)
            uniform1 = (float(np.sqrt(factors1[0] * factors1[1])),) * 2  # a turned canvas: alike in x and y
            for variant in stressed(pair, index, config):
                matches, runtime = match_pair(variant, matcher,
                                              (factors0, factors1 if variant.warp1 is None else uniform1))
                scored = score_pair(variant, matches, runtime, benchmark, config.ransac_seed)
                results.append(scored.result)
                bar.update()
                if on_pair is not None:
                    on_pair(scored)
    return results
