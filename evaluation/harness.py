"""Run a matcher over a benchmark's pairs and score every pair in its original frames.

Every matcher sees the same pixels: both images resized by the benchmark's rule (`Benchmark.resize`). The
matches are scaled back to the original frames, image 1's stress transform (`EvalPair.warp1`) is undone, and
the pair is scored there with the estimation and metrics the papers use (evaluation/scoring.py).

Evaluation predicts, then scores: `score_predictions` walks the benchmark's pairs and their stress variants
(`variants`), asks a predictor for each variant's matches and scores them (`score_variant`). The predictor
matches (`run`, with `match_variant`) or reads a stored run (evaluate.py's predictions=), so re-scoring with
another RANSAC setting shares every step but the matching.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice

import numpy as np
from tqdm import tqdm

from data.pairs import EvalPair
from geometry.estimation import (
    ESTIMATOR_NAMES,
    HOMOGRAPHY_RANSAC_THRESHOLD_PX,
    POSE_RANSAC_THRESHOLD_PX,
    check_estimator,
)
from geometry.warp import apply_homography
from models.matches import Matches
from utils.resize import resized
from utils.values import INT_MAX, check_number, check_seed

from .benchmarks import Benchmark
from .matchers import Matcher
from .metrics import PairResult
from .predictions import Prediction
from .scoring import score_matches
from .stress import STRESS_KINDS, StressConfig, stress_variants


@dataclass
class HarnessConfig:
    stress: str | None = None  # None, "rotation" (image 1 turned by each angle) or "tilt" (ASIFT tilts)
    stress_config: StressConfig = field(default_factory=StressConfig)
    max_pairs: int | None = None  # the first N pairs of the benchmark; None: all
    ransac_seed: int = 0  # OpenCV's RANSAC is seeded per pair, so runs repeat
    ransac_threshold: float = POSE_RANSAC_THRESHOLD_PX  # pixels: the pose estimator's inlier threshold
    # true: every one of `sweep_thresholds` instead, scored on the same matches, the best reported (glue-factory's
    # eval.ransac_th=-1)
    ransac_sweep: bool = False
    sweep_thresholds: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # pixels, glue-factory's 0.5-3 px range
    # "opencv": RANSAC as LoFTR's tables (the default); "magsac": OpenCV's MAGSAC++; "poselib": PoseLib's
    # LO-RANSAC, as glue-factory's
    estimator: str = "opencv"

    def __post_init__(self):
        if self.stress not in (None, *STRESS_KINDS):
            raise ValueError(f"stress={self.stress!r} is not one of None, {', '.join(map(repr, STRESS_KINDS))}")
        if self.stress is not None and stress_count(self) == 0:
            kind, key = ("angle", "angles") if self.stress == "rotation" else ("tilt", "tilts")
            raise ValueError(f"stress={self.stress} needs at least one {kind}: stress_config.{key} is empty")
        if self.max_pairs is not None and (not isinstance(self.max_pairs, int) or isinstance(self.max_pairs, bool)
                                           or not 1 <= self.max_pairs <= INT_MAX):
            raise ValueError(f"max_pairs must be a whole number >= 1 (or null: all pairs), got {self.max_pairs!r}")
        check_seed("ransac_seed", self.ransac_seed)  # OpenCV's RNG takes a C int, PoseLib no negative seed
        if self.ransac_threshold == "sweep":  # the switch's earlier spelling
            raise ValueError("ransac_threshold=sweep: the threshold is a number of pixels; give ransac_sweep=true "
                             "to score every threshold of sweep_thresholds")
        if not _positive(self.ransac_threshold):
            raise ValueError(f"ransac_threshold must be a positive number of pixels (finite), got "
                             f"{self.ransac_threshold!r}")
        if self.ransac_sweep and (not self.sweep_thresholds or not all(_positive(t) for t in self.sweep_thresholds)):
            raise ValueError(f"sweep_thresholds must be positive numbers of pixels (finite), got "
                             f"{self.sweep_thresholds!r}")
        check_estimator(self.estimator)

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The pose thresholds to score with: the one, or the sweep's."""
        return tuple(self.sweep_thresholds) if self.ransac_sweep else (self.ransac_threshold,)


def _positive(value) -> bool:
    """A finite number of pixels above 0 (inf would count every match an inlier)."""
    try:
        check_number("", value, 0, above=True)
    except ValueError:
        return False
    return True


def protocol(config: HarnessConfig, kind: str = "pose", threshold: float | None = None) -> str:
    """What estimated the poses (kind "pose") or homographies ("homography", always at 3 px), for tables and
    summaries: e.g. "opencv RANSAC 0.5 px"; `threshold`: the one a sweep chose ("... 1.5 px, best of 0.5-3 px")."""
    name = ESTIMATOR_NAMES[config.estimator]
    if kind == "homography":
        return f"{name} {HOMOGRAPHY_RANSAC_THRESHOLD_PX:g} px"
    if not config.ransac_sweep:
        return f"{name} {config.ransac_threshold:g} px"
    swept = f"{min(config.thresholds):g}-{max(config.thresholds):g} px"
    return f"{name} sweep {swept}" if threshold is None else f"{name} {threshold:g} px, best of {swept}"


@dataclass
class Variant:
    """One pair as the matcher is shown it.

    key: names the pair and its stress setting, "INDEX NAME" (the pair's index in the benchmark, the
        variant's name, e.g. "3 a.jpg b.jpg rot 90"): what a stored prediction is found by.
    pair: the pair as shown (image1 after its stress warp, `warp1`).
    factors: each image's (x, y) factors from original pixels to the pixels the matcher is given.
    """

    key: str
    pair: EvalPair
    factors: tuple[tuple[float, float], tuple[float, float]]


Predictor = Callable[[Variant], Prediction]  # a variant's matches: matched, or read from a store


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


def variants(benchmark: Benchmark, config: HarnessConfig) -> Iterator[Variant]:
    """Every variant `score_predictions` scores: the first `config.max_pairs` pairs, each at every stress
    setting. A stressed image 1 is resized by the factors of its original (their geometric mean, the same in x
    and y), so only the rotation or tilt changes, not the scale."""
    for index, pair in enumerate(islice(benchmark.pairs(), config.max_pairs)):
        factors0, factors1 = resize_factors(benchmark, pair.image0), resize_factors(benchmark, pair.image1)
        uniform1 = (float(np.sqrt(factors1[0] * factors1[1])),) * 2  # a turned canvas: alike in x and y
        for variant in stress_variants(pair, index, config.stress, config.stress_config):
            factors = (factors0, factors1 if variant.warp1 is None else uniform1)
            yield Variant(f"{index} {variant.name}", variant, factors)


def match_variant(variant: Variant, matcher: Matcher) -> Prediction:
    """The matcher's matches on `variant` in the ORIGINAL frames of both images (undoing the resize and
    `warp1`), and the matching time in seconds."""
    pair = variant.pair
    image0, scale0 = resized(pair.image0, variant.factors[0])
    image1, scale1 = resized(pair.image1, variant.factors[1])
    start = time.perf_counter()
    matches = matcher.match(image0, image1)
    runtime = time.perf_counter() - start
    kpts0 = np.asarray(matches.keypoints0, np.float64).reshape(-1, 2) / scale0
    kpts1 = np.asarray(matches.keypoints1, np.float64).reshape(-1, 2) / scale1
    if pair.warp1 is not None:
        kpts1 = apply_homography(np.linalg.inv(pair.warp1), kpts1)
    return Prediction(Matches(kpts0, kpts1, np.asarray(matches.confidence, np.float64).reshape(-1)), runtime)


def score_variant(pair: EvalPair, prediction: Prediction, benchmark: Benchmark, config: HarnessConfig) -> ScoredPair:
    """The ScoredPair of `prediction` (original frames) on `pair`."""
    matches = prediction.matches
    result, errors = score_matches(
        matches.keypoints0, matches.keypoints1, name=pair.name, group=pair.group, runtime_s=prediction.runtime_s,
        K0=pair.K0, K1=pair.K1, T_0to1=pair.T_0to1, H_0to1=pair.H_0to1, image0_size=pair.image0.shape[:2],
        epipolar_threshold=benchmark.epipolar_threshold, ransac_seed=config.ransac_seed,
        ransac_threshold_px=config.ransac_threshold, estimator=config.estimator)
    return ScoredPair(pair, result, matches, errors)


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


def score_predictions(benchmark: Benchmark, predict: Predictor, matcher_name: str,
                      config: HarnessConfig | None = None, on_pair: Callable[[ScoredPair], None] | None = None,
                      progress: bool = True) -> list[PairResult]:
    """Score `predict`'s prediction for every variant of `benchmark` (see `variants`); `on_pair` sees each
    scored pair as it is done (pictures). `progress`: a tqdm bar on stderr, one step per scored variant, named
    "benchmark / matcher_name" (the matcher that made the predictions); TQDM_DISABLE=1 turns it off. A sweep
    (`ransac_sweep=True`) needs `score_thresholds`."""
    config = config if config is not None else HarnessConfig()
    if config.ransac_sweep:
        raise ValueError("score_predictions scores one threshold: use score_thresholds for ransac_sweep=True")
    return score_thresholds(benchmark, predict, matcher_name, config, on_pair, progress)[config.ransac_threshold]


def score_thresholds(benchmark: Benchmark, predict: Predictor, matcher_name: str, config: HarnessConfig,
                     on_pair: Callable[[ScoredPair], None] | None = None, progress: bool = True
                     ) -> dict[float, list[PairResult]]:
    """`score_predictions` at each of `config.thresholds`, each variant predicted once: {threshold: results}.
    `on_pair` sees each pair scored at the first threshold (its matches and epipolar errors are the same at
    every one)."""
    pairs = pair_count(benchmark, config)
    label = " / ".join([benchmark.name, matcher_name, *([config.stress] if config.stress else [])])
    # only progress=False sets `disable`: an explicit value would override TQDM_DISABLE, tqdm's default
    bar = tqdm(total=None if pairs is None else pairs * stress_count(config), desc=label, unit="pair",
               dynamic_ncols=True, **({} if progress else {"disable": True}))
    settings = {threshold: replace(config, ransac_threshold=threshold, ransac_sweep=False)
                for threshold in config.thresholds}
    results: dict[float, list[PairResult]] = {threshold: [] for threshold in settings}
    with bar:
        for variant in variants(benchmark, config):
            prediction = predict(variant)
            for index, (threshold, setting) in enumerate(settings.items()):
                scored = score_variant(variant.pair, prediction, benchmark, setting)
                results[threshold].append(scored.result)
                if index == 0 and on_pair is not None:
                    on_pair(scored)
            bar.update()
    return results


def run(benchmark: Benchmark, matcher: Matcher, config: HarnessConfig | None = None,
        on_pair: Callable[[ScoredPair], None] | None = None, progress: bool = True) -> list[PairResult]:
    """Match and score `matcher` on every pair of `benchmark` (and every stress setting): `score_predictions`
    with `match_variant` as the predictor."""
    return score_predictions(benchmark, lambda variant: match_variant(variant, matcher), matcher.name, config,
                             on_pair, progress)
