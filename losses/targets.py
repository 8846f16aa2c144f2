"""The fine losses' targets: the ground truth (geometry/ground_truth.py) read at the model's own coarse matches,
in the units of the fine windows the model predicts in.

A fine window of `size` x `size` positions at `fine_stride` pixels is centred on a coarse cell; its units put
the window's edge at +-1 (the model's expectation units), so a target with |offset| > 1 lies outside it.
"""

from dataclasses import dataclass

import torch

from geometry.grid import cell_pixels, grid_size
from geometry.ground_truth import Supervision


@dataclass(frozen=True)
class FineWindow:
    """Where the fine stage looks: windows of `size` x `size` positions, `fine_stride` pixels apart, around
    cells of the grid at `coarse_stride` (LoFTR: 5 x 5 at stride 2 around 1/8 cells)."""

    coarse_stride: int = 8
    fine_stride: int = 2
    size: int = 5

    @property
    def reach(self) -> int:
        """Pixels from the window's centre to its edge: one window unit."""
        return (self.size // 2) * self.fine_stride

    def offset(self, warped: torch.Tensor, grid1: tuple[int, int], index1: torch.Tensor) -> torch.Tensor:
        """Network pixels `warped` (M, ..., 2) of image 1 relative to the centre of cell `index1` (M,) of
        `grid1`, in window units."""
        centre1 = cell_pixels(index1, grid1, self.coarse_stride, warped.dtype)
        return (warped - centre1.reshape((len(index1),) + (1,) * (warped.dim() - 2) + (2,))) / self.reach


@torch.no_grad()
def fine_targets(supervision: Supervision, batch_index: torch.Tensor, index0: torch.Tensor, index1: torch.Tensor,
                 window: FineWindow = FineWindow(), query: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """For coarse matches (b, i, j) (M,) (the model's training samples): the position of the true match of
    cell i in the fine window around cell j, in window units (M, 2), and whether it is known (M,) bool.

    `query` (M,) long: the true match of that position of image 0's window (row-major) instead of the centre
    (`FineMatches.query`); see `window_targets` for where it is known."""
    centre = window.size * window.size // 2
    if query is not None and bool((query != centre).any()):
        offset, known = window_targets(supervision, batch_index, index0, index1, window)
        rows = torch.arange(len(query), device=query.device)
        return offset[rows, query], known[rows, query]
    known = supervision.warped0_valid[batch_index, index0]
    if query is not None:  # every query is the centre: its target, without the rest of the window
        known = known & (query == centre)
    return window.offset(supervision.warped0[batch_index, index0], supervision.grid1, index1), known


@torch.no_grad()
def window_targets(supervision: Supervision, batch_index: torch.Tensor, index0: torch.Tensor, index1: torch.Tensor,
                   window: FineWindow = FineWindow()) -> tuple[torch.Tensor, torch.Tensor]:
    """`fine_targets` for every position of image 0's fine window around cell i (row-major): offsets
    (M, size * size, 2) in image 1's window units and known (M, size * size) bool.

    Dense ground truth with `warped0_fine`: each position's exact warp. Sparse labels: the centre's target
    carried by the fitted Jacobian (exact for an affine warp; a homography's second-order term over <= 4 px
    is hundredths of a pixel). Otherwise the centre's target only, the other positions unknown.
    """
    fine_stride, size = window.fine_stride, window.size
    dtype, step, radius = supervision.warped0.dtype, window.coarse_stride // fine_stride, size // 2
    axis = torch.arange(size, device=index0.device) - radius
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    shift = torch.stack([dx, dy], -1).reshape(-1, 2)  # (size * size, 2) fine pixels (x, y) from the centre
    cols = (index0 % supervision.grid0[1] * step)[:, None] + shift[:, 0]  # (M, size * size) fine pixels
    rows = (index0 // supervision.grid0[1] * step)[:, None] + shift[:, 1]
    if supervision.warped0_fine is not None:
        if supervision.fine_stride != fine_stride:
            raise ValueError(f"the supervision's fine grid has stride {supervision.fine_stride}, "
                             f"the model's {fine_stride}")
        fine_h, fine_w = supervision.fine_grid
    elif supervision.image_size0 is not None:  # the model's fine map; the last cells' windows may reach past it
        fine_h, fine_w = grid_size(supervision.image_size0, fine_stride)
    else:
        fine_h, fine_w = supervision.grid0[0] * step, supervision.grid0[1] * step
    on_grid = (rows >= 0) & (rows < fine_h) & (cols >= 0) & (cols < fine_w)
    centre = supervision.warped0[batch_index, index0][:, None]  # (M, 1, 2)
    centre_known = supervision.warped0_valid[batch_index, index0][:, None]
    if supervision.warped0_fine is not None:
        flat = rows.clamp(0, fine_h - 1) * fine_w + cols.clamp(0, fine_w - 1)
        warped = supervision.warped0_fine[batch_index[:, None], flat]  # (M, size * size, 2)
        known = supervision.warped0_fine_valid[batch_index[:, None], flat] & on_grid
    elif supervision.jacobian0 is not None:
        jacobian = supervision.jacobian0[batch_index, index0]  # (M, 2, 2)
        warped = centre + torch.einsum("mij,qj->mqi", jacobian, shift.to(dtype) * fine_stride)
        known = centre_known & on_grid
    else:  # known at the centre only
        warped = centre + shift.to(dtype) * fine_stride
        known = centre_known & (shift == 0).all(-1)
    return window.offset(warped, supervision.grid1, index1), known


def subpixel_targets(fine_target: torch.Tensor, index1: torch.Tensor, grid1: tuple[int, int], anchor: torch.Tensor,
                     subpixel_window: int, window: FineWindow = FineWindow()) -> torch.Tensor:
    """The true match of the stride-1 stage (`SubpixelMatches`) in the window around its anchor pixel (M, 2),
    in that window's units, from `fine_target` (M, 2), the first stage's (`fine_targets`): the same point,
    measured from the centre of cell j in the first window's units. Known where the first stage's is."""
    true1 = cell_pixels(index1, grid1, window.coarse_stride, fine_target.dtype) + fine_target * window.reach
    return (true1 - anchor.to(true1.dtype)) / (subpixel_window // 2)
