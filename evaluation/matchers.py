"""Matchers for evaluation and match.py: two uint8 grayscale images in, `Matches` out.

Every matcher has a `name` and one method, `match(image0, image1) -> Matches`, taking (H, W) uint8 images
and returning keypoints in those images' pixels, (x, y) with pixel (c, r) at (c, r). The harness resizes the
images to the benchmark's resolution before it calls a matcher, so matchers take the images as given.

    sift   OpenCV SIFT, mutual nearest neighbours passing Lowe's ratio test (evaluation/baselines.py)
    asift  SIFT on affine-simulated views (OpenCV's AffineFeature, Yu & Morel's ASIFT), same matching
    loftr  any member of the LoFTR family (LoFTR, Efficient LoFTR, ...) from a checkpoint (models/matcher.py)
    xfeat, xfeat_star, xfeat_lighterglue   XFeat's pretrained weights (evaluation/learned.py)
    aliked_lightglue, disk_lightglue   ALIKED or DISK keypoints with LightGlue (evaluation/learned.py; optional)

Any of them can be wrapped in the affine simulation (`simulated`, models/affine.py): evaluate.py's
`affine=simulated`, match.py's --affine-simulation.
"""

from functools import partial
from typing import Protocol

import numpy as np

from models.affine import AffineSimulation, AffineSimulationConfig
from models.matcher import LoFTRMatcher, checked_device
from models.matches import Matches
from utils.values import check_number

from .baselines import ASIFTMatcher, SIFTMatcher
from .learned import LightGlueMatcher, XFeatMatcher


class Matcher(Protocol):
    name: str

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches: ...


def loftr_matcher(checkpoint=None, *, coarse_threshold: float | None = None, device="cpu", **options) -> LoFTRMatcher:
    """LoFTRMatcher.from_checkpoint, its numbers and device checked first (ValueError naming the option)."""
    check_number("coarse_threshold", coarse_threshold, 0, 1, optional=True)  # a confidence
    return LoFTRMatcher.from_checkpoint(checkpoint, coarse_threshold=coarse_threshold, device=checked_device(device),
                                        **options)


MATCHERS = {"sift": SIFTMatcher, "asift": ASIFTMatcher, "loftr": loftr_matcher,
            "xfeat": partial(XFeatMatcher, "sparse"), "xfeat_star": partial(XFeatMatcher, "star"),
            "xfeat_lighterglue": partial(XFeatMatcher, "lighterglue"),
            "aliked_lightglue": partial(LightGlueMatcher, "aliked"),
            "disk_lightglue": partial(LightGlueMatcher, "disk")}


# matchers whose keypoints are a detector's, the same in every pair an image is in: SfM takes them as they are
DETECTOR_MATCHERS = ("sift", "xfeat", "xfeat_lighterglue", "aliked_lightglue", "disk_lightglue")


def default_quantization(name: str, affine: bool) -> str:
    """The sfm/keypoints.py preset that makes one keypoint set per image of matcher `name`'s matches: "none" for
    a detector's keypoints, hloc's "loftr" for semi-dense matchers and any matcher in the affine simulation
    (whose keypoints come back from a different view in every pair)."""
    return "none" if name in DETECTOR_MATCHERS and not affine else "loftr"


def build_matcher(name: str, **options) -> Matcher:
    """The matcher registered as `name` in MATCHERS, built with `options` (its constructor's arguments; for
    "loftr" those of LoFTRMatcher.from_checkpoint). ValueError listing the names for an unknown one."""
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; valid names: {', '.join(sorted(MATCHERS))}")
    return MATCHERS[name](**options)


def simulated(matcher: Matcher, affine: AffineSimulationConfig | None) -> Matcher:
    """`matcher` itself (`affine` None), or wrapped in the affine simulation of `affine`: a matcher of the same
    interface whose `name` ends with AFFINE_SUFFIX and whose `views` is the number of views it matches a pair with.
    `affine` checks its own options when it is made (AffineSimulationConfig)."""
    return matcher if affine is None else AffineSimulation(matcher, affine)
