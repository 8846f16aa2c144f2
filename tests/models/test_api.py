"""The Python API (`from models import load_matcher`): every checkpoint kind match.py reads, the inputs users
hold (paths, gray or RGB arrays, uint8 or float, tensors), keypoints in original pixels checked against the
known warp, quarter turns, batches of pairs, and one clear error for bad input."""

import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.synthetic.texture import make_texture
from geometry.warp import apply_homography, warp_image
from lightning_modules.config import TrainingConfig
from lightning_modules.loftr_module import LoFTRModule
from models import load_matcher
from models.family import model_for_weights
from models.matcher import LoFTRMatcher
from tests.helpers import WARP, content_only_, run_here, sharpen_, tiny_eloftr_config, tiny_model_config

ROOT = Path(__file__).resolve().parents[2]
SIZE = (240, 320)  # (height, width) of the test pictures; the API resizes them to 640 on the longer side


def colour_pair(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Two colour PNGs, the second the first warped by WARP, and both as RGB arrays (as PIL or matplotlib
    give them); each channel a different texture, so that gray is a true mixture of the three."""
    channels = [make_texture(*SIZE, seed=seed) for seed in (0, 1, 2)]
    rgb0 = np.stack(channels, axis=2)
    rgb1 = np.stack([warp_image(c, WARP) for c in channels], axis=2)
    paths = folder / "a.png", folder / "b.png"
    for path, rgb in zip(paths, (rgb0, rgb1)):
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return *paths, rgb0, rgb1


def checkpoints(folder: Path) -> dict[str, Path]:
    """One file of each kind match.py reads: ours (a Lightning checkpoint with its stored config) for LoFTR
    and Efficient LoFTR, an official LoFTR release (`matcher.*` keys, legacy encoding) and kornia's plain
    state dict."""
    torch.manual_seed(0)
    files = {}
    for name, config in (("ours_loftr", tiny_model_config()), ("ours_eloftr", tiny_eloftr_config())):
        config.match_coarse.threshold = 0.0
        module = LoFTRModule(TrainingConfig(model=config))
        files[name] = folder / f"{name}.ckpt"
        torch.save({"state_dict": module.state_dict(),
                    "hyper_parameters": {"training": {"model": dataclasses.asdict(config)}}}, files[name])
    weights = model_for_weights(None).state_dict()
    files["official"], files["kornia"] = folder / "official.ckpt", folder / "kornia.pth"
    torch.save({"state_dict": {f"matcher.{key}": value for key, value in weights.items()}}, files["official"])
    torch.save(weights, files["kornia"])
    return files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    return colour_pair(folder), checkpoints(folder)


@pytest.mark.parametrize("kind", ["ours_loftr", "ours_eloftr", "official", "kornia"])
def test_load_matcher_gives_match_pys_keypoints_on_a_colour_pair(files, tmp_path, kind):
    (path0, path1, _, _), checkpoint = files[0], files[1][kind]
    out = tmp_path / "m.npz"
    run = run_here(["match.py", str(path0), str(path1), "--checkpoint", str(checkpoint), "--out", str(out),
                    "--device", "cpu", "--coarse-threshold", "0", "--resize", "320"], ROOT)  # random weights:
    assert run.returncode == 0, run.stderr  # low confidences
    expected = np.load(out)
    matcher = load_matcher(checkpoint, device="cpu", threshold=0.0, resize=320)
    assert matcher.name == ("eloftr" if kind == "ours_eloftr" else "loftr")
    from_paths = matcher.match(str(path0), path1)
    assert len(expected["confidence"]) > 0
    for key in ("keypoints0", "keypoints1", "confidence"):
        assert from_paths[key].shape == expected[key].shape
        assert np.abs(from_paths[key] - expected[key]).max() <= 0.01
        assert from_paths[key] is getattr(from_paths, key)


def test_rgb_arrays_and_tensors_give_the_matches_of_their_gray_image(files):
    """An RGB array is matched as its BT.601 gray (OpenCV's weights; a PNG decoder may round differently), a
    float image as the uint8 one divided by 255, a tensor channels first, a (H, W, 1) array as (H, W)."""
    (_, _, rgb0, rgb1), checkpoint = files[0], files[1]["ours_loftr"]
    matcher = load_matcher(checkpoint, threshold=0.0)
    gray0, gray1 = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for rgb in (rgb0, rgb1))
    expected = matcher.match(gray0, gray1)
    tensor0 = torch.from_numpy(rgb0).permute(2, 0, 1).float() / 255
    for image0, image1 in ((rgb0, rgb1), (rgb0 / 255.0, rgb1.astype(np.float32) / 255), (tensor0[None], gray1),
                           (tensor0, torch.from_numpy(gray1)[None]), (rgb0, gray1[:, :, None])):
        result = matcher.match(image0, image1)
        for key in ("keypoints0", "keypoints1", "confidence"):
            np.testing.assert_array_equal(result[key], expected[key])


@pytest.fixture(scope="module")
def content_matcher():
    """A matcher whose random descriptors follow the image content (tests/helpers.py content_only_): it
    matches each cell where the warp takes it, so its keypoints can be checked against the warp."""
    torch.manual_seed(0)
    model = content_only_(sharpen_(model_for_weights(None, tiny_model_config())))
    model.coarse_matching.config.threshold = 0.0
    return model


def right_share(kpts0: np.ndarray, kpts1: np.ndarray, H: np.ndarray, pixels: float) -> float:
    return float((np.linalg.norm(apply_homography(H, kpts0.astype(np.float64)) - kpts1, axis=1) < pixels).mean())


def test_keypoints_are_in_original_pixels_and_right_against_the_warp(files, content_matcher):
    """At 640 px the network sees the 320 px pictures twice as large; the keypoints come back in the
    pictures' own pixels, where the warp is known: a same-place match (the identity) is right at few of them."""
    (path0, path1, rgb0, rgb1) = files[0]
    result = LoFTRMatcher(content_matcher, resize=640).match(rgb0, rgb1)
    assert len(result) > 100
    assert right_share(result.keypoints0, result.keypoints1, WARP, 4.0) > 0.6
    assert right_share(result.keypoints0, result.keypoints0, WARP, 4.0) < 0.05


def test_rotations_find_the_turn_of_a_turned_photo(files, content_matcher):
    """Image 1 is image 0 turned a quarter clockwise. Unturned, the matches are wrong; with rotations the
    matcher keeps the turn that undoes it, and its keypoints are image 1's own pixels."""
    rgb0 = files[0][2]
    turned = np.ascontiguousarray(np.rot90(rgb0, -1))  # clockwise: (x, y) -> (H - 1 - y, x)
    height = rgb0.shape[0]
    H = np.array([[0.0, -1.0, height - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    plain = LoFTRMatcher(content_matcher, resize=640).match(rgb0, turned)
    turns = LoFTRMatcher(content_matcher, resize=640, rotations=[0, 90, 180, 270]).match(rgb0, turned)
    assert right_share(plain.keypoints0, plain.keypoints1, H, 4.0) < 0.2
    assert len(turns) > 100 and right_share(turns.keypoints0, turns.keypoints1, H, 4.0) > 0.6


def test_match_pairs_matches_each_listed_pair(files, tmp_path, content_matcher):
    (path0, path1, rgb0, rgb1) = files[0]
    (tmp_path / "sub").mkdir()
    for name, rgb in (("a.png", rgb0), ("sub/b.png", rgb1)):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    matcher = LoFTRMatcher(content_matcher, resize=640)
    pairs = [("a.png", "sub/b.png"), ("sub/b.png", "a.png")]
    results = matcher.match_pairs(pairs, tmp_path, progress=False)
    assert list(results) == pairs
    forward = results[pairs[0]]
    alone = matcher.match(tmp_path / "a.png", tmp_path / "sub/b.png")
    np.testing.assert_array_equal(forward.keypoints1, alone.keypoints1)
    assert right_share(forward.keypoints0, forward.keypoints1, WARP, 4.0) > 0.6


def test_bfloat16_matches_stay_right(files, content_matcher):
    (path0, path1, rgb0, rgb1) = files[0]
    result = LoFTRMatcher(content_matcher, resize=640, precision="bf16").match(rgb0, rgb1)
    assert result.keypoints0.dtype == np.float32 and len(result) > 50
    assert right_share(result.keypoints0, result.keypoints1, WARP, 4.0) > 0.5


@pytest.mark.parametrize(("call", "named"), [
    (lambda m, a: m.match(a * 2.0, a), "image0: a float image must hold finite values in [0, 1]"),
    (lambda m, a: m.match(a, np.zeros((4, 5, 2), np.uint8)), "image1 must be an (H, W) gray or (H, W, 3) RGB"),
    (lambda m, a: m.match(a, a.astype(np.int32)), "image1 must be uint8 or float"),
    (lambda m, a: m.match(a, [[1, 2]]), "image1 must be a path, a numpy array or a torch tensor"),
    (lambda m, a: m.match(a, "missing.png"), "image not found: missing.png"),
])
def test_bad_input_is_one_clear_error_naming_it(files, call, named):
    matcher = load_matcher(files[1]["kornia"])
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        call(matcher, files[0][2].astype(np.float64) / 255)
    assert named in str(error.value)


@pytest.mark.parametrize(("options", "named"), [
    (dict(threshold=1.5), "threshold=1.5: must be a finite number in [0, 1]"),
    (dict(rotations=[45]), "rotations must be a non-empty list of multiples of 90"),
    (dict(precision="int8"), "precision must be one of fp32, bf16, fp16"),
    (dict(device="meta"), "matching runs on cpu, cuda, cuda:N or mps"),
    (dict(resize=-1), "resize=-1: must be a whole number in [0, 2147483647]"),
    (dict(resize=320.5), "resize=320.5: must be a whole number in [0, 2147483647]"),
    (dict(affine={"tolerance": 1.0}), "tolerance=1.0: must be a finite number in (1, 64]"),
    (dict(affine={"tilt": 2}), "affine: unknown option(s) tilt; valid: max_tilt, tolerance"),
    (dict(affine="yes"), "affine='yes': must be true, false, a dict of options or an AffineSimulationConfig"),
])
def test_bad_options_are_refused_naming_them(files, options, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        load_matcher(files[1]["kornia"], **options)


def test_the_api_imports_from_the_repository_root_in_a_fresh_interpreter(files, tmp_path):
    script = tmp_path / "use.py"
    (path0, path1, _, _), checkpoint = files[0], files[1]["ours_eloftr"]
    script.write_text(f"from models import load_matcher\n"
                      f"result = load_matcher({str(checkpoint)!r}).match({str(path0)!r}, {str(path1)!r})\n"
                      f"print(len(result), sorted(result.as_dict()))\n")
    run = run_here([str(script)], ROOT)
    assert run.returncode == 0, run.stderr
    assert "['confidence', 'keypoints0', 'keypoints1']" in run.stdout


def test_affine_simulation_gives_keypoints_in_the_original_pixels_of_a_colour_path(tmp_path):
    """load_matcher(affine=...) resizes both images once (here 128 -> 96 px), matches the views of image 0 at
    that size and brings the keypoints back to the files' own pixels (random weights: a pipeline check)."""
    rgb = np.stack([make_texture(96, 128, seed=seed) for seed in (3, 4, 5)], axis=2)
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    matcher = load_matcher(None, resize=96, threshold=0.0,
                           affine={"tilts": [1, 2], "longitudes": [1, 2], "filter": "none"})
    result = matcher.match(path, rgb)
    assert matcher.name == "loftr+affine" and matcher.inner.last_stats.views == 3
    assert len(result) > 20
    for points in (result.keypoints0, result.keypoints1):
        assert (points >= -0.5).all() and (points <= np.array([127.5, 95.5])).all()
    small = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (96, 72), interpolation=cv2.INTER_AREA)
    inner = matcher.inner.match(small, small)
    np.testing.assert_allclose(result.keypoints0, inner.keypoints0 * 128 / 96, atol=1e-4)


def test_affine_simulation_keypoints_are_right_against_the_warp(files, content_matcher):
    """One simulated view (tilt 1.4 along x) of the 320 px picture, at 640 px for the network, keeps the pair's
    geometry: the keypoints, in the pictures' pixels, follow the known warp (measured: 100% within 4 px). The
    filter's threshold is in the network's pixels, those the simulation is given."""
    from models.affine import AffineSimulation, AffineSimulationConfig
    from models.matcher import ResizedMatcher

    (path0, path1, rgb0, rgb1) = files[0]
    config = AffineSimulationConfig(tilts=[1.4], longitudes=[1], filter="homography")
    result = ResizedMatcher(AffineSimulation(LoFTRMatcher(content_matcher), config), 640).match(rgb0, path1)
    assert len(result) > 100
    assert right_share(result.keypoints0, result.keypoints1, WARP, 4.0) > 0.9
