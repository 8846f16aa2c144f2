"""Ground truth from sparse correspondences, checked against exact warps (affine, homography) and the dense
ground truth of the same warp."""

import torch

from geometry.ground_truth import coarse_supervision, sparse_supervision, supervision_for
from losses.coarse import focal_loss
from losses.targets import window_targets
from tests.ground_truth_helpers import GRID, labelled_batch

HOMOGRAPHY = torch.tensor([[1.05, 0.2, 10.0], [-0.15, 0.95, 6.0], [2e-4, -1e-4, 1.0]], dtype=torch.float64)[None]


def test_homography_labels_are_dense_labels_and_fine_targets_warp_the_cell_centre():
    batch = labelled_batch(HOMOGRAPHY)
    sparse, dense = sparse_supervision(batch, GRID, GRID), coarse_supervision(batch, GRID, GRID)
    dense_labels = set(zip(dense.index0.tolist(), dense.index1.tolist()))
    labels = list(zip(sparse.index0.tolist(), sparse.index1.tolist()))
    assert len(labels) > 80
    assert sum(label in dense_labels for label in labels) >= 0.97 * len(labels)
    rows = dict(dense_labels)
    assert all(rows.get(i, j) == j for i, j in labels)  # never a different cell than the dense truth
    fitted = sparse.warped0_valid[0, sparse.index0]
    assert fitted.float().mean() > 0.9
    error = (sparse.warped0[0, sparse.index0] - dense.warped0[0, sparse.index0]).norm(dim=-1)[fitted]
    assert error.max() < 0.05  # second-order term of the homography over <= 5.7 px


def test_affine_fine_targets_are_exact():
    A = torch.tensor([[[0.9, -0.3, 12.0], [0.25, 1.1, -4.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    batch = labelled_batch(A)
    sparse, dense = sparse_supervision(batch, GRID, GRID), coarse_supervision(batch, GRID, GRID)
    fitted = sparse.warped0_valid[0, sparse.index0]
    assert fitted.float().mean() > 0.9  # the rest: too few or too aligned neighbours (corners)
    index0 = sparse.index0[fitted]
    assert torch.allclose(sparse.warped0[0, index0], dense.warped0[0, index0], atol=1e-9)


def test_window_targets_carry_the_label_by_the_fitted_jacobian():
    """Every position of image 0's window around a labelled cell: its target from the sparse labels equals the
    dense truth on the fine grid, exactly for an affine warp, to hundredths of a pixel for a homography."""
    A = torch.tensor([[[0.9, -0.3, 12.0], [0.25, 1.1, -4.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    for H, tolerance_px in ((A, 1e-9), (HOMOGRAPHY, 0.05)):
        batch = labelled_batch(H)
        sparse = sparse_supervision(batch, GRID, GRID)
        dense = coarse_supervision(batch, GRID, GRID, fine_stride=2)
        matches = (sparse.batch_index, sparse.index0, sparse.index1)
        target, known = window_targets(sparse, *matches)
        truth, truth_known = window_targets(dense, *matches)
        both = known & truth_known
        assert both.float().mean() > 0.8 and both[:, 12].equal(
            sparse.warped0_valid[0, sparse.index0] & truth_known[:, 12]
        )
        assert (target - truth)[both].abs().max() * 4 < tolerance_px  # window units: 4 network pixels


def test_one_label_per_cell_nearest_to_the_centre_and_negatives_in_labelled_rows_and_columns():
    # translated points (+21, +13), too few to fit a Jacobian: labels by the plain shift, no fine target, and
    # only from within 1 px of a cell centre. The first two fall into cell (2, 1) of image 0 (centre (16, 8)):
    # the nearer wins; the last is 3 px from its centre (104, 72): no label
    points0 = torch.tensor([[[17.0, 9.0], [16.5, 7.0], [63.5, 40.5], [101.0, 69.0]]], dtype=torch.float64)
    batch = {
        "image0": torch.zeros(1, 1, 120, 160),
        "image1": torch.zeros(1, 1, 120, 160),
        "correspondences0": points0,
        "correspondences1": points0 + torch.tensor([21.0, 13.0]),
        "correspondences_valid": torch.tensor([[True, True, True, True]]),
    }
    sparse = supervision_for(batch, GRID, GRID)
    assert sorted(zip(sparse.index0.tolist(), sparse.index1.tolist())) == [
        (1 * 20 + 2, 3 * 20 + 5),
        (5 * 20 + 8, 7 * 20 + 11),
    ]
    assert not sparse.warped0_valid.any()
    assert torch.equal(sparse.warped0[0, 22], torch.tensor([37.0, 21.0]))  # the centre (16, 8), shifted
    negatives = sparse.negatives()[0]
    assert negatives[22].all() and negatives[:, 65].all()  # the labelled row and column
    assert negatives.sum() == 2 * 300 + 2 * 300 - 4  # two rows and two columns, their crossings once
    invalid = dict(batch, correspondences_valid=torch.tensor([[False, False, True, True]]))
    assert sparse_supervision(invalid, GRID, GRID).index0.tolist() == [108]


def test_labels_follow_the_image_scale():
    """Correspondences in original pixels of a 2x larger image: the same labels as the network-frame ones."""
    batch = labelled_batch(HOMOGRAPHY)
    scaled = dict(
        batch,
        correspondences0=batch["correspondences0"] * 2,
        correspondences1=batch["correspondences1"] * 3,
        scale0=torch.tensor([[2.0, 2.0]]),
        scale1=torch.tensor([[3.0, 3.0]]),
    )
    plain, from_original = sparse_supervision(batch, GRID, GRID), sparse_supervision(scaled, GRID, GRID)
    assert torch.equal(plain.index0, from_original.index0) and torch.equal(plain.index1, from_original.index1)
    assert torch.allclose(plain.warped0, from_original.warped0, atol=1e-6)


def test_focal_loss_scores_negatives_only_where_the_labels_say():
    confidence = torch.full((1, 4, 4), 0.1)
    labels = torch.zeros(1, 4, 4, dtype=torch.bool)
    labels[0, 0, 0] = True
    valid = torch.ones_like(labels)
    negatives = torch.zeros_like(labels)
    negatives[0, 0, :] = negatives[0, :, 0] = True  # row and column of the label
    before = focal_loss(confidence, labels, valid, 0.25, 2.0, negatives=negatives)
    elsewhere = confidence.clone()
    elsewhere[0, 2, 3] = 0.9  # an unlabelled entry: maybe a true match nobody labelled
    assert focal_loss(elsewhere, labels, valid, 0.25, 2.0, negatives=negatives) == before
    in_row = confidence.clone()
    in_row[0, 0, 3] = 0.9  # competes with the label in its row: certainly wrong
    assert focal_loss(in_row, labels, valid, 0.25, 2.0, negatives=negatives) > before
    assert focal_loss(elsewhere, labels, valid, 0.25, 2.0) > focal_loss(confidence, labels, valid, 0.25, 2.0)
