"""Rotation and tilt stress pairs: what sits at p in the original image 1 is shown at warp1 @ p."""

import numpy as np
import pytest

from data.pairs import EvalPair
from evaluation.stress import StressConfig, rotate_pair, stress_variants, tilt_pair
from geometry.warp import apply_homography

HEIGHT, WIDTH = 60, 84
# Blob centres (x, y), four near the corners and one in the middle, some between pixels; over 32 px apart, so
# they keep separate centroid windows when a tilt of 4 brings them 4 times closer.
BLOBS = np.array([[8.5, 8.0], [75.0, 9.25], [9.0, 50.7], [75.6, 50.0], [42.3, 29.6]])


def blob_image(sigma: float = 2.0) -> np.ndarray:
    """(HEIGHT, WIDTH) uint8: Gaussian dots of standard deviation `sigma` pixels at BLOBS, black elsewhere."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in BLOBS)
    return np.rint(250 * image).astype(np.uint8)


def make_pair(image1: np.ndarray, name: str = "pair", warp1: np.ndarray | None = None) -> EvalPair:
    return EvalPair(name, image0=image1.copy(), image1=image1, H_0to1=np.eye(3), warp1=warp1, group="scene")


def centroids(image: np.ndarray, near: np.ndarray, radius: int = 5) -> np.ndarray:
    """Intensity centroids (N, 2) of `image` in windows of `radius` pixels about the points `near` (N, 2)."""
    found = []
    for x, y in np.rint(near).astype(int):
        top, left = max(y - radius, 0), max(x - radius, 0)
        window = image[top : y + radius + 1, left : x + radius + 1].astype(np.float64)
        ys, xs = np.mgrid[top : top + window.shape[0], left : left + window.shape[1]]
        found.append([(xs * window).sum() / window.sum(), (ys * window).sum() / window.sum()])
    return np.array(found)


def assert_inside_canvas(pair: EvalPair) -> None:
    """The corners of the original image's extent (pixel squares) lie on the shown canvas."""
    extent = np.array([[-0.5, -0.5], [WIDTH - 0.5, -0.5], [-0.5, HEIGHT - 0.5], [WIDTH - 0.5, HEIGHT - 0.5]])
    corners = apply_homography(pair.warp1, extent)
    height, width = pair.image1.shape
    assert (corners >= -0.5 - 1e-9).all() and (corners <= np.array([width, height]) - 0.5 + 1e-9).all()


@pytest.mark.parametrize("angle", [90, 180, 270, -90, 450])
def test_quarter_turns_move_every_pixel_exactly(angle):
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    pair = rotate_pair(make_pair(image), angle)
    expected_shape = (WIDTH, HEIGHT) if angle % 180 else (HEIGHT, WIDTH)
    assert pair.image1.shape == expected_shape and pair.image1.dtype == np.uint8
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    points = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
    shown = apply_homography(pair.warp1, points)
    assert np.abs(shown - np.rint(shown)).max() < 1e-9
    columns, rows = np.rint(shown).astype(int).T
    assert (pair.image1[rows, columns] == image[ys.ravel(), xs.ravel()]).all()
    assert pair.group == f"rot {angle:g}" and pair.name == f"pair rot {angle:g}"
    assert_inside_canvas(pair)


def test_quarter_turn_is_counter_clockwise_as_displayed():
    """The top-right corner goes to the top-left, as np.rot90 turns an array."""
    pair = rotate_pair(make_pair(blob_image()), 90)
    assert apply_homography(pair.warp1, np.array([[WIDTH - 1.0, 0.0]])) == pytest.approx(np.array([[0.0, 0.0]]))
    assert (pair.image1 == np.rot90(blob_image())).all()


@pytest.mark.parametrize("angle", [30.0, -135.0, 200.0])
def test_rotation_moves_blobs_to_warp1(angle):
    pair = rotate_pair(make_pair(blob_image()), angle)
    expected = apply_homography(pair.warp1, BLOBS)
    assert np.abs(centroids(pair.image1, expected) - expected).max() < 0.1  # within a pixel, comfortably
    assert_inside_canvas(pair)
    diagonal = np.abs(np.cos(np.radians(angle))) * np.array([WIDTH, HEIGHT]) + np.abs(
        np.sin(np.radians(angle))) * np.array([HEIGHT, WIDTH])
    assert pair.image1.shape[::-1] == tuple(np.ceil(diagonal).astype(int))  # the smallest canvas


@pytest.mark.parametrize("direction", [0.0, 30.0, 90.0, 127.0])
def test_tilt_moves_blobs_to_warp1(direction):
    pair = tilt_pair(make_pair(blob_image()), 4.0, direction)
    expected = apply_homography(pair.warp1, BLOBS)
    assert np.abs(centroids(pair.image1, expected) - expected).max() < 0.1
    assert_inside_canvas(pair)
    assert pair.group == "tilt 4" and pair.name == f"pair tilt 4 dir {direction:.1f}"


def test_tilt_compresses_along_the_direction_only():
    """Along x: the width shrinks 4 times, the height stays; the area and the mass of a white image shrink
    4 times; lengths across the direction are kept."""
    white = np.full((HEIGHT, WIDTH), 255, np.uint8)
    pair = tilt_pair(make_pair(white), 4.0, 0.0)
    assert pair.image1.shape == (HEIGHT, WIDTH // 4)
    assert pair.warp1[:2, :2] == pytest.approx(np.diag([0.25, 1.0]))
    diagonal = tilt_pair(make_pair(white), 4.0, 45.0)
    u, v = np.array([1.0, -1.0]) / np.sqrt(2), np.array([1.0, 1.0]) / np.sqrt(2)  # 45 degrees on screen, y down
    assert diagonal.warp1[:2, :2] @ u == pytest.approx(u / 4)
    assert diagonal.warp1[:2, :2] @ v == pytest.approx(v)
    # blurring along the direction spills mass off the image edges: a border of about 2 sigma = 6 px
    for tilted in (pair, diagonal):
        assert tilted.image1.astype(float).sum() / 255 == pytest.approx(HEIGHT * WIDTH / 4, rel=0.06)


@pytest.mark.parametrize("tilt", [2.0, 4.0, 8.0])
def test_tilt_blur_is_the_asift_gaussian(tilt):
    """A one-pixel vertical line tilted along x: its profile keeps its mass and its centre at warp1, and its
    variance in original pixels is the blur's, 0.64 (t^2 - 1), plus 1/6 from the bilinear tent (and ~1/12
    from the sampled kernel)."""
    image = np.zeros((20, WIDTH), np.float32)
    image[:, 41] = 1.0
    pair = tilt_pair(make_pair(image), tilt, 0.0)
    row, xs = pair.image1[10].astype(np.float64), np.arange(pair.image1.shape[1])
    mean = (row * xs).sum() / row.sum()
    assert row.sum() * tilt == pytest.approx(1.0, abs=1e-4)
    assert mean == pytest.approx(apply_homography(pair.warp1, np.array([[41.0, 10.0]]))[0, 0], abs=1e-3)
    variance = (row * (xs - mean) ** 2).sum() / row.sum() * tilt**2
    assert variance == pytest.approx(0.64 * (tilt**2 - 1) + 1 / 6, abs=0.15)


def test_nothing_is_cropped():
    """A white image keeps its mass (its area) under a rotation: the whole image is on the canvas."""
    white = np.full((HEIGHT, WIDTH), 255, np.uint8)
    for angle in (30.0, 45.0, 123.0):
        shown = rotate_pair(make_pair(white), angle).image1.astype(float)
        assert shown.sum() / 255 == pytest.approx(HEIGHT * WIDTH, rel=5e-3)  # a cropped corner: > 1 %


def test_identities():
    image = blob_image()
    for pair in (rotate_pair(make_pair(image), 0.0), tilt_pair(make_pair(image), 1.0, 33.0)):
        assert (pair.image1 == image).all() and (pair.warp1 == np.eye(3)).all()


def test_composes_with_an_existing_warp1():
    image = blob_image()
    twice = rotate_pair(rotate_pair(make_pair(image), 90), 90)
    once = rotate_pair(make_pair(image), 180)
    assert (twice.image1 == once.image1).all() and twice.warp1 == pytest.approx(once.warp1)
    assert twice.group == "rot 90"
    # a pair already showing a rotated image 1: the tilt applies on top, warp1 still maps original pixels
    rotated = rotate_pair(make_pair(image), 30.0)
    tilted = tilt_pair(rotated, 2.0, 60.0)
    expected = apply_homography(tilted.warp1, BLOBS)
    assert np.abs(centroids(tilted.image1, expected) - expected).max() < 0.1
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    shifted = rotate_pair(make_pair(image, warp1=shift), 90)
    assert shifted.warp1 == pytest.approx(rotate_pair(make_pair(image), 90).warp1 @ shift)


def all_variants(pairs: list[EvalPair], kind, config: StressConfig | None = None) -> list[EvalPair]:
    return [variant for index, pair in enumerate(pairs) for variant in stress_variants(pair, index, kind, config)]


def test_stress_variants_cover_every_setting_and_repeat():
    pairs = [make_pair(blob_image(), name) for name in ("a", "b", "c")]
    assert all_variants(pairs, None) == pairs  # no stress: the pairs themselves
    rotated = all_variants(pairs, "rotation")
    assert len(rotated) == 3 * 8 and [p.group for p in rotated[:8]] == [f"rot {a}" for a in range(0, 360, 45)]
    config = StressConfig(tilts=(1.0, 4.0), seed=3)
    tilted = all_variants(pairs, "tilt", config)
    again = all_variants(pairs, "tilt", config)
    assert [p.name for p in tilted] == [p.name for p in again]
    assert all((p.image1 == q.image1).all() and (p.warp1 == q.warp1).all() for p, q in zip(tilted, again))
    directions = [p.name.split(" dir ")[1] for p in tilted]
    assert directions[0] == directions[1] and len(set(directions)) == 3  # one direction per pair
    other_seed = all_variants(pairs, "tilt", StressConfig(tilts=(4.0,), seed=4))
    assert [p.name for p in other_seed] != [p.name for p in tilted[1::2]]
    with pytest.raises(ValueError, match="stress='shear'"):
        list(stress_variants(pairs[0], 0, "shear"))
    with pytest.raises(ValueError):
        tilt_pair(pairs[0], 0.5, 0.0)


@pytest.mark.parametrize(("field", "value", "named"), [("angles", ["abc"], "finite"), ("angles", 45, "list"),
                                                       ("tilts", [0.5], ">= 1"), ("seed", "abc", "whole number")])
def test_stress_config_names_a_wrong_field(field, value, named):
    with pytest.raises(ValueError, match=rf"^{field} must be .*{named}"):
        StressConfig(**{field: value})
    assert StressConfig(angles=[0, 90]).angles == (0.0, 90.0)  # a YAML list of ints: a tuple of floats
