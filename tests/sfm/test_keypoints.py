"""One keypoint set per image (sfm/keypoints.py): snapping and merging against exact positions, tracks across
pairs, one-to-one matches, and the matches of three homography-related images against the known warps."""

import numpy as np
import pytest

from geometry.points import assign_to_kept, suppress
from models.matches import Matches
from sfm.keypoints import PRESETS, QuantizationConfig, one_to_one, sfm_features, snapped


def matches(points0, points1, confidence=None) -> Matches:
    points0, points1 = np.asarray(points0, np.float64), np.asarray(points1, np.float64)
    confidence = np.ones(len(points0)) if confidence is None else np.asarray(confidence, np.float64)
    return Matches(points0, points1, confidence)


def test_snapping_moves_points_to_their_cell_centres():
    points = np.array([[10.2, 20.49], [10.5, -0.5], [3.9, 4.1]])
    assert np.array_equal(snapped(points, 1), [[10, 20], [11, 0], [4, 4]])
    # 8-pixel cells from the image corner (-0.5, -0.5): pixels 0..7 share the centre 3.5
    assert np.array_equal(snapped(np.array([[0, 7], [7.49, 8]]), 8), [[3.5, 3.5], [3.5, 11.5]])
    assert np.array_equal(snapped(points, 0), points)


def test_two_observations_of_one_point_become_one_keypoint_and_points_farther_apart_stay_distinct():
    """Image a's point seen in two pairs 0.1 px apart across a pixel border (snapped 1 px apart, within
    max_error 1): one keypoint. A point 3 px away: another keypoint."""
    features = sfm_features({("a", "b"): matches([[10.45, 20.0], [13.0, 20.0]], [[5, 5], [50, 50]]),
                             ("a", "c"): matches([[10.55, 20.0]], [[7, 7]], [0.5])})
    assert len(features.keypoints["a"]) == 2
    first, second = (features.matches[pair][:, 0] for pair in (("a", "b"), ("a", "c")))
    assert features.matches[("a", "b")].shape == (2, 2) and features.matches[("a", "c")].shape == (1, 2)
    assert first[0] == second[0] != first[1]  # one keypoint for both observations, another for the far point
    # the merged keypoint sits at the more confident observation's snapped position
    assert np.array_equal(features.keypoints["a"][first[0]], [10, 20])
    assert np.array_equal(features.keypoints["a"][first[1]], [13, 20])


def test_a_point_seen_in_three_pairs_is_one_track():
    """A scene point in images a, b, c, matched in every pair with sub-pixel jitter: each image holds one keypoint
    for it, and the three pairs' matches name the same keypoints (a track COLMAP can triangulate)."""
    pa, pb, pc = np.array([[40.0, 30.0]]), np.array([[61.0, 33.0]]), np.array([[12.0, 80.0]])
    rng = np.random.default_rng(0)

    def jittered(points):
        return points + rng.uniform(-0.3, 0.3, points.shape)

    features = sfm_features({("a", "b"): matches(jittered(pa), jittered(pb)),
                             ("b", "c"): matches(jittered(pb), jittered(pc)),
                             ("a", "c"): matches(jittered(pa), jittered(pc))})
    assert {name: len(points) for name, points in features.keypoints.items()} == {"a": 1, "b": 1, "c": 1}
    assert all(np.array_equal(found, [[0, 0]]) for found in features.matches.values())


def test_a_keypoint_matched_twice_in_one_pair_keeps_its_most_confident_match():
    # two image-a points within a pixel (one keypoint) matched to two far-apart image-b points
    features = sfm_features({("a", "b"): matches([[10, 10], [10.3, 10], [30, 30]], [[5, 5], [60, 60], [61, 60]],
                                                 [0.4, 0.9, 0.8])})
    found, scores = features.matches[("a", "b")], features.scores[("a", "b")]
    b = features.keypoints["b"]
    # the second match is the keypoint's best; the third keeps its own a-keypoint, and b's (60, 60) and (61, 60)
    # merged into one keypoint, matched once: by the more confident of the two
    assert len(found) == 1 and np.allclose(scores, [0.9])
    assert np.array_equal(b[found[0, 1]], [60, 60])


def test_one_to_one_keeps_each_ids_best_match_both_ways():
    ids0, ids1 = np.array([0, 0, 1, 2]), np.array([5, 6, 6, 7])
    found, scores = one_to_one(ids0, ids1, np.array([0.2, 0.9, 0.5, 0.1]))
    assert found.tolist() == [[0, 6], [2, 7]] and np.allclose(scores, [0.9, 0.1])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_matches_of_three_warped_images_stay_on_the_known_warps(preset):
    """Images b and c are known homographies of image a; every pair's matches are the exact warps of random
    points plus 0.3 px of noise, different points in every pair. After quantisation every match still lies on
    its warp within what snapping and merging may move a point (half a cell's diagonal plus max_error, each
    side), each keypoint matched once per pair."""
    config = PRESETS[preset]
    rng = np.random.default_rng(1)
    warps = {"a": np.eye(3), "b": np.array([[0.9, 0.05, 12], [-0.04, 1.1, -7], [1e-4, 0, 1]]),
             "c": np.array([[1.05, -0.1, -9], [0.08, 0.95, 14], [0, -1e-4, 1]])}

    def warp(points, name):
        moved = np.c_[points, np.ones(len(points))] @ warps[name].T
        return moved[:, :2] / moved[:, 2:]

    pairs = {}
    for name0, name1 in (("a", "b"), ("a", "c"), ("b", "c")):
        scene = rng.uniform(60, 400, (300, 2))  # image-a pixels
        pairs[(name0, name1)] = matches(warp(scene, name0) + rng.normal(0, 0.3, scene.shape),
                                        warp(scene, name1) + rng.normal(0, 0.3, scene.shape),
                                        rng.uniform(0.2, 1.0, len(scene)))
    features = sfm_features(pairs, config)
    slack = config.cell_size / np.sqrt(2) + config.max_error + 1.5  # each side, plus the noise (5 sigma)
    for (name0, name1), found in features.matches.items():
        assert len(found) >= 100
        points0, points1 = features.keypoints[name0][found[:, 0]], features.keypoints[name1][found[:, 1]]
        back = np.c_[points0, np.ones(len(points0))] @ np.linalg.inv(warps[name0]).T  # image a's pixels
        truth = warp(back[:, :2] / back[:, 2:], name1)
        assert np.linalg.norm(truth - points1, axis=1).max() <= 2.2 * slack  # side 0 through the warp's scale
        assert len(np.unique(found[:, 0])) == len(found) == len(np.unique(found[:, 1]))


def test_suppression_keeps_no_two_points_within_the_radius_and_assigns_every_point_to_a_kept_one():
    rng = np.random.default_rng(2)
    points, scores = rng.uniform(0, 30, (400, 2)), rng.uniform(0, 1, 400)
    kept = suppress(points, scores, 2.0)
    distances = np.linalg.norm(points[kept][:, None] - points[kept][None], axis=2)
    assert (distances[~np.eye(len(kept), dtype=bool)] > 2.0).all()
    assert np.all(np.diff(scores[kept]) <= 0)
    again, assignment = assign_to_kept(points, scores, 2.0)
    assert np.array_equal(again, kept)
    assert np.array_equal(assignment[kept], np.arange(len(kept)))
    assert (np.linalg.norm(points - points[kept][assignment], axis=1) <= 2.0).all()


@pytest.mark.parametrize(("options", "named"), [(dict(cell_size=-1), "cell_size"),
                                                (dict(max_error=float("nan")), "max_error")])
def test_a_wrong_option_is_refused_naming_it(options, named):
    with pytest.raises(ValueError, match=f"^{named}="):
        QuantizationConfig(**options)
