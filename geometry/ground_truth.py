"""SuperGlue-style ground truth labels for LoFTR, built per batch (after collation, on the training device)
from the batch's geometry (data/batch.py): which coarse cells match, and where points of image 0 land in image 1.

Coarse: the centre of every coarse cell of image 0 is warped into image 1 (depth + pose, or homography); the
pair (i, j) is a ground-truth match when the warp is valid (known depth, in front of the camera, depth-
consistent), lands on a real cell j of image 1, and the centre of j warps back onto cell i (mutual).
Where points land: the warped centre of every cell of image 0 (`Supervision.warped0`), and on request every
pixel of image 0's fine grid. The fine losses' targets, in their window units, are built from these in
losses/targets.py.
Sparse (`sparse_supervision`): the same from known correspondences (SfM tracks, labelled points) instead of
a dense warp; the coarse loss may then take as negatives only the rows and columns of labelled cells.
A batch may say which pixels of an image show it (`shown0`, `shown1`: a simulated tilt's view, black around
it, data/tilt.py): a point that lands, or a cell that sits, on a pixel that shows nothing is not labelled.
"""

from dataclasses import dataclass

import torch

from .grid import (
    cell_centres,
    cell_pixels,
    cells_on_image,
    grid_size,
    nearest_cell,
    to_network,
    to_original,
    valid_extent,
)
from .warp import inside_image, sample_depth, warp_depth, warp_homography


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
    # Sparse labels: the cells whose row (image 0) or column (image 1) of the confidence matrix the labels
    # fully determine; only there may the coarse loss score negatives. None: everywhere (dense ground truth)
    negative_rows0: torch.Tensor | None = None  # (B, L) bool
    negative_columns1: torch.Tensor | None = None  # (B, S) bool
    # Fine targets away from the cell centres (FineConfig.query_radius, the window cross-entropy, Efficient
    # LoFTR's pixel windows). Dense: the point of every pixel (c, r) of image 0's fine grid (stride
    # `fine_stride`), (fine_stride c, fine_stride r) + fine_origin, warped into image 1; None when not asked for.
    warped0_fine: torch.Tensor | None = None  # (B, Hf * Wf, 2) network pixels of image 1
    warped0_fine_valid: torch.Tensor | None = None  # (B, Hf * Wf) bool
    fine_grid: tuple[int, int] | None = None  # (Hf, Wf) = grid_size(image0 (H, W), fine_stride)
    fine_stride: int | None = None
    fine_origin: float = 0.0  # pixels (x and y) from a fine cell's index times the stride to its point
    image_size0: tuple[int, int] | None = None  # (H, W) network-input pixels of image 0's tensor
    # Sparse: the warp's Jacobian at each labelled cell (fitted to the labels), which carries `warped0` to the
    # points near the centre; identity where `warped0_valid` is False
    jacobian0: torch.Tensor | None = None  # (B, L, 2, 2)

    @property
    def has_window_targets(self) -> bool:
        """Whether fine targets exist away from the cell centres (else only at the centres)."""
        return self.warped0_fine is not None or self.jacobian0 is not None

    def negatives(self) -> torch.Tensor | None:
        """(B, L, S) bool: entries the coarse loss may score as negatives; None: all valid entries."""
        if self.negative_rows0 is None:
            return None
        return self.negative_rows0[:, :, None] | self.negative_columns1[:, None, :]

    def labels(self) -> torch.Tensor:
        """The dense (B, L, S) bool label matrix, the size of the confidence matrix."""
        b = self.warped0.shape[0]
        dense = torch.zeros(b, self.grid0[0] * self.grid0[1], self.grid1[0] * self.grid1[1],
                            dtype=torch.bool, device=self.index0.device)
        dense[self.batch_index, self.index0, self.index1] = True
        return dense


def _valid_size(batch: dict, side: int) -> torch.Tensor:
    """(B, 2) valid (height, width) of image `side` in network-input pixels: the padding mask's rectangle."""
    image, mask = batch[f"image{side}"], batch.get(f"mask{side}")
    return valid_extent(None if mask is None else mask.bool(), tuple(image.shape[2:]), image.shape[0], image.device)


def _shown(batch: dict, points: torch.Tensor, side: int) -> torch.Tensor:
    """(B, N) bool: whether network-input pixels (B, N, 2) of image `side` show the image, read at the nearest
    pixel of `shown{side}` (B, H, W) bool, the view of a simulated tilt (data/tilt.py); all True without one."""
    shown = batch.get(f"shown{side}")
    if shown is None:
        return torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
    return sample_depth(shown.to(points.dtype), points) > 0  # nearest pixel, False off the map


def _warp(batch: dict, points: torch.Tensor, source: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp network-input pixels (B, N, 2) of image `source` into the other image: (valid, network pixels)."""
    target = 1 - source
    points = to_original(points, batch.get(f"scale{source}"))
    if "H_0to1" in batch:
        H = batch["H_0to1"].to(points.dtype)
        warped = warp_homography(points, H if source == 0 else torch.linalg.inv(H))
        valid = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
    else:
        T = batch["T_0to1"] if source == 0 else batch.get("T_1to0")
        if T is None:
            T = torch.linalg.inv(batch["T_0to1"])
        valid, warped = warp_depth(
            points, batch[f"depth{source}"].to(points.dtype), batch[f"depth{target}"].to(points.dtype),
            batch[f"K{source}"].to(points.dtype), batch[f"K{target}"].to(points.dtype), T.to(points.dtype),
        )
    return valid, to_network(warped, batch.get(f"scale{target}"))


@torch.no_grad()
def coarse_supervision(batch: dict, grid0: tuple[int, int], grid1: tuple[int, int], stride: int = 8,
                       fine_stride: int | None = None, fine_origin: float = 0.0) -> Supervision:
    """Ground-truth coarse matches of a batch (see the module docstring); all points at once, no loops.
    `fine_stride`: also warp the point of every pixel of image 0's fine grid, `fine_origin` pixels from the
    pixel's index times the stride (`Supervision.warped0_fine`)."""
    image0 = batch["image0"]
    b, device = image0.shape[0], image0.device
    dtype = torch.float64 if image0.dtype == torch.float64 else torch.float32
    size0, size1 = _valid_size(batch, 0), _valid_size(batch, 1)
    cells0 = cells_on_image(size0, grid0, stride)
    cells1 = cells_on_image(size1, grid1, stride)
    centres0, centres1 = cell_centres(grid0, stride, b, device, dtype), cell_centres(grid1, stride, b, device, dtype)
    valid01, warped0 = _warp(batch, centres0, source=0)
    valid10, warped1 = _warp(batch, centres1, source=1)
    valid01 &= cells0 & inside_image(warped0, size1) & _shown(batch, centres0, 0) & _shown(batch, warped0, 1)
    nearest1, on_grid1 = nearest_cell(warped0, grid1, stride)
    nearest0, on_grid0 = nearest_cell(warped1, grid0, stride)
    valid10 &= (cells1 & inside_image(warped1, size0) & on_grid0 & _shown(batch, centres1, 1)
                & _shown(batch, warped1, 0))  # the same tests both ways: swapping the images of a pair
    # transposes its ground truth

    back = torch.gather(nearest0, 1, nearest1)  # where the chosen cell of image 1 warps back to
    cells = torch.arange(grid0[0] * grid0[1], device=device)[None]
    mutual = (
        valid01 & on_grid1 & torch.gather(cells1, 1, nearest1) & torch.gather(valid10, 1, nearest1) & (back == cells)
    )
    batch_index, index0 = torch.nonzero(mutual, as_tuple=True)
    supervision = Supervision(batch_index, index0, nearest1[batch_index, index0], warped0, valid01, cells0, cells1,
                              grid0, grid1, image_size0=tuple(image0.shape[2:]))
    if fine_stride is not None:
        fine_grid = grid_size(image0.shape[2:], fine_stride)
        points = cell_centres(fine_grid, fine_stride, b, device, dtype) + fine_origin
        valid, warped = _warp(batch, points, source=0)
        supervision.warped0_fine, supervision.fine_grid, supervision.fine_stride = warped, fine_grid, fine_stride
        supervision.fine_origin = fine_origin
        supervision.warped0_fine_valid = (valid & inside_image(points, size0) & inside_image(warped, size1)
                                          & _shown(batch, points, 0) & _shown(batch, warped, 1))
    return supervision


# ------------------------------------------------------------------------------ sparse correspondences


def _local_affine(points0: torch.Tensor, points1: torch.Tensor, valid: torch.Tensor, radius: float,
                  tolerance: float, neighbours: int = 8, min_spread: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The Jacobian of the unknown warp 0 -> 1 at each correspondence, fitted by least squares to its nearest
    `neighbours` labels within `radius` (image-0 pixels): d1 ~ A d0 for the offsets d0, d1 from it.

    points0, points1: (B, N, 2); valid: (B, N) bool. Returns A (B, N, 2, 2) and whether the fit is trusted
    (B, N): at least 3 neighbours spread by `min_spread` px in every direction, and a root-mean-square
    residual within `tolerance` px (image 1), which rejects fits across occlusion edges and wrong labels.
    """
    distance = torch.cdist(points0, points0)
    eye = torch.eye(points0.shape[1], dtype=torch.bool, device=points0.device)
    distance = distance.masked_fill(~(valid[:, :, None] & valid[:, None, :]) | eye, float("inf"))
    k = min(neighbours, max(points0.shape[1] - 1, 1))
    nearest, index = distance.topk(k, dim=-1, largest=False)  # (B, N, k)
    near = nearest < radius
    def gather(p):
        return torch.gather(p[:, None].expand(-1, p.shape[1], -1, -1), 2,
                                        index[..., None].expand(-1, -1, -1, 2))
    d0, d1 = gather(points0) - points0[:, :, None], gather(points1) - points1[:, :, None]  # (B, N, k, 2)
    w = near.to(points0.dtype)[..., None]
    count = near.sum(-1)
    M = torch.einsum("bkni,bknj->bkij", d0 * w, d0)  # (B, N, 2, 2)
    Y = torch.einsum("bkni,bknj->bkij", d1 * w, d0)
    spread = torch.linalg.eigvalsh(M)[..., 0] / count.clamp(min=1)  # variance along the weakest direction
    solvable = (count >= 3) & (spread > min_spread**2)
    identity = torch.eye(2, dtype=M.dtype, device=M.device)
    A = Y @ torch.linalg.inv(torch.where(solvable[..., None, None], M, identity))
    residual = (d1 - torch.einsum("bkij,bknj->bkni", A, d0)).square().sum(-1).masked_fill(~near, 0)
    rms = (residual.sum(-1) / count.clamp(min=1)).sqrt()
    invertible = torch.linalg.det(A).abs() > 1e-3  # the back-warp inverts it (degenerate labels otherwise)
    return A, solvable & invertible & (rms <= tolerance)


def _first_per_key(key: torch.Tensor, distance: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: for each key (B, N) long, the candidate with the smallest distance (ties: lower index)."""
    flat_key, flat_candidate = key.flatten(), candidate.flatten()
    order = torch.argsort(distance.flatten().masked_fill(~flat_candidate, float("inf")), stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    best = torch.full((int(flat_key.max()) + 1 if len(flat_key) else 1,), len(order), device=key.device)
    best = best.scatter_reduce(0, flat_key, rank, reduce="amin")
    return (flat_candidate & (rank == best[flat_key])).view_as(candidate)


@torch.no_grad()
def sparse_supervision(batch: dict, grid0: tuple[int, int], grid1: tuple[int, int], stride: int = 8,
                       fit_radius: float = 96.0, fit_tolerance: float = 1.0, unfitted_radius: float = 1.0
                       ) -> Supervision:
    """Ground truth from known correspondences instead of depth: `correspondences0`, `correspondences1`
    (B, N, 2) in original pixels and `correspondences_valid` (B, N) bool (data/batch.py).

    Coarse: a correspondence whose image-0 point is nearest to the centre of cell i labels (i, j), j the cell
    its partner (below) is nearest to, and whose centre maps back into i (mutual, as in `coarse_supervision`);
    one label per cell both ways: per cell of image 0 the correspondence nearest its centre, then among those
    per cell of image 1 the one whose warped centre is nearest its centre.

    Fine: the target is where the CENTRE of cell i lands in image 1, as for dense ground truth (the fine
    module looks from the centre of i). A label at p0 != centre says where p0 lands, p1. We take the first-
    order expansion p1 + A (centre - p0), A the warp's Jacobian fitted to the nearest labels within
    `fit_radius` network pixels (`_local_affine`): exact for affine warps, off by the warp's second-order term
    over |centre - p0| <= stride / sqrt(2) otherwise (hundredths of a pixel for a homography, test). Shifting
    by the plain offset (A = I) would be off by |A - I| x 5.7 px, over a pixel at a 20-degree rotation;
    dropping points away from the centre would keep ~5% of the labels. Where no trusted fit exists (too few
    neighbours, or ones that disagree) the cell is labelled only when p0 lies within `unfitted_radius` px of
    its centre, by the plain shift (A = I), without a fine target (`warped0_valid` False). On SfM tracks of
    rendered photos the plain shift put a third of the unfitted labels (from anywhere in the cell) a cell off.

    Negatives: the labels are one-to-one, so the other entries of a labelled row (i, .) and column (., j) are
    certainly wrong; elsewhere a true match may simply be unlabelled, and the coarse loss leaves it alone.
    """
    image0 = batch["image0"]
    b, device = image0.shape[0], image0.device
    dtype = torch.float64 if image0.dtype == torch.float64 else torch.float32
    valid = batch["correspondences_valid"].bool()
    points0 = to_network(batch["correspondences0"].to(dtype), batch.get("scale0"))
    points1 = to_network(batch["correspondences1"].to(dtype), batch.get("scale1"))
    size0, size1 = _valid_size(batch, 0), _valid_size(batch, 1)
    cells0, cells1 = cells_on_image(size0, grid0, stride), cells_on_image(size1, grid1, stride)
    index0, on_grid0 = nearest_cell(points0, grid0, stride)
    centre0 = cell_pixels(index0, grid0, stride, dtype)
    A, fitted = _local_affine(points0, points1, valid, fit_radius, fit_tolerance)
    A = torch.where(fitted[..., None, None], A, torch.eye(2, dtype=dtype, device=device))  # else: the plain shift
    warped = points1 + torch.einsum("bnij,bnj->bni", A, centre0 - points0)
    index1, on_grid1 = nearest_cell(warped, grid1, stride)
    centre1 = cell_pixels(index1, grid1, stride, dtype)
    # mutual as in `coarse_supervision`: the centre of j, carried back by the same expansion, lands in cell i
    back = centre0 + torch.linalg.solve(A, (centre1 - warped)[..., None])[..., 0]
    mutual = (nearest_cell(back, grid0, stride)[0] == index0) & inside_image(back, size0)
    # without a trusted fit the plain shift is off by |A - I| |centre - p0|, often a whole cell under rotation
    # or zoom: such a correspondence labels its cell only from within `unfitted_radius` of the centre
    trusted = fitted | ((points0 - centre0).abs().amax(-1) <= unfitted_radius)
    keep = (valid & trusted & mutual & on_grid0 & on_grid1 & torch.gather(cells0, 1, index0)
            & torch.gather(cells1, 1, index1) & inside_image(points0, size0) & inside_image(points1, size1)
            & inside_image(warped, size1) & _shown(batch, points0, 0) & _shown(batch, points1, 1)
            & _shown(batch, warped, 1))
    sample = torch.arange(b, device=device)[:, None]
    keep = _first_per_key(sample * grid0[0] * grid0[1] + index0, (points0 - centre0).norm(dim=-1), keep)
    keep = _first_per_key(sample * grid1[0] * grid1[1] + index1, (warped - centre1).norm(dim=-1), keep)

    batch_index, k = torch.nonzero(keep, as_tuple=True)
    i, j = index0[batch_index, k], index1[batch_index, k]
    warped0 = torch.zeros(b, grid0[0] * grid0[1], 2, dtype=dtype, device=device)
    warped0[batch_index, i] = warped[batch_index, k]
    warped0_valid = torch.zeros(b, grid0[0] * grid0[1], dtype=torch.bool, device=device)
    warped0_valid[batch_index, i] = fitted[batch_index, k]
    rows0, columns1 = torch.zeros_like(cells0), torch.zeros_like(cells1)
    rows0[batch_index, i] = True
    columns1[batch_index, j] = True
    jacobian0 = torch.eye(2, dtype=dtype, device=device).repeat(b, grid0[0] * grid0[1], 1, 1)
    jacobian0[batch_index, i] = A[batch_index, k]
    return Supervision(batch_index, i, j, warped0, warped0_valid, cells0, cells1, grid0, grid1,
                       negative_rows0=rows0, negative_columns1=columns1, jacobian0=jacobian0,
                       image_size0=tuple(image0.shape[2:]))


def supervision_for(batch: dict, grid0: tuple[int, int], grid1: tuple[int, int], stride: int = 8,
                    fine_stride: int | None = None, fine_origin: float = 0.0) -> Supervision:
    """The ground truth the batch can give: sparse from known correspondences when it carries them, dense
    (depth + pose, or homography) otherwise. `fine_stride`, `fine_origin`: dense ground truth on the fine grid
    too (`coarse_supervision`)."""
    if "correspondences0" in batch:
        return sparse_supervision(batch, grid0, grid1, stride)
    return coarse_supervision(batch, grid0, grid1, stride, fine_stride, fine_origin)
