"""The resize rule (utils/resize.py): sizes with exact answers, and the images and factors it gives."""

import numpy as np

from data.synthetic.texture import make_texture
from utils.resize import resize_longer_side, resized, resized_size, scaled_side


def test_sides_are_rounded_then_floored_to_the_stride_and_never_vanish():
    assert scaled_side(1200, 840 / 1600) == 630
    assert scaled_side(1200, 840 / 1600, 8) == 624
    assert scaled_side(5, 0.1) == 1 and scaled_side(5, 0.1, 8) == 8


def test_longer_side_rule_keeps_the_aspect_ratio():
    assert resized_size(1600, 1200, 840) == (840, 630)
    assert resized_size(1600, 1200, 840, 8) == (840, 624)
    assert resized_size(150, 100, 64) == (64, 43)  # 42.7 rounds up


def test_resize_longer_side_returns_the_factors_back_to_original_pixels():
    image = make_texture(100, 150, seed=0)
    small, scale = resize_longer_side(image, 64)
    assert small.shape == (43, 64) and small.dtype == np.uint8
    assert scale == (150 / 64, 100 / 43)
    same, scale = resize_longer_side(image, 0)
    assert same is image and scale == (1.0, 1.0)


def test_resized_by_factors_reports_the_factors_after_rounding():
    image = make_texture(100, 150, seed=0)
    small, factors = resized(image, (0.5, 0.3))
    assert small.shape == (30, 75) and factors == (75 / 150, 30 / 100)
    large, factors = resized(np.full((4, 6), 7, np.uint8), (2.0, 2.0))
    assert large.shape == (8, 12) and (large == 7).all() and factors == (2.0, 2.0)  # bilinear keeps flat flat
    assert resized(image, (1.0, 1.0))[0] is image
