"""The batch contract between the datasets, the model, the ground truth and evaluation: every key, its shape.

A batch is a dict with LoFTR's conventional keys (B pairs), what the datasets emit and the default collate
stacks. `check_batch` checks one where it enters the model and the ground truth (the LightningModule's
steps): a missing or misshapen key is a ValueError naming it.

Pixel coordinates are (x, y) with pixel (c, r) at (c, r); network-input pixels times `scale` are original
pixels, where the geometry runs (LoFTR's convention). The feature grids and the frame conversions are in
geometry/grid.py.
"""

from collections.abc import Mapping, Sequence
from typing import TypedDict

import torch


class Batch(TypedDict, total=False):
    """B pairs. Images: network inputs; geometry: the ORIGINAL image frames. Which geometry a pair carries
    selects its ground truth (geometry/ground_truth.py): correspondences, else a homography, else depth + pose."""

    image0: torch.Tensor  # (B, 1, H0, W0) float in [0, 1]: grayscale, resized and padded
    image1: torch.Tensor  # (B, 1, H1, W1)
    mask0: torch.Tensor  # (B, H0, W0) bool: True on the image, False on the bottom/right padding
    mask1: torch.Tensor  # (B, H1, W1)
    scale0: torch.Tensor  # (B, 2) float: (x, y) factors from network-input to original pixels
    scale1: torch.Tensor  # (B, 2)
    depth0: torch.Tensor  # (B, D0h, D0w) float: depth of the original frame (zero-padded), 0 or NaN unknown
    depth1: torch.Tensor  # (B, D1h, D1w)
    K0: torch.Tensor  # (B, 3, 3): intrinsics of the original frame
    K1: torch.Tensor  # (B, 3, 3); a tilted image 1 (data/tilt.py): A K1, its last row still (0, 0, 1)
    T_0to1: torch.Tensor  # (B, 4, 4): camera-0 coordinates -> camera-1 coordinates
    T_1to0: torch.Tensor  # (B, 4, 4): its inverse
    H_0to1: torch.Tensor  # (B, 3, 3): homography pairs, original pixels of image 0 -> image 1
    correspondences0: torch.Tensor  # (B, N, 2): labelled points, original pixels of image 0 (data/inhouse)
    correspondences1: torch.Tensor  # (B, N, 2): their partners in image 1
    correspondences_valid: torch.Tensor  # (B, N) bool: False on the padding to N
    shown0: torch.Tensor  # (B, H0, W0) bool: pixels that show the image (data/tilt.py's tilt views are black
    shown1: torch.Tensor  # (B, H1, W1)         around it); the ground truth labels nothing elsewhere
    pair_names: Sequence[Sequence[str]]  # (name0s, name1s), each B names (the collated pair of names)
    dataset_name: Sequence[str]  # B names
    scene_name: Sequence[str]  # B names


# The shape of every tensor key: ints are exact, strings name a size that must agree wherever it appears
# (per batch); "B" is the batch size.
SHAPES: dict[str, tuple[int | str, ...]] = {
    "image0": ("B", 1, "H0", "W0"), "image1": ("B", 1, "H1", "W1"),
    "mask0": ("B", "H0", "W0"), "mask1": ("B", "H1", "W1"),
    "scale0": ("B", 2), "scale1": ("B", 2),
    "depth0": ("B", "D0h", "D0w"), "depth1": ("B", "D1h", "D1w"),
    "K0": ("B", 3, 3), "K1": ("B", 3, 3), "T_0to1": ("B", 4, 4), "T_1to0": ("B", 4, 4), "H_0to1": ("B", 3, 3),
    "correspondences0": ("B", "N", 2), "correspondences1": ("B", "N", 2), "correspondences_valid": ("B", "N"),
    "shown0": ("B", "H0", "W0"), "shown1": ("B", "H1", "W1"),
}
NAME_KEYS = ("dataset_name", "scene_name")  # B strings each
# the geometry of each kind of ground truth, in the order geometry/ground_truth.py picks it
GROUND_TRUTH_KEYS = {
    "correspondences": ("correspondences0", "correspondences1", "correspondences_valid"),
    "homography": ("H_0to1",),
    "depth and pose": ("depth0", "depth1", "K0", "K1", "T_0to1"),
}


def check_batch(batch: Mapping, ground_truth: bool = True) -> None:
    """ValueError naming each missing or misshapen key of `batch` (see `Batch`); `ground_truth`: it must also
    carry the geometry of one kind of ground truth, complete."""
    problems = [f"{key} is missing" for key in ("image0", "image1") if key not in batch]
    sizes: dict[str, int] = {}
    for key, shape in SHAPES.items():
        if key not in batch:
            continue
        value = batch[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} must be a tensor {_shown(shape)}, got {type(value).__name__}")
        elif value.dim() != len(shape) or not all(_fits(size, dim, sizes) for size, dim in zip(value.shape, shape)):
            problems.append(f"{key} has shape {tuple(value.shape)}, expected {_shown(shape, sizes)}")
    problems += _name_problems(batch, sizes.get("B"))
    if ground_truth:
        kinds = {kind: [key for key in keys if key not in batch] for kind, keys in GROUND_TRUTH_KEYS.items()}
        started = {kind: missing for kind, missing in kinds.items() if len(missing) < len(GROUND_TRUTH_KEYS[kind])}
        if not any(not missing for missing in kinds.values()):
            if started:
                problems += [f"{kind} ground truth needs {', '.join(missing)}" for kind, missing in started.items()]
            else:
                problems.append("no ground truth: needs " + ", or ".join(
                    " + ".join(keys) for keys in GROUND_TRUTH_KEYS.values()))
    if problems:
        raise ValueError("batch: " + "; ".join(problems))


def _fits(size: int, dim: int | str, sizes: dict[str, int]) -> bool:
    """Whether `size` fits `dim`: equal to an int, or to the size a name took first (recorded in `sizes`)."""
    if isinstance(dim, int):
        return size == dim
    return sizes.setdefault(dim, size) == size


def _shown(shape: tuple[int | str, ...], sizes: dict[str, int] | None = None) -> str:
    sizes = sizes or {}
    return "(" + ", ".join(str(sizes.get(dim, dim)) if isinstance(dim, str) else str(dim) for dim in shape) + ")"


def _name_problems(batch: Mapping, size: int | None) -> list[str]:
    problems = []
    for key in NAME_KEYS:
        if key in batch and size is not None and len(batch[key]) != size:
            problems.append(f"{key} has {len(batch[key])} names for {size} pairs")
    names = batch.get("pair_names")
    if names is not None and (len(names) != 2 or (size is not None and any(len(side) != size for side in names))):
        problems.append(f"pair_names must be two lists of {size} names (image 0's, image 1's)")
    return problems
