"""Reading hloc's files back as hloc does, for the tests of the exports (tests/sfm/, tests/test_recipes.py)."""

import h5py
import numpy as np

from sfm.keypoints import SfMFeatures


def read_hloc(folder, pairs) -> SfMFeatures:
    """hloc's files read as hloc's `get_keypoints` and `get_matches` read them: keypoints by image name, a pair's
    matches from `matches0` (-1: unmatched) under the key `name0-with-dashes/name1-with-dashes`."""
    features = SfMFeatures()
    with h5py.File(folder / "features.h5", "r") as file:
        for name in {name for pair in pairs for name in pair}:
            features.keypoints[name] = file[name]["keypoints"][()].astype(np.float64)
    with h5py.File(folder / "matches.h5", "r") as file:
        for name0, name1 in pairs:
            group = file[name0.replace("/", "-")][name1.replace("/", "-")]
            matches0 = group["matches0"][()]
            valid = np.flatnonzero(matches0 > -1)
            features.matches[(name0, name1)] = np.stack([valid, matches0[valid]], 1)
            features.scores[(name0, name1)] = group["matching_scores0"][()][valid].astype(np.float64)
    return features
