"""SuperGlue's pairs format: exact round trip, EXIF rotations that keep the geometry exact, line-numbered errors,
and the real MegaDepth sample pair turned into a pairs file."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from data.errors import BadPairError
from data.megadepth import load_scene_info
from data.pair_list import (
    PairListConfig,
    PairRecord,
    pair_list_pairs,
    read_pair_list,
    record_pair,
    scene_info_records,
    write_pair_list,
)
from data.synthetic.texture import make_texture

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "megadepth_sample"


def rigid(rng: np.random.Generator) -> np.ndarray:
    """A random (4, 4) rigid transform."""
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    T = np.eye(4)
    T[:3, :3] = R * np.sign(np.linalg.det(R))
    T[:3, 3] = rng.normal(size=3)
    return T


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def random_record(rng: np.random.Generator, name0="a.png", name1="b.png", rot0=0, rot1=0) -> PairRecord:
    K0 = intrinsics(*rng.uniform(50, 90, 2), *rng.uniform(20, 40, 2))
    K1 = intrinsics(*rng.uniform(50, 90, 2), *rng.uniform(20, 40, 2))
    return PairRecord(name0, name1, K0, K1, rigid(rng), rot0, rot1)


def test_write_then_read_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    records = [random_record(rng, f"scene/{i}.jpg", f"scene/{i + 1}.jpg", i % 4, (i + 1) % 4) for i in range(6)]
    write_pair_list(tmp_path / "pairs.txt", records)
    lines = (tmp_path / "pairs.txt").read_text().splitlines()
    assert len(lines) == 6 and all(len(line.split()) == 38 for line in lines)
    for written, read in zip(records, read_pair_list(tmp_path / "pairs.txt")):
        for key in ("name0", "name1", "rot0", "rot1"):
            assert getattr(read, key) == getattr(written, key)
        for key in ("K0", "K1", "T_0to1"):
            np.testing.assert_array_equal(getattr(read, key), getattr(written, key))


def test_superglue_lines_read(tmp_path):
    """A line as in SuperGlue's assets (ScanNet-style values), with a comment and a blank line around it."""
    line = ("scene0711_00_frame-001680.jpg scene0711_00_frame-001995.jpg 0 0 1163.45 0. 653.626 0. 1164.79 481.6 0. "
            "0. 1. 1163.45 0. 653.626 0. 1164.79 481.6 0. 0. 1. 0.78593 -0.35128 0.50884 -1.51061 0.39215 0.91944 "
            "0.02904 -0.05367 -0.47805 0.17672 0.86037 0.056 0. 0. 0. 1.")
    (tmp_path / "pairs.txt").write_text(f"# scannet\n\n{line}\n")
    (record,) = read_pair_list(tmp_path / "pairs.txt")
    assert record.name1 == "scene0711_00_frame-001995.jpg" and record.K0[0, 2] == 653.626
    assert record.T_0to1[2, 3] == 0.056 and record.T_0to1[3, 3] == 1


def write_images(root: Path, record: PairRecord, size=(64, 48)) -> tuple[np.ndarray, np.ndarray]:
    images = [make_texture(size[1], size[0], seed=seed) for seed in (0, 1)]
    for name, image in zip((record.name0, record.name1), images):
        cv2.imwrite(str(root / name), image)
    return images[0], images[1]


def rotation_map(rot: int, shape: tuple[int, int]) -> np.ndarray:
    """(3, 3) affine map from original pixels to pixels of np.rot90(image, rot), found by rotating the
    coordinate grids themselves (independent of the code under test)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    rot_x, rot_y = np.rot90(xs, rot), np.rot90(ys, rot)  # at rotated pixel (c, r): the original (x, y)
    rows, cols = np.mgrid[: rot_x.shape[0], : rot_x.shape[1]]
    source = np.stack([rot_x.ravel(), rot_y.ravel(), np.ones(rot_x.size)], 1)
    target = np.stack([cols.ravel(), rows.ravel()], 1)
    affine, *_ = np.linalg.lstsq(source, target, rcond=None)
    return np.vstack([affine.T, [0, 0, 1]])


def project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    pixels = points @ K.T
    return pixels[:, :2] / pixels[:, 2:]


@pytest.mark.parametrize("rot0, rot1", [(0, 0), (1, 0), (0, 3), (2, 1), (3, 2)])
def test_exif_rotation_keeps_the_geometry_exact(tmp_path, rot0, rot1):
    rng = np.random.default_rng(rot0 * 4 + rot1)
    record = random_record(rng, rot0=rot0, rot1=rot1)
    original0, original1 = write_images(tmp_path, record)
    pair = record_pair(record, tmp_path)
    pair.validate()
    np.testing.assert_array_equal(pair.image0, np.rot90(original0, rot0))  # SuperGlue's read_image convention
    np.testing.assert_array_equal(pair.image1, np.rot90(original1, rot1))

    # pixels of image 0 at known depths, carried into image 1: by the original geometry then through the image
    # rotations, and by the rotated geometry from the rotated pixels; both must agree
    A0, A1 = rotation_map(rot0, original0.shape), rotation_map(rot1, original1.shape)
    pixels0 = np.stack([rng.uniform(0, 63, 20), rng.uniform(0, 47, 20), np.ones(20)], 1)
    depths = rng.uniform(2, 6, 20)[:, None]
    points0 = depths * pixels0 @ np.linalg.inv(record.K0).T
    expected1 = project(record.K1, points0 @ record.T_0to1[:3, :3].T + record.T_0to1[:3, 3])
    expected1 = np.c_[expected1, np.ones(20)] @ A1.T

    rotated0 = pixels0 @ A0.T
    rotated_points0 = depths * rotated0 @ np.linalg.inv(pair.K0).T  # depth along the axis is kept by a roll
    found1 = project(pair.K1, rotated_points0 @ pair.T_0to1[:3, :3].T + pair.T_0to1[:3, 3])
    np.testing.assert_allclose(found1, expected1[:, :2], atol=1e-9)
    R = pair.T_0to1[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)


def test_quarter_turn_intrinsics_match_superglue(tmp_path):
    """SuperGlue's rotate_intrinsics for one turn of a W-wide image: [[fy, 0, cy], [0, fx, W-1-cx], [0, 0, 1]]."""
    record = PairRecord("a.png", "b.png", intrinsics(70, 60, 30, 20), intrinsics(70, 60, 30, 20), np.eye(4), 1, 0)
    write_images(tmp_path, record, size=(64, 48))
    pair = record_pair(record, tmp_path)
    np.testing.assert_allclose(pair.K0, [[60, 0, 20], [0, 70, 64 - 1 - 30], [0, 0, 1]], atol=1e-12)
    assert pair.image0.shape == (64, 48)


@pytest.mark.parametrize("line, message", [
    ("a.jpg b.jpg 0 0", "got 4 .*without ground truth"),
    ("a.jpg b.jpg 0 0" + " 1" * 33, "expected 38 values"),
    ("a.jpg b.jpg x 0" + " 1" * 34, "rotations"),
    ("a.jpg b.jpg 4 0 1 0 0 0 1 0 0 0 1 1 0 0 0 1 0 0 0 1 " + "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", "rot0 = 4"),
    ("a.jpg b.jpg 0 0 1 0 0 0 1 0 0 0 one 1 0 0 0 1 0 0 0 1 " + "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", "numbers"),
    ("a.jpg b.jpg 0 0 1 0 0 0 1 0 0 0 1 1 0 0 0 1 0 0 0 1 " + "2 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", "not a rigid"),
    ("a.jpg b.jpg 0 0 1 0 0 0 1 0 0 0 1 1 0 0 0 1 0 0 0 0 " + "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", "K1"),
])
def test_malformed_lines_name_the_line(tmp_path, line, message):
    good = "a.jpg b.jpg 0 0 1 0 0 0 1 0 0 0 1 1 0 0 0 1 0 0 0 1 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"
    (tmp_path / "pairs.txt").write_text(f"{good}\n# comment\n{line}\n{good}\n")
    with pytest.raises(ValueError, match=f"pairs.txt:3: .*{message}"):
        read_pair_list(tmp_path / "pairs.txt")


def test_config_errors_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="set `pairs_file`"):
        next(pair_list_pairs(PairListConfig(pairs_file=str(tmp_path / "none.txt"), image_root=str(tmp_path))))
    record = random_record(np.random.default_rng(0))
    write_pair_list(tmp_path / "pairs.txt", [record])
    with pytest.raises(FileNotFoundError, match="set `image_root`"):
        next(pair_list_pairs(PairListConfig(pairs_file=str(tmp_path / "pairs.txt"), image_root=str(tmp_path / "x"))))
    with pytest.raises(BadPairError, match="pair 0 .*a.png"):  # the image is not there: the pair and file are named
        next(pair_list_pairs(PairListConfig(pairs_file=str(tmp_path / "pairs.txt"), image_root=str(tmp_path))))
    with pytest.raises(ValueError, match="whitespace"):
        write_pair_list(tmp_path / "bad.txt", [PairRecord("a b.png", "c.png", record.K0, record.K1, record.T_0to1)])


def test_max_pairs(tmp_path):
    rng = np.random.default_rng(1)
    records = [random_record(rng) for _ in range(3)]
    write_pair_list(tmp_path / "pairs.txt", records)
    write_images(tmp_path, records[0])
    config = PairListConfig(pairs_file=str(tmp_path / "pairs.txt"), image_root=str(tmp_path), max_pairs=2)
    pairs = list(pair_list_pairs(config))
    assert len(pairs) == 2
    np.testing.assert_array_equal(pairs[1].T_0to1, records[1].T_0to1)


def test_real_megadepth_pair_through_a_pairs_file(tmp_path):
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} is not here")
    records = scene_info_records(SAMPLE / "sample.npz", min_overlap=0.6, max_overlap=0.65)
    info = load_scene_info(SAMPLE / "sample.npz")
    assert (records[0].name0, records[0].name1) == (info["image_paths"][1474], info["image_paths"][1462])
    write_pair_list(tmp_path / "pairs.txt", records[:1])
    (pair,) = pair_list_pairs(PairListConfig(pairs_file=str(tmp_path / "pairs.txt"), image_root=str(SAMPLE)))
    pose0, pose1 = (np.asarray(info["poses"][i], np.float64) for i in (1474, 1462))  # world -> camera
    np.testing.assert_allclose(pair.T_0to1, pose1 @ np.linalg.inv(pose0), atol=1e-12)
    np.testing.assert_array_equal(pair.K0, info["intrinsics"][1474])
    assert pair.image0.shape == (1600, 1194) and pair.image1.shape == (827, 1242) and pair.image0.dtype == np.uint8
    pair.validate()
