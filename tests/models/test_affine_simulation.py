"""Affine simulation (models/affine.py): views' keypoints back to image 0 exactly, SIFT on an exact tilt-4 pair
landing on the affine, the merge's greedy rule, the covering covering, every refused option, and LoFTR's
batched views matching its one-by-one views."""

import math
import time

import numpy as np
import pytest
import torch

from data.synthetic.texture import make_texture
from evaluation.baselines import SIFTMatcher
from geometry.affine import MAX_TILT, centred_map, tilt_linear, tilt_view, transition_tilt
from models import affine
from models.affine import (
    AffineSimulation,
    AffineSimulationConfig,
    covering,
    geometric_filter,
    merge,
    transition_tilts,
    views_of,
)
from models.family import model_for_weights
from models.matcher import LoFTRMatcher
from models.matches import ImageTooSmallError, Matches
from tests.helpers import tiny_model_config


class ViewPoints:
    """A fake inner matcher that recognises the view it is given (by its pixels; views of image 0 first, then
    of image 1 with both_images): for view k it returns known image-0 points P_k, as the view's warp takes them,
    matched to image-1 points that name them (k * 1000 + i)."""

    name = "fake"

    def __init__(self, image: np.ndarray, views: list[tuple[float, float]]):
        self.shape, self.views, self.calls = image.shape, views, 0
        self.rendered = [tilt_view(image, tilt, direction)[0] for tilt, direction in views]
        self.points = {}  # k -> P_k (M, 2) image-0 pixels

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        view = next(index for index, rendered in enumerate(self.rendered)
                    if rendered.shape == image0.shape and np.array_equal(rendered, image0))
        k = self.calls // len(self.views) * len(self.views) + view  # the round: image 0's views, then image 1's
        tilt, direction = self.views[view]
        warp, shape = centred_map(tilt_linear(tilt, direction), self.shape)
        assert image0.shape == shape
        rng = np.random.default_rng(k)
        height, width = self.shape
        points = rng.uniform([0, 0], [width - 1, height - 1], (20, 2))
        self.points[k] = points
        labels = k * 1000 + np.arange(len(points), dtype=np.float64)
        self.calls += 1
        return Matches(points @ warp[:2, :2].T + warp[:2, 2], np.stack([labels, labels], 1),
                       np.full(len(points), 0.5, np.float32))

    def truth(self) -> np.ndarray:
        """Every P_k, in the order of k."""
        return np.concatenate([self.points[k] for k in sorted(self.points)])


class Batched(ViewPoints):
    """The same, with the batch method the simulation prefers when an inner matcher has it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.batches = []

    coarse_stride = 1  # its matches are exact either way

    def match_many(self, images0, image1, refine=True):
        self.batches.append([image.shape for image in images0])
        return [self.match(image, image1) for image in images0]


@pytest.mark.parametrize("inner_type", [ViewPoints, Batched])
def test_view_keypoints_go_back_to_image0_through_the_exact_inverse(inner_type):
    image0 = make_texture(60, 90, seed=0)
    config = AffineSimulationConfig(tolerance=2.0, merge_radius=1e-3, filter="none", batch_size=4, screening_scale=1)
    views = views_of(config)
    inner = inner_type(image0, views)
    result = AffineSimulation(inner, config).match(image0, image0)
    assert inner.calls == len(views) == 26
    if inner_type is Batched:  # views of one shape only, at most batch_size of them: no view is padded
        assert sum(map(len, inner.batches)) == 26
        assert all(len(batch) <= 4 and len(set(batch)) == 1 for batch in inner.batches)
        assert any(len(batch) > 1 for batch in inner.batches)
    truth = inner.truth()
    labels = result.keypoints1[:, 0].astype(int)
    expected = truth[[label // 1000 * 20 + label % 1000 for label in labels]]
    assert len(result) == len(truth)  # random points: none within 1e-3 px of another
    assert result.keypoints0.dtype == np.float64
    assert np.abs(result.keypoints0 - expected).max() <= 1e-6


def test_views_of_image1_come_back_to_image1_with_both_images():
    image0 = make_texture(60, 90, seed=0)
    config = AffineSimulationConfig(tolerance=2.5, merge_radius=1e-3, filter="none", both_images=True,
                                    screening_scale=1)
    views = views_of(config)
    inner = ViewPoints(image0, views)
    result = AffineSimulation(inner, config).match(image0, image0)
    assert inner.calls == 2 * len(views) == 26
    second = result.keypoints0[:, 0] >= len(views) * 1000  # image 1's views: their labels are now keypoints0
    assert second.sum() == len(views) * 20 and (~second).sum() == len(views) * 20
    labels = result.keypoints0[second, 0].astype(int)
    expected = inner.truth()[[label // 1000 * 20 + label % 1000 for label in labels]]
    assert np.abs(result.keypoints1[second] - expected).max() <= 1e-6


def test_sift_views_of_an_exact_tilt_4_pair_land_on_its_affine():
    """image 1 is image 0 tilted by 4 along 20 degrees (not a direction of the covering): plain SIFT finds
    almost nothing right; SIFT on the simulated views finds well over a hundred matches, most on the affine.
    Measured (seed 1, 192 px, tolerance 1.5, 61 views, homography filter): 135 matches, errors median 0.18 px,
    75th percentile 0.64, 90th 1.53, 70% within 0.5 px; plain SIFT: 2 matches, none within 3 px. SIFT
    localises a keypoint to a few tenths of a pixel between views a transition tilt up to 1.5 apart, and back
    in image 0 a view's pixel is up to its tilt wide: the errors are SIFT's, the mapping itself is exact (the
    test above)."""
    image0 = make_texture(192, 192, seed=1)
    image1, warp = tilt_view(image0, 4.0, 20.0)

    def errors(matches: Matches) -> np.ndarray:
        return np.linalg.norm(matches.keypoints0 @ warp[:2, :2].T + warp[:2, 2] - matches.keypoints1, axis=1)

    sift = SIFTMatcher()
    plain = sift.match(image0, image1)
    simulation = AffineSimulation(sift, AffineSimulationConfig(filter="homography", screening_scale=1))
    result = simulation.match(image0, image1)
    error = errors(result)
    assert simulation.views == 61 and simulation.last_stats.views == 61
    assert simulation.last_stats.seconds > 0 and simulation.last_stats.kept == len(result)
    assert np.median(error) <= 0.5
    assert np.mean(error <= 0.5) >= 0.6
    assert np.percentile(error, 90) <= 3.0  # the filter's threshold
    assert len(result) >= 100
    assert (errors(plain) <= 3).sum() <= 5


def test_screening_redoes_the_views_nearest_the_true_tilt_at_full_resolution():
    """ASIFT's two-resolution scheme on the exact tilt-4 pair: every view matched at half scale, the 5 with the
    most matches redone at full resolution. The kept views are the covering's nearest to the true tilt (the
    nearest within the tolerance, all within twice it) and their matches still lie on the affine."""
    image0 = make_texture(192, 192, seed=1)
    image1, warp = tilt_view(image0, 4.0, 20.0)
    calls = []

    class Recording(SIFTMatcher):
        def match(self, image0, image1):
            calls.append(image0)
            return super().match(image0, image1)

    config = AffineSimulationConfig(filter="homography", screening_scale=0.5, views_kept=5)
    simulation = AffineSimulation(Recording(), config)
    result = simulation.match(image0, image1)
    assert simulation.screens and simulation.views == 61 and simulation.full_resolution_views == 5
    assert (simulation.last_stats.views, simulation.last_stats.screened) == (5, 61)
    assert len(calls) == 61 + 5
    kept = [view for view in views_of(config)  # the views redone, known by their pixels
            if any(np.array_equal(tilt_view(image0, *view)[0], redone) for redone in calls[61:])]
    assert len(kept) == 5
    nearest = transition_tilts(*(np.array(values)[:, None] for values in zip(*kept)), 4.0, 20.0).ravel()
    assert nearest.min() <= config.tolerance and nearest.max() <= 2 * config.tolerance
    error = np.linalg.norm(result.keypoints0 @ warp[:2, :2].T + warp[:2, 2] - result.keypoints1, axis=1)
    assert len(result) >= 50 and np.median(error) <= 0.5


class CoarseScreened(SIFTMatcher):
    """SIFT as a ManyMatcher whose unrefined matches are coarse: each keypoint moved to the corner of its
    8-pixel cell, as a LoFTR-family model's coarse matches are (up to a cell off). Records each view's refine."""

    coarse_stride = 8

    def __init__(self):
        super().__init__()
        self.refines = []

    def match_many(self, images0, image1, refine=True):
        self.refines += [refine] * len(images0)
        found = [self.match(image0, image1) for image0 in images0]
        if refine:
            return found
        return [Matches(*(np.floor(points / self.coarse_stride) * self.coarse_stride
                          for points in (matches.keypoints0, matches.keypoints1)), matches.confidence)
                for matches in found]


def test_a_batch_matcher_screens_with_its_coarse_matches(monkeypatch):
    """With a ManyMatcher the screening asks for coarse matches alone (refine=False), a cell off at most, and
    the filter allows a cell: the views chosen are still the covering's nearest to the true tilt of the exact
    tilt-4 pair, then matched refined, and the result lies on the affine."""
    image0 = make_texture(192, 192, seed=1)
    image1, warp = tilt_view(image0, 4.0, 20.0)
    inner = CoarseScreened()
    thresholds = []

    def recording(matches, model, threshold):
        thresholds.append(threshold)
        return geometric_filter(matches, model, threshold)

    monkeypatch.setattr(affine, "geometric_filter", recording)
    config = AffineSimulationConfig(filter="homography", screening_scale=0.5, views_kept=5)
    result = AffineSimulation(inner, config).match(image0, image1)
    assert inner.refines == [False] * 61 + [True] * 5
    assert thresholds == [8.0] * 61 + [3.0]  # a cell while screening, then the configured pixels
    chosen = AffineSimulation(inner, config)._chosen(image0, image1)
    nearest = transition_tilts(*(np.array(values)[:, None] for values in zip(*chosen)), 4.0, 20.0).ravel()
    assert nearest.min() <= config.tolerance and nearest.max() <= 2 * config.tolerance
    error = np.linalg.norm(result.keypoints0 @ warp[:2, :2].T + warp[:2, 2] - result.keypoints1, axis=1)
    assert len(result) >= 50 and np.median(error) <= 0.5


def test_a_view_too_small_for_the_inner_matcher_matches_nothing():
    """Views tilted by 8 of a 60 px image are 7 px wide: the inner matcher refuses them (ImageTooSmallError),
    the simulation goes on with the others instead of failing the pair."""
    image0 = make_texture(60, 60, seed=0)
    config = AffineSimulationConfig(tolerance=2.5, merge_radius=1e-3, filter="none", screening_scale=1)
    views = views_of(config)

    class Picky(ViewPoints):
        def match(self, image0, image1):
            if min(image0.shape) < 16:
                raise ImageTooSmallError("image0", image0.shape, self.name, 16)
            return super().match(image0, image1)

    inner = Picky(image0, views)
    result = AffineSimulation(inner, config).match(image0, image0)
    small = sum(min(tilt_view(image0, *view)[0].shape) < 16 for view in views)
    assert 0 < small < len(views) and inner.calls == len(views) - small
    assert len(result) == 20 * inner.calls


def test_a_set_magsac_asserts_on_is_kept_whole():
    """12 SIFT matches of a screened view (measured: OpenCV 5's MAGSAC++ fundamental fit fails an internal
    assertion on them at 1.5 px) are no error: no model, all kept, as with too few matches."""
    points0 = np.array([[6.56, 37.31], [21.26, 32.92], [14.58, 83.4], [22.92, 92.14], [30.86, 78.23], [56.5, 65.64],
                        [65.41, 90.97], [111.54, 17.08], [109.58, 27.52], [121.26, 15.56], [132.2, 95.24],
                        [156.95, 40.16]])
    points1 = np.array([[15.5, 33.54], [19.53, 33.23], [33.35, 72.78], [40.27, 82.88], [37.5, 71.19], [46.4, 72.14],
                        [45.85, 41.47], [55.35, 51.91], [56.24, 57.69], [58.15, 52.34], [87.82, 119.87],
                        [46.5, 101.38]])
    matches = Matches(points0, points1, np.ones(12))
    assert len(geometric_filter(matches, "fundamental", 1.5)) == 12


def greedy_reference(points: np.ndarray, confidence: np.ndarray, radius: float) -> list[int]:
    """The rule spelled out, O(N^2): the most confident first, each kept unless within radius of a kept one."""
    kept = []
    for index in np.argsort(-confidence, kind="stable"):
        if all(np.linalg.norm(points[index] - points[other]) > radius for other in kept):
            kept.append(int(index))
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_keeps_the_most_confident_and_no_two_within_the_radius(seed):
    rng = np.random.default_rng(seed)
    count, radius = 400, 3.0
    points = rng.uniform(0, 60, (count, 2))
    points[:40] = points[40:80] + rng.uniform(-1, 1, (40, 2))  # close duplicates, as views give them
    confidence = rng.random(count).astype(np.float32)
    matches = Matches(points, points + 5, confidence)
    merged = merge(matches, radius)
    distances = np.linalg.norm(merged.keypoints0[:, None] - merged.keypoints0[None], axis=2)
    assert (distances[np.triu_indices(len(merged), 1)] > radius).all()
    kept = greedy_reference(points, confidence, radius)
    assert np.array_equal(merged.keypoints0, points[kept])
    assert merged.confidence[0] == confidence.max()
    assert np.array_equal(merged.keypoints1, merged.keypoints0 + 5)


def test_merge_of_many_matches_is_vectorised():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 640, (60_000, 2))
    start = time.perf_counter()
    merged = merge(Matches(points, points, rng.random(len(points))), 2.0)
    assert time.perf_counter() - start < 5.0  # a Python loop over 60k matches and their neighbours takes longer
    assert 0 < len(merged) < len(points)


@pytest.mark.parametrize("max_tilt, tolerance", [(8, 1.5), (8, 2.0), (8, 2.5), (4, 1.2), (16, 2.0), (5.7, 1.7)])
def test_the_covering_covers_every_tilt_up_to_max_tilt(max_tilt, tolerance):
    views = covering(float(max_tilt), tolerance)
    rng = np.random.default_rng(0)
    tilt = np.exp(rng.uniform(0, math.log(max_tilt), 20_000))
    tilt[:2] = 1.0, max_tilt
    direction = rng.uniform(0, 180, len(tilt))
    view_tilt, view_direction = (np.array(values)[:, None] for values in zip(*views))
    nearest = transition_tilts(view_tilt, view_direction, tilt, direction).min(0)
    assert nearest.max() <= tolerance + 1e-9
    for index in range(0, len(tilt), 2000):  # the closed form is geometry's transition tilt
        exact = min(transition_tilt(tilt_linear(t, d), tilt_linear(tilt[index], direction[index])) for t, d in views)
        assert exact == pytest.approx(nearest[index], rel=1e-9)
    assert all(1 <= t <= max_tilt and 0 <= d < 180 for t, d in views)


def test_the_covering_needs_few_views():
    counts = {tolerance: len(covering(8.0, tolerance)) for tolerance in (1.5, 2.0, 2.5)}
    assert counts == {1.5: 61, 2.0: 26, 2.5: 13}  # ASIFT's own grid has 43 views for tilts up to 5.7
    assert len(views_of(AffineSimulationConfig())) == 61  # the default fits max_views 64
    assert covering(1.4, 1.5) == ((1.0, 0.0),)


def test_explicit_tilts_bypass_the_covering():
    config = AffineSimulationConfig(tilts=[1, 2, 4], longitudes=[3, 2, 4])
    assert views_of(config) == [(1.0, 0.0), (2.0, 0.0), (2.0, 90.0), (4.0, 0.0), (4.0, 45.0), (4.0, 90.0),
                                (4.0, 135.0)]
    assert AffineSimulation(ViewPoints(np.zeros((8, 8), np.uint8), []),
                            AffineSimulationConfig(both_images=True)).views == 122


@pytest.mark.parametrize("options, field", [
    (dict(max_tilt=0.5), "max_tilt"), (dict(max_tilt=MAX_TILT * 2), "max_tilt"), (dict(max_tilt="8"), "max_tilt"),
    (dict(tolerance=1.0), "tolerance"), (dict(tolerance=0.5), "tolerance"), (dict(tolerance=math.nan), "tolerance"),
    (dict(tilts=[1, 2]), "longitudes"), (dict(longitudes=[1, 2]), "tilts"), (dict(tilts=[]), "tilts"),
    (dict(tilts=[], longitudes=[]), "tilts"), (dict(tilts=[1, 2], longitudes=[1]), "longitudes"),
    (dict(tilts=[0.5], longitudes=[1]), "tilts[0]"), (dict(tilts=[1, MAX_TILT + 1], longitudes=[1, 1]), "tilts[1]"),
    (dict(tilts=[2], longitudes=[0]), "longitudes[0]"), (dict(tilts=[2], longitudes=[1.5]), "longitudes[0]"),
    (dict(tilts=2, longitudes=[1]), "tilts"),
    (dict(max_views=0), "max_views"), (dict(max_views=2.5), "max_views"), (dict(max_views=10), "max_views"),
    (dict(tilts=[2], longitudes=[100], max_views=50), "max_views"),
    (dict(merge_radius=0), "merge_radius"), (dict(merge_radius=-1), "merge_radius"),
    (dict(filter="affine"), "filter"), (dict(filter=None), "filter"),
    (dict(filter_threshold=0), "filter_threshold"), (dict(batch_size=0), "batch_size"),
    (dict(batch_size=1.5), "batch_size"), (dict(both_images=1), "both_images"),
    (dict(both_images="yes"), "both_images"), (dict(screening_scale=0), "screening_scale"),
    (dict(screening_scale=1.5), "screening_scale"), (dict(views_kept=0), "views_kept"),
    (dict(views_kept=2.5), "views_kept"),
])
def test_every_wrong_option_is_refused_naming_its_field(options, field):
    with pytest.raises(ValueError) as error:
        AffineSimulationConfig(**options)
    assert str(error.value).startswith(f"{field}=")


def test_a_covering_over_max_views_says_what_to_change():
    with pytest.raises(ValueError, match=r"max_views=64: .* 297 views; raise max_views, or raise tolerance or "
                                         r"lower max_tilt"):
        AffineSimulationConfig(tolerance=1.2)
    assert AffineSimulationConfig(tolerance=1.2, max_views=300).max_views == 300


@pytest.fixture(scope="module")
def tiny_loftr() -> LoFTRMatcher:
    torch.manual_seed(0)
    config = tiny_model_config()
    config.match_coarse.threshold = 0.0  # random weights: low confidences
    return LoFTRMatcher(model_for_weights(None, config).eval())


def test_batched_views_give_the_one_by_one_matches(tiny_loftr):
    """match_many pads the views to one size under masks: measured, the same matches as one by one, keypoints
    within 2e-4 px and confidences within 2e-6 (float rounding of the batched forward)."""
    image0 = make_texture(96, 120, seed=2)
    image1, _ = tilt_view(image0, 2.0, 30.0)
    views = [tilt_view(image0, tilt, direction)[0] for tilt, direction in ((1, 0), (2, 0), (2, 90), (2.8, 45))]
    assert len({view.shape for view in views}) == 4
    batched = tiny_loftr.match_many(views, image1)
    for view, together in zip(views, batched):
        alone = tiny_loftr.match(view, image1)
        assert len(alone) == len(together) > 0
        assert np.abs(alone.keypoints0 - together.keypoints0).max() <= 1e-3
        assert np.abs(alone.keypoints1 - together.keypoints1).max() <= 1e-3
        assert np.abs(alone.confidence - together.confidence).max() <= 1e-4
