"""Matchers for evaluation and match.py: two uint8 grayscale images in, `Matches` out.

Every matcher has a `name` and one method, `match(image0, image1) -> Matches`, taking (H, W) uint8 images
and returning keypoints in those images' pixels, (x, y) with pixel (c, r) at (c, r). The harness resizes the
images to the benchmark's resolution before it calls a matcher, so matchers take the images as given.

    sift   OpenCV SIFT, mutual nearest neighbours passing Lowe's ratio test (evaluation/baselines.py)
    asift  SIFT on affine-simulated views (OpenCV's AffineFeature, Yu & Morel's ASIFT), same matching
    loftr  our LoFTR (models/loftr.py), from a checkpoint or a model in memory (evaluation/loftr_matcher.py)
    xfeat, xfeat_star, xfeat_lighterglue   XFeat's pretrained weights (evaluation/learned.py)
    aliked_lightglue, disk_lightglue   ALIKED or DISK keypoints with LightGlue (evaluation/learned.py; optional)
"""

from functools import partial
from typing import Protocol

import numpy as np

from data.pairs import Matches

from .baselines import ASIFTMatcher, SIFTMatcher
from .learned import LightGlueMatcher, XFeatMatcher
from .loftr_matcher import LoFTRMatcher


class Matcher(Protocol):
    name: str

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches: ...


MATCHERS = {"sift": SIFTMatcher, "asift": ASIFTMatcher, "loftr": LoFTRMatcher.from_checkpoint,
            "xfeat": partial(XFeatMatcher, "sparse"), "xfeat_star": partial(XFeatMatcher, "star"),
            "xfeat_lighterglue": partial(XFeatMatcher, "lighterglue"),
            "aliked_lightglue": partial(LightGlueMatcher, "aliked"),
            "disk_lightglue": partial(LightGlueMatcher, "disk")}


def build_matcher(name: str, **options) -> Matcher:
    """The matcher registered as `name` in MATCHERS, built with `options` (its constructor's arguments; for
    "loftr" those of LoFTRMatcher.from_checkpoint). ValueError listing the names for an unknown one."""
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; valid names: {', '.join(sorted(MATCHERS))}")
    return MATCHERS[name](**options)
