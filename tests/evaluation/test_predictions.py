"""Predict, then score: a stored prediction reads back exactly, scores from the store equal scores computed
directly, re-scoring never calls a matcher, and a store that does not fit or cannot be read is refused, naming
the file."""

from dataclasses import replace

import h5py
import numpy as np
import pytest

from evaluation.harness import HarnessConfig, match_variant, score_predictions, variants
from evaluation.metrics import PairResult
from evaluation.predictions import (
    MIN_MATCH_BOUND,
    Prediction,
    PredictionsError,
    PredictionStore,
    RunHeader,
    match_bound,
)
from evaluation.stress import StressConfig
from models.matches import Matches
from tests.harness_helpers import GivenPairs, Oracle, two_view

HEADER = RunHeader("given", "Resize(longer_side=640)", "oracle", None)


def stored_run(path, benchmark, matcher, config: HarnessConfig) -> list[PairResult]:
    """Match as evaluate.py does, each variant's prediction stored under its key; the scores of the matches
    in memory."""
    header = RunHeader(benchmark.name, repr(benchmark.resize), matcher.name, config.stress)
    with PredictionStore.create(path, header) as store:

        def predict(variant):
            prediction = match_variant(variant, matcher)
            store.add(variant.key, prediction)
            return prediction

        return score_predictions(benchmark, predict, matcher.name, config, progress=False)


def refused(path, match: str) -> None:
    with pytest.raises(PredictionsError, match=match), PredictionStore.open(path):
        pass


def test_a_prediction_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    matches = Matches(rng.uniform(0, 640, (7, 2)), rng.uniform(0, 480, (7, 2)), rng.uniform(0, 1, 7))
    key = "0 scene/a.jpg scene/b.jpg rot 90"  # a "/" would nest HDF5 groups
    with PredictionStore.create(tmp_path / "p.h5", HEADER) as store:
        store.add(key, Prediction(matches, 0.125))
        store.add("1 none", Prediction(Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)), 0.0))
    with PredictionStore.open(tmp_path / "p.h5") as store:
        assert store.header == HEADER
        read = store.get(key, MIN_MATCH_BOUND)
        assert len(store.get("1 none", MIN_MATCH_BOUND).matches) == 0
    for name in ("keypoints0", "keypoints1", "confidence"):
        np.testing.assert_array_equal(getattr(read.matches, name), getattr(matches, name))
    assert read.runtime_s == 0.125


def test_scores_from_the_store_equal_scores_computed_directly(tmp_path):
    pair, pixels0, pixels1 = two_view()
    noisy1 = pixels1 + np.random.default_rng(3).normal(0, 2.0, pixels1.shape)  # so that RANSAC has work to do
    benchmark, matcher = GivenPairs(given=[pair]), Oracle(pixels0, noisy1)
    config = HarnessConfig(stress="rotation", stress_config=StressConfig(angles=(0, 90, 30)))
    direct = stored_run(tmp_path / "p.h5", benchmark, matcher, config)
    with PredictionStore.open(tmp_path / "p.h5") as store:  # no matcher from here on
        def stored(variant):
            return store.get(variant.key, match_bound(variant.pair.image0.shape, variant.pair.image1.shape))
        again = score_predictions(benchmark, stored, store.header.matcher, config, progress=False)
        looser = score_predictions(benchmark, stored, "oracle", replace(config, ransac_threshold=3.0), progress=False)
    assert again == direct  # every field: pose errors, precision, matches, runtime
    assert [r.num_matches for r in looser] == [r.num_matches for r in direct]
    assert [r.pose.num_inliers for r in looser] != [r.pose.num_inliers for r in direct]  # 2 px noise
    assert [v.key for v in variants(benchmark, config)] == ["0 exact rot 0", "0 exact rot 90", "0 exact rot 30"]


def test_a_store_of_other_settings_is_refused_naming_the_file(tmp_path):
    pair, pixels0, pixels1 = two_view()
    benchmark = GivenPairs(given=[pair])
    stored_run(tmp_path / "p.h5", benchmark, Oracle(pixels0, pixels1), HarnessConfig())
    with PredictionStore.open(tmp_path / "p.h5") as store:
        store.check_fits("given", repr(benchmark.resize), None)
        with pytest.raises(PredictionsError, match=r"p.h5 were made with stress=None, not rotation"):
            store.check_fits("given", repr(benchmark.resize), "rotation")
        with pytest.raises(PredictionsError, match=r"p.h5 were made with benchmark=given, not hpatches"):
            store.check_fits("hpatches", repr(benchmark.resize), None)
        with pytest.raises(PredictionsError, match=r"p.h5 hold no matches for pair '1 other'"):
            store.get("1 other", MIN_MATCH_BOUND)


def test_a_missing_or_corrupt_store_is_refused_naming_the_file(tmp_path):
    refused(tmp_path / "nowhere.h5", r"nowhere.h5 does not exist")
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5 " * 100)
    refused(tmp_path / "garbage.h5", r"garbage.h5 cannot be read")
    with PredictionStore.create(tmp_path / "whole.h5", HEADER) as store:
        store.add("0 a b", Prediction(Matches(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3)), 0.1))
    data = (tmp_path / "whole.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "truncated.h5", r"truncated.h5 cannot be read")
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["x"] = np.zeros(3)  # HDF5, but not ours
    refused(tmp_path / "other.h5", r"other.h5 is not a predictions file")
    with h5py.File(tmp_path / "whole.h5", "a") as file:
        del file["0 a b/keypoints1"]
    with PredictionStore.open(tmp_path / "whole.h5") as store, pytest.raises(PredictionsError, match="'0 a b'"):
        store.get("0 a b", MIN_MATCH_BOUND)
