"""Pictures: the overlay through a known homography, the panorama canvas, epipolar errors of exact and displaced
matches, the correct/incorrect colour scale and figures as RGB arrays."""

import cv2
import numpy as np
import pytest
from matplotlib.colors import Normalize

from data.synthetic.texture import make_texture
from evaluation.metrics import epipolar_errors
from evaluation.plots import (
    ERROR_CMAP,
    epipolar_matches_figure,
    figure_to_rgb,
    matches_figure,
    panorama,
    scored_matches_figure,
    warp_footprint,
    warp_overlay,
    write_rgb,
)
from geometry.warp import warp_image

HEIGHT, WIDTH = 120, 160
# rotation, shear and perspective; image 0's left and bottom edges land outside image 1's frame
H_TRUE = np.array([[1.0, -0.15, -10.0], [0.12, 1.05, 5.0], [6e-4, 4e-4, 1.0]])


def translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    image0 = make_texture(HEIGHT, WIDTH, seed=4)
    return image0, warp_image(image0, H_TRUE)


# ----------------------------------------------------------------------------------------------- overlay


@pytest.mark.parametrize("style", ["blend", "checkerboard"])
def test_overlay_through_the_true_homography_is_image1_where_defined(pair, style):
    image0, image1 = pair
    overlay = warp_overlay(image0, image1, H_TRUE, style=style, tile=8)
    inside = warp_footprint(image0.shape, H_TRUE, image1.shape)
    assert overlay.shape == (HEIGHT, WIDTH, 3) and overlay.dtype == np.uint8
    assert 0.3 < inside.mean() < 0.95  # part of image 1 lies outside image 0's footprint
    gray1 = np.repeat(image1[..., None], 3, axis=-1)
    np.testing.assert_array_equal(overlay[inside], gray1[inside])
    np.testing.assert_array_equal(overlay[~inside], gray1[~inside] // 2)


@pytest.mark.parametrize("style", ["blend", "checkerboard"])
def test_overlay_through_a_wrong_homography_shows_it(pair, style):
    image0, image1 = pair
    overlay = warp_overlay(image0, image1, translation(4, 0) @ H_TRUE, style=style, tile=8).astype(int)
    inside = warp_footprint(image0.shape, H_TRUE, image1.shape)
    assert np.abs(overlay[inside] - image1[inside][:, None]).mean() > 5


def test_overlay_rejects_a_bad_homography_or_style(pair):
    with pytest.raises(ValueError, match="invertible"):
        warp_overlay(*pair, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="style"):
        warp_overlay(*pair, H_TRUE, style="stripes")


def test_footprint_is_where_the_warp_reads_inside_image0():
    inside = warp_footprint((10, 20), translation(5.0, 3.0), (20, 40))
    expected = np.zeros((20, 40), bool)
    expected[3:13, 5:25] = True
    np.testing.assert_array_equal(inside, expected)


# ----------------------------------------------------------------------------------------------- panorama


def test_panorama_holds_both_images():
    """image0 shifted left and up of image1: the canvas spans both, each image copied unchanged outside the
    overlap, the two averaged inside it."""
    image0 = make_texture(60, 80, seed=5)
    image1 = make_texture(50, 70, seed=6)
    canvas = panorama(image0, image1, translation(-30, -20))
    assert canvas.shape == (20 + 50, 30 + 70, 3)
    canvas = canvas[..., 0].astype(int)
    image1_on_canvas = np.zeros_like(canvas, bool)
    image1_on_canvas[20:, 30:] = True
    image0_on_canvas = np.zeros_like(canvas, bool)
    image0_on_canvas[:60, :80] = True
    np.testing.assert_array_equal(canvas[:60, :30], image0[:, :30])
    np.testing.assert_array_equal(canvas[60:, 30:], image1[40:])
    overlap = (image0[20:, 30:].astype(int) + image1[:40, :50]) / 2
    assert np.abs(canvas[20:60, 30:80] - overlap).max() <= 0.5
    assert (canvas[~image0_on_canvas & ~image1_on_canvas] == 0).all()


def test_panorama_through_the_true_homography_keeps_image1(pair):
    """Warped image 0 equals image 1 on its footprint, so their average does too."""
    image0, image1 = pair
    canvas = panorama(image0, image1, H_TRUE)[..., 0]
    corners = np.array([[0, 0, 1], [WIDTH - 1, 0, 1], [0, HEIGHT - 1, 1], [WIDTH - 1, HEIGHT - 1, 1]]) @ H_TRUE.T
    low = np.floor(np.minimum((corners[:, :2] / corners[:, 2:]).min(0), 0)).astype(int)
    assert low[0] < 0 and canvas.shape[0] > HEIGHT and canvas.shape[1] > WIDTH  # image 0 sticks out left and down
    np.testing.assert_array_equal(canvas[-low[1]:-low[1] + HEIGHT, -low[0]:-low[0] + WIDTH], image1)


def test_panorama_refuses_homographies_that_blow_up(pair):
    with pytest.raises(ValueError, match="line at infinity"):
        panorama(*pair, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.01, 0.0, 1.0]]))  # w < 0 at x > 100
    with pytest.raises(ValueError, match="times the larger image"):
        panorama(*pair, np.diag([10.0, 10.0, 1.0]))


def test_write_rgb_keeps_the_colours(tmp_path):
    picture = np.zeros((4, 5, 3), np.uint8)
    picture[..., 0] = 200  # red
    write_rgb(tmp_path / "deeper" / "red.png", picture)
    bgr = cv2.imread(str(tmp_path / "deeper" / "red.png"))
    assert (bgr[..., 2] == 200).all() and (bgr[..., :2] == 0).all()
    with pytest.raises(OSError):
        write_rgb(tmp_path / "red.unknown", picture)


# ----------------------------------------------------------------------------------------------- epipolar errors


def stereo_matches(offset_px: np.ndarray):
    """Cameras 0 and 1 one unit apart along x (K: focal 500 px, centre (160, 120)): true matches of 3-D points,
    with the image-1 points then moved down by `offset_px` (N,)."""
    K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[0, 3] = -1.0  # camera 1 sits at x = +1 in camera 0's frame
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-1, 1, (len(offset_px), 2)), rng.uniform(4, 8, len(offset_px))]
    def project(X):
        return (X @ K.T)[:, :2] / X[:, 2:]
    kpts0 = project(points)
    kpts1 = project(points + T[:3, 3]) + np.c_[np.zeros_like(offset_px), offset_px]
    return kpts0, kpts1, K, T


def test_epipolar_errors_of_exact_and_displaced_matches():
    """The epipolar lines of a sideways move are horizontal: a match d px off vertically lies d / f from both
    lines in normalized units, so its squared symmetric distance is 2 (d / f)^2; sliding along x costs nothing."""
    offsets = np.array([0.0, 0.0, 1.0, -2.0, 5.0])
    kpts0, kpts1, K, T = stereo_matches(offsets)
    errors = epipolar_errors(kpts0, kpts1, K, K, T)
    np.testing.assert_allclose(errors, 2 * (offsets / 500.0) ** 2, rtol=1e-9, atol=1e-20)
    slid = kpts1 + [[7.0, 0.0]]
    np.testing.assert_allclose(epipolar_errors(kpts0, slid, K, K, T), errors, rtol=1e-9, atol=1e-20)


def test_error_colours_jump_at_the_threshold():
    threshold = 1e-4
    norm = Normalize(0.0, 2 * threshold)
    below, above = ERROR_CMAP(norm(0.99 * threshold)), ERROR_CMAP(norm(1.01 * threshold))
    assert below[1] > below[0]  # green over red: correct
    assert above[0] > above[1] + 0.3  # red over green: incorrect
    assert ERROR_CMAP(norm(0.0))[1] > 0.5 and ERROR_CMAP(norm(1.0))[0] > 0.8


def test_epipolar_figure_reports_precision_and_renders_to_rgb():
    offsets = np.array([0.0, 0.5, 3.0, 8.0])  # 2 (d / 500)^2 against 1e-4: d < 3.5 px is correct
    kpts0, kpts1, K, T = stereo_matches(offsets)
    image = make_texture(240, 320, seed=0)
    figure = epipolar_matches_figure(image, image, kpts0, kpts1, K, K, T, threshold=1e-4, title="pair")
    assert figure.axes[0].get_title() == "pair\n3/4 correct (epipolar error < 0.0001)"
    rgb = figure_to_rgb(figure, dpi=50)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[1] == 12 * 50  # the 12-inch-wide figure at 50 dpi


def test_scored_figure_colours_by_error_with_a_threshold_else_by_confidence():
    offsets = np.array([0.0, 0.5, 3.0, 8.0])
    kpts0, kpts1, K, T = stereo_matches(offsets)
    image = make_texture(240, 320, seed=0)
    errors = epipolar_errors(kpts0, kpts1, K, K, T)
    by_error = scored_matches_figure(image, image, kpts0, kpts1, "pair", errors=errors, threshold=1e-4,
                                     confidence=np.ones(4))
    assert by_error.axes[0].get_title() == "pair\n3/4 correct (epipolar error < 0.0001)"
    assert by_error.axes[1].get_ylabel() == "symmetric epipolar error"  # the colour bar
    for given in ({"errors": errors}, {"threshold": 1e-4}, {}):  # no threshold, or no errors: by confidence
        by_confidence = scored_matches_figure(image, image, kpts0, kpts1, "pair", confidence=np.ones(4), **given)
        assert by_confidence.axes[0].get_title() == "pair" and by_confidence.axes[1].get_ylabel() == "confidence"
    with pytest.raises(ValueError, match="errors with a threshold, or by confidence"):
        scored_matches_figure(image, image, kpts0, kpts1, "pair", errors=errors)


def test_matches_figure_checks_its_inputs():
    image = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="one entry per match"):
        matches_figure(image, image, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(2))
    figure = matches_figure(image, image, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
    assert figure_to_rgb(figure).shape[2] == 3
