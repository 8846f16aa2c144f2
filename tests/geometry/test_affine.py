"""Affine views (geometry/affine.py): exact maps, the transition tilt against Morel & Yu's closed form."""

import numpy as np
import pytest

from geometry.affine import tilt_linear, tilt_view, transition_tilt


def test_a_tilt_compresses_along_its_direction_only():
    direction = np.radians(30.0)
    along = np.array([np.cos(direction), -np.sin(direction)])  # y down: counter-clockwise as displayed
    across = np.array([along[1], -along[0]])
    linear = tilt_linear(4.0, 30.0)
    np.testing.assert_allclose(linear @ along, along / 4, atol=1e-15)
    np.testing.assert_allclose(linear @ across, across, atol=1e-15)


@pytest.mark.parametrize(("t", "s", "delta_deg"), [(2.0, 1.0, 0.0), (4.0, 2.0, 30.0), (8.0, 2.0, 90.0),
                                                   (3.0, 5.0, 50.0)])
def test_transition_tilt_is_morel_and_yus_closed_form(t, s, delta_deg):
    # ASIFT (SIAM J. Imaging Sciences 2009): tau + 1/tau = (t/s + s/t) cos^2 d + (t s + 1/(t s)) sin^2 d
    cos2, sin2 = np.cos(np.radians(delta_deg)) ** 2, np.sin(np.radians(delta_deg)) ** 2
    value = (t / s + s / t) * cos2 + (t * s + 1 / (t * s)) * sin2
    expected = (value + np.sqrt(value**2 - 4)) / 2
    measured = transition_tilt(tilt_linear(s, 10.0), tilt_linear(t, 10.0 + delta_deg))
    assert measured == pytest.approx(expected, rel=1e-12)


def test_a_view_holds_the_whole_image_and_its_warp_maps_pixels_exactly():
    image = np.zeros((60, 80), np.uint8)
    image[20, 50] = 255  # one bright pixel
    view, warp = tilt_view(image, 3.0, 0.0)  # compression along x
    assert view.shape == (60, 27)  # ceil(80 / 3) columns
    expected = warp @ np.array([50.0, 20.0, 1.0])
    peak = np.unravel_index(np.argmax(view), view.shape)
    assert abs(peak[1] - expected[0]) <= 0.5 and peak[0] == expected[1]
    centred, centred_warp = tilt_view(image, 3.0, 0.0, canvas=image.shape)
    assert centred.shape == image.shape
    np.testing.assert_allclose(centred_warp @ [39.5, 29.5, 1.0], [39.5, 29.5, 1.0])  # the centre stays


def test_a_tilt_below_one_is_refused():
    with pytest.raises(ValueError, match="tilt must be >= 1"):
        tilt_linear(0.5, 0.0)
