"""Feature grids of an image and the frames its pixels are given in.

Pixel coordinates are (x, y) with pixel (c, r) at (c, r); the cell (c, r) of the grid at stride s sits on
network-input pixel (s c, s r) (LoFTR's convention: coarse cell (c, r) on pixel (8c, 8r)). Cells are indexed
row-major: index = r * columns + c. The grid at stride s of an (H, W) input is `grid_size((H, W), s)` =
ceil(H / s) x ceil(W / s), the backbone's.

Two frames: network-input pixels (the resized, padded tensor) and original pixels (the image file), related by
each image's `scale` (B, 2) = (x, y) factors from network-input to original pixels. Geometry runs in the
original frames (LoFTR's convention).
"""

import torch


def grid_size(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """(rows, columns) of the feature grid at `stride` of an image of (height, width) network-input pixels:
    ceil(side / stride), what the backbone's padded stride-2 convolutions give, so any side works. Cell (c, r)
    sits on pixel (stride c, stride r); the last row/column of cells may sit near the image's far edge."""
    return tuple(-(-int(side) // stride) for side in image_hw)


def cell_pixels(index: torch.Tensor, grid: tuple[int, int], stride: int, dtype: torch.dtype) -> torch.Tensor:
    """(..., 2) pixels (x, y) of the cells `index` (...) long, row-major on `grid` = (rows, columns)."""
    row = index // grid[1]
    # index - row * columns, not index % columns: the ONNX exporter cannot take % by a size known only at run time
    return torch.stack([index - row * grid[1], row], -1).to(dtype) * stride


def cell_centres(grid: tuple[int, int], stride: int, batch: int, device, dtype) -> torch.Tensor:
    """(B, rows * columns, 2) pixels (x, y) of every cell of `grid`, row-major."""
    index = torch.arange(grid[0] * grid[1], device=device)
    return cell_pixels(index, grid, stride, dtype)[None].expand(batch, -1, -1)


def nearest_cell(points: torch.Tensor, grid: tuple[int, int], stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (B, N) long of the cell whose pixel is nearest to `points` (B, N, 2), clamped onto the grid, and
    whether that cell really is on the grid (B, N) bool."""
    cells = (points / stride).round()
    on_grid = (cells[..., 0] >= 0) & (cells[..., 0] < grid[1]) & (cells[..., 1] >= 0) & (cells[..., 1] < grid[0])
    cells = cells.long()
    index = cells[..., 1].clamp(0, grid[0] - 1) * grid[1] + cells[..., 0].clamp(0, grid[1] - 1)
    return index, on_grid


def cells_on_image(size: torch.Tensor, grid: tuple[int, int], stride: int) -> torch.Tensor:
    """(B, rows * columns) bool, row-major: cells whose pixel (stride c, stride r) lies on the image of valid
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


def to_original(points: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Network-input pixels (B, N, 2) -> original pixels, by `scale` (B, 2); unchanged without one."""
    return points if scale is None else points * scale[:, None, :].to(points.dtype)


def to_network(points: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Original pixels (B, N, 2) -> network-input pixels, by `scale` (B, 2); unchanged without one."""
    return points if scale is None else points / scale[:, None, :].to(points.dtype)
