"""Affine simulation around any matcher (IMAS: Rodriguez, Delon & Morel, "Fast affine invariant image
matching", IPOL 2018): simulated tilts of image 0, each matched against image 1, the matches taken back to
image 0 through each view's exact inverse, merged and filtered by one geometric model.

INTERFACE (fixed; the implementation is being written):
    AffineSimulationConfig: the options (evaluate.py's `affine=simulated`, match.py's --affine-simulation,
        load_matcher(affine=...)); a wrong value is a ValueError whose message starts with the field's name.
    AffineSimulation(inner, config): a matcher (`name`, `match(image0, image1) -> Matches`, uint8 (H, W)
        images as given, keypoints in their pixels) wrapping `inner`, any matcher of that interface;
        `views` is the number of views it matches a pair with.
"""

from dataclasses import dataclass
from typing import Any


@dataclass
class AffineSimulationConfig:
    """Typed loosely (Any) because evaluate.py's schema holds this class: the check here says what is wanted."""

    max_tilt: Any = 8.0  # transition tilts covered, 1 to max_tilt (ASIFT's stress range, t = 1 / cos 82.8 deg)
    tolerance: Any = 1.5  # the transition tilt the inner matcher handles itself (provisional: measured by stress=tilt)
    tilts: Any = None  # explicit view tilts (>= 1) instead of the covering of max_tilt at `tolerance`
    longitudes: Any = None  # with `tilts`: how many equally spaced directions in [0, 180) each tilt has
    max_views: Any = 64  # refuse a covering with more views
    merge_radius: Any = 2.0  # image-0 pixels: of matches closer than this, the most confident is kept
    filter: Any = "fundamental"  # fundamental | homography | none: RANSAC over the merged matches
    filter_threshold: Any = 3.0  # pixels: RANSAC's inlier threshold of the filter
    both_images: Any = False  # also simulate image 1's views against image 0
    batch_size: Any = 8  # views per forward where the inner matcher matches batches
