"""Coarse and fine ground truth against exact answers, padding, and the real MegaDepth pair."""

import torch
import torch.nn.functional as F

from geometry.ground_truth import coarse_supervision
from geometry.warp import warp_depth, warp_homography
from losses.targets import fine_targets, window_targets
from tests.ground_truth_helpers import FOCAL, Z, megadepth_pair, plane_batch, translation


def matches(sup):
    return set(zip(sup.batch_index.tolist(), sup.index0.tolist(), sup.index1.tolist()))


def test_identity_pose_gives_the_identity_assignment():
    sup = coarse_supervision(plane_batch(96, 128, torch.eye(4)), (12, 16), (12, 16))
    assert matches(sup) == {(0, i, i) for i in range(12 * 16)}


def test_plane_under_translation_gives_the_shifted_assignment():
    """Camera shift such that the plane moves by exactly (2, 1) cells: cell (r, c) -> (r + 1, c + 2)."""
    sup = coarse_supervision(plane_batch(96, 128, translation(16 * Z / FOCAL, 8 * Z / FOCAL)), (12, 16), (12, 16))
    expected = {(0, r * 16 + c, (r + 1) * 16 + c + 2) for r in range(11) for c in range(14)}
    assert matches(sup) == expected
    labels = sup.labels()
    assert labels.shape == (1, 192, 192) and labels.sum() == len(expected)


def test_rotation_by_90_degrees_permutes_the_assignment():
    """Roll by 90 degrees about a principal point on a cell centre: cell (r, c) -> (c, 15 - r)."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    sup = coarse_supervision(plane_batch(128, 128, T, principal=(60.0, 60.0)), (16, 16), (16, 16))
    assert matches(sup) == {(0, r * 16 + c, c * 16 + 15 - r) for r in range(16) for c in range(16)}


def test_homography_correspondences_follow_the_analytic_warp_in_both_frames():
    """A homography between two resized images: the warped cell centres match the analytic warp to 1e-3 px,
    with the network-input frames related to the original ones by scale0 / scale1."""
    H = torch.tensor([[1.05, 0.08, 12.0], [-0.04, 0.97, 20.0], [1e-4, -5e-5, 1.0]], dtype=torch.float64)
    scale0 = torch.tensor([[2.0, 2.0]], dtype=torch.float64)  # originals twice the network size
    scale1 = torch.tensor([[2.5, 2.5]], dtype=torch.float64)
    batch = {
        "image0": torch.zeros(1, 1, 96, 128, dtype=torch.float64),
        "image1": torch.zeros(1, 1, 96, 128, dtype=torch.float64),
        "scale0": scale0,
        "scale1": scale1,
        "H_0to1": H[None],
    }
    sup = coarse_supervision(batch, (12, 16), (12, 16))
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    centres = torch.stack([cols, rows], -1).reshape(1, -1, 2).double() * 8
    analytic = warp_homography(centres * scale0, H[None]) / scale1
    assert (sup.warped0 - analytic).abs().max() < 1e-3
    assert len(sup.index0) > 50
    # every match is mutual: the centre of j, warped back, is nearest to the centre of i
    j = sup.index1
    back = warp_homography(centres[0, j][None] * scale1, torch.linalg.inv(H)[None]) / scale0
    assert torch.equal(((back[0] / 8).round() * torch.tensor([1.0, 16.0])).sum(-1).long(), sup.index0)


def test_padding_changes_nothing_but_excludes_padded_cells():
    T = translation(16 * Z / FOCAL, 8 * Z / FOCAL)
    small = plane_batch(88, 120, T, principal=(63.5, 47.5))
    padded = dict(small)
    padded["image0"] = F.pad(small["image0"], (0, 8, 0, 8))
    padded["image1"] = F.pad(small["image1"], (0, 8, 0, 8))
    mask = torch.zeros(1, 96, 128, dtype=torch.bool)
    mask[:, :88, :120] = True
    padded["mask0"], padded["mask1"] = mask, mask.clone()
    unpadded = coarse_supervision(small, (11, 15), (11, 15))
    with_padding = coarse_supervision(padded, (12, 16), (12, 16))
    def to_big(index):
        return index // 15 * 16 + index % 15  # same cell on the wider grid
    assert matches(with_padding) == {(b, to_big(i), to_big(j)) for b, i, j in matches(unpadded)}


def test_fine_offsets_are_exact_for_subcell_shifts():
    """A shift of (3, -2) px: every match lies 3 px right and 2 px up of its cell centre, i.e. at
    (3, -2) / (radius 2 x fine stride 2) in window units."""
    sup = coarse_supervision(plane_batch(96, 128, translation(3 * Z / FOCAL, -2 * Z / FOCAL)), (12, 16), (12, 16))
    offset, known = fine_targets(sup, sup.batch_index, sup.index0, sup.index1)
    assert known.all() and len(offset) > 100
    assert torch.allclose(offset, torch.tensor([[0.75, -0.5]], dtype=torch.float64).expand_as(offset), atol=1e-9)


def test_real_megadepth_pair():
    (depth0, depth1), K0, K1, T_0to1 = megadepth_pair()
    sizes = [torch.tensor(d.shape[1:]) for d in (depth0, depth1)]
    batch, grids = {}, []
    for side, size in enumerate(sizes):  # network inputs: longer side 840 as LoFTR trains, grids ceil(/8)
        factor = 840 / size.max().item()
        net = (size.double() * factor).round().long()
        batch[f"image{side}"] = torch.zeros(1, 1, *net.tolist(), dtype=torch.float64)
        batch[f"scale{side}"] = (size.flip(0).double() / net.flip(0).double())[None]
        grids.append(tuple((-(-net // 8)).tolist()))
    batch.update(depth0=depth0, depth1=depth1, K0=K0, K1=K1, T_0to1=T_0to1)
    sup = coarse_supervision(batch, *grids)
    assert 500 < len(sup.index0) < 0.5 * grids[0][0] * grids[0][1]  # overlap 0.64, but depth covers ~40%
    # the warped points are depth-consistent seen from image 1 as well
    warped = sup.warped0[sup.batch_index, sup.index0][None] * batch["scale1"]
    back_valid, _ = warp_depth(warped, depth1, depth0, K1, K0, torch.linalg.inv(T_0to1))
    assert back_valid.float().mean() >= 0.99


def homography_batch():
    H = torch.tensor([[1.05, 0.08, 12.0], [-0.04, 0.97, 20.0], [1e-4, -5e-5, 1.0]], dtype=torch.float64)
    return H, {
        "image0": torch.zeros(1, 1, 96, 128, dtype=torch.float64),
        "image1": torch.zeros(1, 1, 96, 128, dtype=torch.float64),
        "H_0to1": H[None],
    }


def test_window_targets_follow_the_analytic_homography():
    """Every position (dx, dy) of image 0's fine window around cell i: its true match is H(centre_i + 2 (dx, dy)),
    in image 1's window units around cell j; the centre position is the cell's own fine target."""
    H, batch = homography_batch()
    sup = coarse_supervision(batch, (12, 16), (12, 16), fine_stride=2)
    b, i, j = sup.batch_index, sup.index0, sup.index1
    target, known = window_targets(sup, b, i, j)
    assert target.shape == (len(i), 25, 2) and len(i) > 50

    shifts = torch.arange(-2, 3, dtype=torch.float64) * 2
    dy, dx = torch.meshgrid(shifts, shifts, indexing="ij")
    centre0 = torch.stack([i % 16, i // 16], -1).double() * 8
    centre1 = torch.stack([j % 16, j // 16], -1).double() * 8
    points = centre0[:, None] + torch.stack([dx, dy], -1).reshape(1, 25, 2)
    expected = (warp_homography(points.reshape(1, -1, 2), H[None]).reshape(-1, 25, 2) - centre1[:, None]) / 4
    size = torch.tensor([128.0, 96.0], dtype=torch.float64)
    def on_pixel(p):
        return ((p >= -0.5) & (p < size - 0.5)).all(-1)  # (geometry.warp.inside_image)
    assert torch.equal(known, on_pixel(points) & on_pixel(expected * 4 + centre1[:, None]))
    assert (target - expected)[known].abs().max() < 1e-9

    centre_target, centre_known = fine_targets(sup, b, i, j)
    assert torch.allclose(target[:, 12], centre_target, atol=1e-9) and torch.equal(known[:, 12], centre_known)
    query = torch.randint(0, 25, (len(i),))
    picked, picked_known = fine_targets(sup, b, i, j, query=query)
    rows = torch.arange(len(i))
    assert torch.equal(picked, target[rows, query]) and torch.equal(picked_known, known[rows, query])


def test_off_centre_queries_are_unknown_without_fine_grid_ground_truth():
    _, batch = homography_batch()
    sup = coarse_supervision(batch, (12, 16), (12, 16))  # no fine_stride: cell centres only
    b, i, j = sup.batch_index, sup.index0, sup.index1
    query = torch.where(torch.arange(len(i)) % 2 == 0, 12, 7)
    _, known = fine_targets(sup, b, i, j, query=query)
    assert known[query == 12].all() and not known[query == 7].any()
    target, window_known = window_targets(sup, b, i, j)
    assert torch.equal(window_known[:, 12], known[query == 12][:1].expand(len(i))) and not window_known[:, :12].any()
