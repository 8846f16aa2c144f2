"""The batch contract between datasets, the model, supervision and evaluation (one place for the shapes).

A batch is a dict with LoFTR's conventional keys, B pairs:

    image0, image1   (B, 1, H, W) float in [0, 1]: grayscale network inputs, resized and padded
    mask0, mask1     (B, H, W) bool, optional: True on the image, False on the bottom/right padding
    scale0, scale1   (B, 2) float, optional: (x, y) factors from network-input pixels to original pixels
    depth0, depth1   (B, H', W') float: depth in the ORIGINAL image frame, 0 (or NaN) where unknown
    K0, K1           (B, 3, 3): intrinsics of the original image frame
    T_0to1, T_1to0   (B, 4, 4): relative poses, camera 0 coordinates -> camera 1 coordinates and back
    H_0to1           (B, 3, 3): for image-only pairs instead of depth/pose, in original pixel frames
    pair_names       list of (name0, name1); dataset_name: list of str

Pixel coordinates are (x, y) with pixel (c, r) at (c, r); coarse cell (c, r) sits on network-input pixel
(8c, 8r). Geometry runs in the original frames: network-input pixels times `scale` (LoFTR's convention).
The grid at stride s of an (H, W) input is `grid_size((H, W), s)` = ceil(H / s) x ceil(W / s), the backbone's.
"""

import torch


def original_frame(points: torch.Tensor, batch: dict, side: int) -> torch.Tensor:
    """Network-input pixels (B, N, 2) of image `side` -> pixels of its original frame."""
    scale = batch.get(f"scale{side}")
    return points if scale is None else points * scale[:, None, :].to(points.dtype)


def network_frame(points: torch.Tensor, batch: dict, side: int) -> torch.Tensor:
    """Pixels (B, N, 2) of the original frame of image `side` -> its network-input pixels."""
    scale = batch.get(f"scale{side}")
    return points if scale is None else points / scale[:, None, :].to(points.dtype)


def grid_size(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """(rows, columns) of the feature grid at `stride` of an image of (height, width) network-input pixels:
    ceil(side / stride), what the backbone's padded stride-2 convolutions give, so any side works. Cell (c, r)
    sits on pixel (stride c, stride r); the last row/column of cells may sit near the image's far edge."""
    return tuple(-(-int(side) // stride) for side in image_hw)


def cells_on_image(size: torch.Tensor, grid: tuple[int, int], stride: int) -> torch.Tensor:
    """(B, h*w) bool, row-major: coarse cells whose pixel (stride c, stride r) lies on the image of valid
    size (B, 2) = (height, width), not on its padding."""
    rows = torch.arange(grid[0], device=size.device)[None, :, None] * stride < size[:, 0, None, None]
    cols = torch.arange(grid[1], device=size.device)[None, None, :] * stride < size[:, 1, None, None]
    return (rows & cols).flatten(1)


def valid_extent(mask: torch.Tensor | None, grid: tuple[int, int], batch: int, device) -> torch.Tensor:
    """(B, 2) long: the valid (rows, columns) of each sample, from a mask that is True on a top-left rectangle,
    given as (B, h, w) or flattened (B, h*w) over a `grid` = (h, w); the whole grid without a mask."""
    if mask is None:
        return torch.tensor([grid], device=device).expand(batch, 2)
    mask = mask.view(-1, *grid)
    return torch.stack([mask.any(2).sum(1), mask.any(1).sum(1)], 1)
