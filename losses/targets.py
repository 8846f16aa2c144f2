"""The fine losses' targets: the ground truth (geometry/ground_truth.py) read at the model's own coarse matches,
in the units of the fine windows the model predicts in.

A fine window of `size` x `size` positions at `fine_stride` pixels is centred on a coarse cell's point: its
position k (per axis) lies (k - (size - 1) / 2) fine_stride pixels from it. LoFTR's windows (odd size) are
read centred on the cell's own fine pixel; its units put the window's edge at +-1 (the model's expectation
units), so a target with |offset| > 1 lies outside it. Efficient LoFTR's (`block`, even size, fine stride 1)
are the cell's own size x size block of the full-resolution map, whose pixels stand for points half a window
up and left of them (upstream's convention, which its weights were trained with): its targets are the index
of the true match's nearest pixel in image 1's window and the sub-pixel rest (`two_stage_targets`).
"""

from dataclasses import dataclass

import torch

from geometry.grid import cell_pixels, grid_size
from geometry.ground_truth import Supervision


@dataclass(frozen=True)
class FineWindow:
    """Where the fine stage looks: windows of `size` x `size` positions, `fine_stride` pixels apart, around
    cells of the grid at `coarse_stride` (LoFTR: 5 x 5 at stride 2 around 1/8 cells; Efficient LoFTR:
    `block` 8 x 8 at stride 1)."""

    coarse_stride: int = 8
    fine_stride: int = 2
    size: int = 5
    block: bool = False  # the cell's own block of the fine map (Efficient LoFTR), not a window centred on it

    @property
    def reach(self) -> int:
        """Pixels from the window's centre to its edge: one window unit."""
        return (self.size // 2) * self.fine_stride

    @property
    def first(self) -> int:
        """The fine-map index of the window's first position, from its cell's own fine index (per axis)."""
        return 0 if self.block else -(self.size // 2)

    @property
    def origin(self) -> float:
        """Pixels from a fine-map index times the stride to the point it stands for (`Supervision.fine_origin`):
        0 for centred windows; a block's pixels stand half a window up and left, so that it centres on its
        cell's point."""
        return -(self.size - 1) / 2 * self.fine_stride if self.block else 0.0

    def positions(self, device) -> torch.Tensor:
        """(size * size, 2) pixels (x, y) of the window's positions (row-major) from the cell's point."""
        axis = (torch.arange(self.size, device=device, dtype=torch.float64) - (self.size - 1) / 2) * self.fine_stride
        dy, dx = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([dx, dy], -1).reshape(-1, 2)

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
    (M, size * size, 2) in image 1's window units and known (M, size * size) bool (see `window_warps`)."""
    warped, known = window_warps(supervision, batch_index, index0, window)
    return window.offset(warped, supervision.grid1, index1), known


@torch.no_grad()
def window_warps(supervision: Supervision, batch_index: torch.Tensor, index0: torch.Tensor,
                 window: FineWindow = FineWindow()) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each position of image 0's fine window around cell i (row-major) lands in image 1: network pixels
    (M, size * size, 2) and whether that is known (M, size * size) bool.

    Dense ground truth with `warped0_fine`: each position's exact warp. Sparse labels: the centre's target
    carried by the fitted Jacobian (exact for an affine warp; a homography's second-order term over <= 4 px
    is hundredths of a pixel). Otherwise the centre's target only, the other positions unknown.
    """
    fine_stride, size = window.fine_stride, window.size
    dtype, step = supervision.warped0.dtype, window.coarse_stride // fine_stride
    axis = torch.arange(size, device=index0.device) + window.first
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    cols = (index0 % supervision.grid0[1] * step)[:, None] + dx.reshape(-1)  # (M, size * size) fine pixels
    rows = (index0 // supervision.grid0[1] * step)[:, None] + dy.reshape(-1)
    if supervision.warped0_fine is not None:
        if supervision.fine_stride != fine_stride or supervision.fine_origin != window.origin:
            raise ValueError(f"the supervision's fine grid has stride {supervision.fine_stride} and origin "
                             f"{supervision.fine_origin}, the model's {fine_stride} and {window.origin}")
        fine_h, fine_w = supervision.fine_grid
    elif supervision.image_size0 is not None:  # the model's fine map; the last cells' windows may reach past it
        fine_h, fine_w = grid_size(supervision.image_size0, fine_stride)
    else:
        fine_h, fine_w = supervision.grid0[0] * step, supervision.grid0[1] * step
    on_grid = (rows >= 0) & (rows < fine_h) & (cols >= 0) & (cols < fine_w)
    centre = supervision.warped0[batch_index, index0][:, None]  # (M, 1, 2)
    centre_known = supervision.warped0_valid[batch_index, index0][:, None]
    positions = window.positions(index0.device).to(dtype)  # (size * size, 2) pixels from the cell's point
    if supervision.warped0_fine is not None:
        flat = rows.clamp(0, fine_h - 1) * fine_w + cols.clamp(0, fine_w - 1)
        warped = supervision.warped0_fine[batch_index[:, None], flat]  # (M, size * size, 2)
        known = supervision.warped0_fine_valid[batch_index[:, None], flat] & on_grid
    elif supervision.jacobian0 is not None:
        jacobian = supervision.jacobian0[batch_index, index0]  # (M, 2, 2)
        warped = centre + torch.einsum("mij,qj->mqi", jacobian, positions)
        known = centre_known & on_grid
    else:  # known at the cell's point only: a window position that is on it (odd windows)
        warped = centre + positions
        known = centre_known & (positions == 0).all(-1)
    return warped, known


@dataclass
class TwoStageTargets:
    """Efficient LoFTR's fine targets for M coarse matches (b, i, j), per pixel of image 0's window (row-major,
    `FineWindow(block=True)`): the pixel of image 1's inner window nearest to its true match, and the rest."""

    index1: torch.Tensor  # (M, W*W) long: the stage-1 target pixel, row-major; -1 where unknown or outside
    residual: torch.Tensor  # (M, W*W, 2) the true match minus that pixel, in pixels ([-0.5, 0.5]): stage 2's
    overlap: torch.Tensor  # (M, W*W) (1 - 2|rx|)(1 - 2|ry|): how squarely the match falls on its pixel

    @property
    def known(self) -> torch.Tensor:
        return self.index1 >= 0


@torch.no_grad()
def two_stage_targets(supervision: Supervision, batch_index: torch.Tensor, index0: torch.Tensor,
                      index1: torch.Tensor, window: FineWindow) -> TwoStageTargets:
    """The targets of Efficient LoFTR's two fine stages at the coarse matches (b, i, j) (M,): each pixel of
    image 0's window around cell i lands in image 1 (`window_warps`); its stage-1 target is the nearest pixel
    of image 1's window around cell j, in the same layout, when the landing point rounds into it, and its
    stage-2 target the sub-pixel rest (upstream's spvs_fine, src/loftr/utils/supervision.py, as facts)."""
    if not window.block:
        raise ValueError("two_stage_targets reads block windows (Efficient LoFTR's FineWindow(block=True))")
    warped, known = window_warps(supervision, batch_index, index0, window)
    centre1 = cell_pixels(index1, supervision.grid1, window.coarse_stride, warped.dtype)[:, None]
    position = (warped - centre1) / window.fine_stride + (window.size - 1) / 2  # in image 1's window positions
    nearest = position.round()
    inside = known & ((nearest >= 0) & (nearest < window.size)).all(-1)
    flat = (nearest[..., 1] * window.size + nearest[..., 0]).long()
    residual = position - nearest
    return TwoStageTargets(torch.where(inside, flat, -1), residual, (1 - 2 * residual.abs()).prod(-1))


def subpixel_targets(fine_target: torch.Tensor, index1: torch.Tensor, grid1: tuple[int, int], anchor: torch.Tensor,
                     subpixel_window: int, window: FineWindow = FineWindow()) -> torch.Tensor:
    """The true match of the stride-1 stage (`SubpixelMatches`) in the window around its anchor pixel (M, 2),
    in that window's units, from `fine_target` (M, 2), the first stage's (`fine_targets`): the same point,
    measured from the centre of cell j in the first window's units. Known where the first stage's is."""
    true1 = cell_pixels(index1, grid1, window.coarse_stride, fine_target.dtype) + fine_target * window.reach
    return (true1 - anchor.to(true1.dtype)) / (subpixel_window // 2)
