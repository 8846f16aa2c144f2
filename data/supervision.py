"""SuperGlue-style ground truth for LoFTR, built per batch on the training device.

Coarse: the centre of every coarse cell of image 0 is warped into image 1 (depth + pose, or homography); the
pair (i, j) is a ground-truth match when the warp is valid (known depth, in front of the camera, depth-
consistent), lands on a real cell j of image 1, and the centre of j warps back onto cell i (mutual).
Fine: for each coarse match, where the warped centre of i lies in the fine window around cell j.
"""

from dataclasses import dataclass

import torch

from geometry.warp import inside_image, warp_depth, warp_homography

from .batch import cells_on_image, network_frame, original_frame, valid_extent


@dataclass
class Supervision:
    """Ground truth of a batch. Cells are indexed row-major on each image's coarse grid."""

    batch_index: torch.Tensor  # (K,) long: ground-truth matches (b, i, j)
    index0: torch.Tensor  # (K,)
    index1: torch.Tensor  # (K,)
    warped0: torch.Tensor  # (B, L, 2) image-0 cell centres warped into image 1, its network-input pixels
    warped0_valid: torch.Tensor  # (B, L) bool: where that warp is valid
    valid_cells0: torch.Tensor  # (B, L) bool: cells on the image, not on its padding
    valid_cells1: torch.Tensor  # (B, S) bool
    grid0: tuple[int, int]
    grid1: tuple[int, int]

    def labels(self) -> torch.Tensor:
        """The dense (B, L, S) bool label matrix, the size of the confidence matrix."""
        b = self.warped0.shape[0]
        dense = torch.zeros(b, self.grid0[0] * self.grid0[1], self.grid1[0] * self.grid1[1],
                            dtype=torch.bool, device=self.index0.device)
        dense[self.batch_index, self.index0, self.index1] = True
        return dense


def cell_centres(grid: tuple[int, int], stride: int, batch: int, device, dtype) -> torch.Tensor:
    """(B, h*w, 2) network-input pixels (stride c, stride r) of every cell, row-major."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device),
                                indexing="ij")
    centres = torch.stack([cols, rows], -1).reshape(1, -1, 2).to(dtype) * stride
    return centres.expand(batch, -1, -1)


def _valid_size(batch: dict, side: int) -> torch.Tensor:
    """(B, 2) valid (height, width) of image `side` in network-input pixels: the padding mask's rectangle."""
    image, mask = batch[f"image{side}"], batch.get(f"mask{side}")
    return valid_extent(None if mask is None else mask.bool(), tuple(image.shape[2:]), image.shape[0], image.device)


def _warp(batch: dict, points: torch.Tensor, source: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp network-input pixels (B, N, 2) of image `source` into the other image: (valid, network pixels)."""
    target = 1 - source
    points = original_frame(points, batch, source)
    if "H_0to1" in batch:
        H = batch["H_0to1"].to(points.dtype)
        warped = warp_homography(points, H if source == 0 else torch.linalg.inv(H))
        valid = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
    else:
        T = batch["T_0to1"] if source == 0 else batch.get("T_1to0", None)
        if T is None:
            T = torch.linalg.inv(batch["T_0to1"])
        valid, warped = warp_depth(
            points, batch[f"depth{source}"].to(points.dtype), batch[f"depth{target}"].to(points.dtype),
            batch[f"K{source}"].to(points.dtype), batch[f"K{target}"].to(points.dtype), T.to(points.dtype),
        )
    return valid, network_frame(warped, batch, target)


def _nearest_cell(points: torch.Tensor, grid: tuple[int, int], stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the cell whose centre is nearest to network pixels (B, N, 2), and whether it is on the grid."""
    cells = (points / stride).round()
    on_grid = (cells[..., 0] >= 0) & (cells[..., 0] < grid[1]) & (cells[..., 1] >= 0) & (cells[..., 1] < grid[0])
    cells = cells.long()
    index = cells[..., 1].clamp(0, grid[0] - 1) * grid[1] + cells[..., 0].clamp(0, grid[1] - 1)
    return index, on_grid


@torch.no_grad()
def coarse_supervision(batch: dict, grid0: tuple[int, int], grid1: tuple[int, int], stride: int = 8) -> Supervision:
    """Ground-truth coarse matches of a batch (see the module docstring); all points at once, no loops."""
    image0 = batch["image0"]
    b, device = image0.shape[0], image0.device
    dtype = torch.float64 if image0.dtype == torch.float64 else torch.float32
    size0, size1 = _valid_size(batch, 0), _valid_size(batch, 1)
    cells0 = cells_on_image(size0, grid0, stride)
    cells1 = cells_on_image(size1, grid1, stride)
    valid01, warped0 = _warp(batch, cell_centres(grid0, stride, b, device, dtype), source=0)
    valid10, warped1 = _warp(batch, cell_centres(grid1, stride, b, device, dtype), source=1)
    valid01 &= cells0 & inside_image(warped0, size1)
    nearest1, on_grid1 = _nearest_cell(warped0, grid1, stride)
    nearest0, on_grid0 = _nearest_cell(warped1, grid0, stride)
    valid10 &= cells1 & inside_image(warped1, size0) & on_grid0  # the same tests both ways: swapping the
    # images of a pair transposes its ground truth

    back = torch.gather(nearest0, 1, nearest1)  # where the chosen cell of image 1 warps back to
    cells = torch.arange(grid0[0] * grid0[1], device=device)[None]
    mutual = (
        valid01 & on_grid1 & torch.gather(cells1, 1, nearest1) & torch.gather(valid10, 1, nearest1) & (back == cells)
    )
    batch_index, index0 = torch.nonzero(mutual, as_tuple=True)
    return Supervision(batch_index, index0, nearest1[batch_index, index0], warped0, valid01, cells0, cells1, grid0, grid1)


@torch.no_grad()
def fine_supervision(
    supervision: Supervision,
    batch_index: torch.Tensor,
    index0: torch.Tensor,
    index1: torch.Tensor,
    stride: int = 8,
    fine_stride: int = 2,
    window: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For coarse matches (b, i, j) (the model's training samples): the position of the true match of cell i
    in the fine window around cell j, normalized so that the window spans [-1, 1] (the model's expectation
    units), and whether it is known (M,) bool. Matches outside the window have |offset| > 1."""
    width1 = supervision.grid1[1]
    centre1 = torch.stack([index1 % width1, index1 // width1], -1).to(supervision.warped0.dtype) * stride
    warped = supervision.warped0[batch_index, index0]
    offset = (warped - centre1) / ((window // 2) * fine_stride)
    return offset, supervision.warped0_valid[batch_index, index0]
