"""Training augmentation against viewpoint tilt: image 1 of a pair replaced by an ASIFT tilt view of itself
(geometry/affine.py), its ground truth carried exactly through the tilt's affine map.

A tilt t along a direction is the image plane seen from latitude arccos(1 / t): the image compressed t-fold
along that direction about its centre, on its own canvas, black around it (along an oblique direction the
compression also pushes two corners outwards, across the canvas's edge: those are cut off). It is drawn after
the crop, the resize and any random swap (this wrapper is the outermost), so the network input keeps its size
and image 1 is always the tilted one, as at test time (evaluation/stress.py tilts image 1).

The warp A (3, 3) maps the network-input pixels of image 1 to those of its view, about the centre of the valid
(unpadded) rectangle; in the original frame, where the geometry runs (data/batch.py: original = network x
scale1), it is A_o = S A S^-1 with S = diag(scale1, 1), and the view's original frame is A_o of the old one:
- depth + pose: K1 <- A_o K1 (projection, then the affine: exact, since A_o's last row is (0, 0, 1)) and
  depth1 resampled into the new frame (bilinear where smooth, nearest across depth edges: geometry/warp.py's
  `interpolate_depth`), 0 where the view shows no image;
- homography: H_0to1 <- A_o H_0to1;
- correspondences: correspondences1 <- A_o correspondences1.
`mask1` stays the padding mask (the models require a top-left rectangle, models/inputs.py); the pixels of the
view that show the image are `shown1` (B, H1, W1), which the ground truth honours (geometry/ground_truth.py):
no label lands on the black border. Geometry keys keep their dtype (float32 items: the new K1 is rounded to
float32 as the old one was).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from geometry.affine import MAX_TILT, preimage, tilt_view
from geometry.warp import interpolate_depth
from utils.values import check_number

from .sampling import WrappedPairs

_STREAM = 7117  # the tilt's draws: another stream than the swap's (seed, epoch, index) and photometric sides


@dataclass
class TiltConfig:
    # the largest tilt t = 1 / cos(latitude): ASIFT simulates up to 4 sqrt 2 (Morel & Yu 2009); the stress test
    # (evaluation/stress.py) goes to 8 or 16
    max_tilt: float = 4 * math.sqrt(2)
    probability: float = 0.0  # of tilting a training pair's image 1; 0: off (the items are left as they are)

    def __post_init__(self):
        check_number("data.tilt.max_tilt", self.max_tilt, 1, MAX_TILT)
        check_number("data.tilt.probability", self.probability, 0, 1)


def draw_tilt(config: TiltConfig, seed: int, epoch: int, index: int) -> tuple[float, float] | None:
    """(tilt, direction in degrees) for pair `index` of `epoch`, or None (no tilt this time).

    Log-uniform in [1, max_tilt]: tilts compose multiplicatively (a view at t1 seen again at t2 is at up to
    t1 t2), and ASIFT and the stress curves sample them geometrically (1, sqrt 2, 2, 2 sqrt 2, ...), so each
    of those steps gets the same share of the draws; uniform in t would spend most draws on the largest tilts.
    The direction is uniform in [0, 180) (a tilt along d and along d + 180 is the same map)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, index, _STREAM]))
    if not rng.random() < config.probability:
        return None
    return float(np.exp(rng.uniform(0.0, np.log(config.max_tilt)))), float(rng.uniform(0.0, 180.0))


def tilt_item(item: dict, tilt: float, direction_deg: float) -> dict:
    """(the pair `item` with image 1 replaced by its tilt view, warp): `item` is one pair, unbatched
    (data/batch.py); its geometry is composed with the tilt (see the module docstring) and it gains `shown1`
    (H1, W1) bool; warp (3, 3) float64 maps network-input pixels of the old image 1 to those of the view."""
    image = item["image1"]  # (1, H, W)
    height, width = image.shape[1:]
    mask = item.get("mask1")
    rows, cols = (int(mask.any(1).sum()), int(mask.any(0).sum())) if mask is not None else (height, width)
    view, warp = tilt_view(image[0, :rows, :cols].numpy(), tilt, direction_deg, canvas=(rows, cols))
    tilted = dict(item)
    tilted["image1"] = torch.zeros_like(image)
    tilted["image1"][0, :rows, :cols] = torch.from_numpy(view)
    tilted["shown1"] = torch.zeros(height, width, dtype=torch.bool)
    tilted["shown1"][:rows, :cols] = shown_pixels(warp, (rows, cols), (rows, cols))
    scale = item["scale1"].double().numpy() if "scale1" in item else np.ones(2)
    S = np.diag([scale[0], scale[1], 1.0])
    A = torch.from_numpy(S @ warp @ np.linalg.inv(S))  # original pixels of image 1 -> those of its view
    if "K1" in item:
        tilted["K1"] = (A @ item["K1"].double()).to(item["K1"].dtype)
    if "depth1" in item:  # the view stays on the image's canvas: beyond it the depth map is left 0
        extent = (math.ceil(rows * scale[1]), math.ceil(cols * scale[0]))
        tilted["depth1"] = resampled_depth(item["depth1"], A, extent)
    if "H_0to1" in item:
        tilted["H_0to1"] = (A @ item["H_0to1"].double()).to(item["H_0to1"].dtype)
    if "correspondences1" in item:
        points = item["correspondences1"].double()
        tilted["correspondences1"] = (points @ A[:2, :2].T + A[:2, 2]).to(item["correspondences1"].dtype)
    return tilted, warp


def shown_pixels(warp: np.ndarray, size: tuple[int, int], canvas: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool on a `canvas` (H, W): the pixels whose preimage under `warp` (3, 3) lies on a pixel of an
    image of `size` (h, w), i.e. in [-0.5, w - 0.5) x [-0.5, h - 0.5) (geometry/warp.py's `inside_image`)."""
    source_x, source_y = preimage(warp, canvas)
    inside = (source_x >= -0.5) & (source_x < size[1] - 0.5) & (source_y >= -0.5) & (source_y < size[0] - 0.5)
    return torch.from_numpy(inside)


def resampled_depth(depth: torch.Tensor, A: torch.Tensor, extent: tuple[int, int]) -> torch.Tensor:
    """Depth (H, W) of a frame seen in the frame A (3, 3) maps it to, on the same (H, W) grid: the old depth
    at A^-1 q (`interpolate_depth`) for each pixel q of the top-left `extent` (h, w) whose A^-1 q lies in that
    extent, 0 elsewhere (off the image, on unknown depth). Only those pixels are read: a tilt t shows 1 / t of
    them."""
    height, width = min(extent[0], depth.shape[0]), min(extent[1], depth.shape[1])
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    inverse = torch.linalg.inv(A)
    points = torch.stack([xs, ys], -1).reshape(-1, 2) @ inverse[:2, :2].T + inverse[:2, 2]
    inside = ((points[:, 0] >= -0.5) & (points[:, 0] < width - 0.5) & (points[:, 1] >= -0.5)
              & (points[:, 1] < height - 0.5))
    values = torch.zeros(height * width, dtype=depth.dtype)
    values[inside] = interpolate_depth(depth[None], points[inside][None])[0].to(depth.dtype)
    resampled = torch.zeros_like(depth)
    resampled[:height, :width] = values.reshape(height, width)
    return resampled


class RandomTilt(WrappedPairs):
    """Training augmentation: image 1 of each pair of `dataset` tilted with probability `config.probability`
    (`draw_tilt`, from (seed, epoch, index): every worker agrees, each epoch differs).

    With a probability above 0 every item gets `shown1` (an untilted one: its mask), so that items batch
    together; with 0 the items are the dataset's own."""

    def __init__(self, dataset: Dataset, config: TiltConfig, seed: int = 0):
        super().__init__(dataset)
        self.config, self.seed, self.epoch = config, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        if self.config.probability == 0:
            return item
        drawn = draw_tilt(self.config, self.seed, self.epoch, index)
        if drawn is not None:
            return tilt_item(item, *drawn)[0]
        image = item["image1"]
        shown = item["mask1"].bool() if "mask1" in item else torch.ones(image.shape[1:], dtype=torch.bool)
        return {**item, "shown1": shown.clone()}
