"""The contract between benchmarks, matchers and the evaluation harness (one place for the shapes).

A benchmark yields `EvalPair`s: two original images and their ground truth, a relative pose (with
intrinsics) or a homography. A matcher turns two (H, W) uint8 images (`check_grayscale`) into `Matches`. The
harness resizes the images to the benchmark's resolution for every matcher alike, maps the matches back to the
original frames (undoing `warp1` for the stress tests) and scores them there.

It lives in data/ because the datasets that yield pairs (hpatches, pair_list) sit below evaluation/.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class EvalPair:
    """One test pair in original pixel frames; pixel (c, r) sits at (x, y) = (c, r).

    image0, image1: (H, W) uint8 grayscale, as shown to the matcher (image1 after `warp1`).
    K0, K1: (3, 3) intrinsics of the original frames; T_0to1: (4, 4) camera 0 -> camera 1 coordinates.
    H_0to1: (3, 3) homography, original image-0 pixels -> original image-1 pixels.
    warp1: (3, 3) map from original image-1 pixels to the pixels of the `image1` shown (a rotation or tilt
        of a stress test); None when image1 is the original.
    group: what the pair is reported under (scene, HPatches split, rotation bin, ...).
    """

    name: str
    image0: np.ndarray
    image1: np.ndarray
    K0: np.ndarray | None = None
    K1: np.ndarray | None = None
    T_0to1: np.ndarray | None = None
    H_0to1: np.ndarray | None = None
    warp1: np.ndarray | None = None
    group: str = ""

    def validate(self) -> None:
        """ValueError naming the pair when the ground truth is incomplete or malformed."""
        if (self.T_0to1 is None) == (self.H_0to1 is None):
            raise ValueError(f"pair {self.name}: give a relative pose (T_0to1 with K0, K1) or a homography H_0to1")
        if self.T_0to1 is not None and (self.K0 is None or self.K1 is None):
            raise ValueError(f"pair {self.name}: a relative pose needs the intrinsics K0 and K1")
        for key in ("K0", "K1", "T_0to1", "H_0to1", "warp1"):
            value = getattr(self, key)
            shape = (4, 4) if key == "T_0to1" else (3, 3)
            if value is not None and (np.shape(value) != shape or not np.isfinite(value).all()):
                raise ValueError(f"pair {self.name}: {key} must be a finite {shape} matrix, got {np.shape(value)}")
