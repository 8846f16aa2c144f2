"""Homography pairs from a folder: the sampled warps, the pictures, the ground truth, determinism."""

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from data.homography import HomographyConfig, HomographyPairs, sample_homography
from data.synthetic.texture import make_texture
from geometry.ground_truth import coarse_supervision


@pytest.fixture
def folder(tmp_path):
    for seed in range(3):
        cv2.imwrite(str(tmp_path / f"photo{seed}.png"), make_texture(300, 400, seed=seed))
    return tmp_path


def test_sampled_homographies_respect_the_bounds():
    config = HomographyConfig(root="unused", max_rotation_deg=20.0, max_tilt=2.0, max_perspective=0.0,
                              max_shift=0.0, zoom_range=(1.0, 1.0))
    rng = np.random.default_rng(0)
    for _ in range(50):
        A = sample_homography(rng, config)[:2, :2]
        singular = np.linalg.svd(A, compute_uv=False)
        tilt = singular[0] / singular[1]
        assert 1.0 - 1e-9 <= tilt <= 2.0 + 1e-9 and abs(singular[0] - 1.0) < 1e-9  # zoom 1: a pure tilt
    # the centre stays put without shift and perspective
    centre = np.array([(640 - 1) / 2, (480 - 1) / 2, 1.0])
    assert np.allclose(sample_homography(np.random.default_rng(1), config) @ centre, centre)


def test_pairs_are_warped_copies_with_exact_ground_truth(folder):
    dataset = HomographyPairs(HomographyConfig(root=str(folder), image_size=(160, 120), pairs_per_image=2))
    assert len(dataset) == 6
    item = dataset[1]
    H = item["H_0to1"].double().numpy()
    image0 = (item["image0"][0].numpy() * 255).round().astype(np.uint8)
    expected = cv2.warpPerspective(image0, H, (160, 120))
    assert np.abs(item["image1"][0].numpy() * 255 - expected).max() <= 1.0
    batch = default_collate([item])
    supervision = coarse_supervision(batch, (15, 20), (15, 20))
    assert len(supervision.index0) > 100
    b, i = supervision.batch_index, supervision.index0
    centres = torch.stack([i % 20, i // 20], -1).double() * 8
    analytic = cv2.perspectiveTransform(centres.numpy()[None], H)[0]
    assert np.abs(supervision.warped0[b, i].numpy() - analytic).max() < 1e-3


def test_same_seed_same_pairs_other_seed_other_pairs(folder):
    first = HomographyPairs(HomographyConfig(root=str(folder), image_size=(160, 120)))
    again = HomographyPairs(HomographyConfig(root=str(folder), image_size=(160, 120)))
    other = HomographyPairs(HomographyConfig(root=str(folder), image_size=(160, 120), seed=1))
    assert torch.equal(first[2]["H_0to1"], again[2]["H_0to1"])
    assert not torch.equal(first[2]["H_0to1"], other[2]["H_0to1"])


def test_bad_folders_and_images_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        HomographyPairs(HomographyConfig(root=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="no images"):
        HomographyPairs(HomographyConfig(root=str(tmp_path)))
    (tmp_path / "broken.jpg").write_bytes(b"no jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        HomographyPairs(HomographyConfig(root=str(tmp_path)))[0]
