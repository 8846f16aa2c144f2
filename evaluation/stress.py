"""Rotation and affine-tilt stress tests: any benchmark pair with its image 1 rotated or tilted.

Only the image shown to the matcher changes. `EvalPair.warp1` records the map from original image-1 pixels
to the shown pixels, so the ground truth stays in the original frames and the harness maps the matches back
before scoring. The shown image is placed on the smallest canvas that holds all of it (nothing is cropped;
the new area is black), with the centre of the image at the centre of the canvas.

Angles are counter-clockwise as the image is displayed (x right, y down), like np.rot90 and
cv2.getRotationMatrix2D.
"""

import math
import numbers
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np

from data.pairs import EvalPair
from geometry.affine import MAX_TILT, centred_map, resample, tilt_view
from utils.values import SEED_MAX

StressKind = Literal["rotation", "tilt"]
STRESS_KINDS = get_args(StressKind)


@dataclass
class StressConfig:
    """angles: rotations in degrees; every 45: the multiples of 90 are lossless, the others also resample.
    tilts: t = 1 / cos(latitude) of the simulated view, latitudes 0, 60, 75.5, 80.4 and 82.8 degrees.
    seed: draws each pair's tilt direction.
    A value of the wrong kind is a ValueError whose message starts with the field's name.

    The fields are typed loosely (Any) because evaluate.py's schema (evaluation/config.py) holds this class:
    OmegaConf would refuse `stress_config.seed=abc` with only "could not be converted to Integer", before the
    check here says what is wanted. After __post_init__ angles and tilts are tuples of floats, seed an int."""

    angles: tuple[Any, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
    tilts: tuple[Any, ...] = (1.0, 2.0, 4.0, 6.0, 8.0)
    seed: Any = 0

    def __post_init__(self):
        self.angles = _finite_numbers(self.angles, "angles", "(degrees), e.g. [0,90,180]")
        tilt_range = (f">= 1 and <= {MAX_TILT:g} (t = 1 / cos(latitude): no latitude gives less; 1 is the view itself;"
                      f" {MAX_TILT:g} a latitude of 89 degrees)")
        self.tilts = _finite_numbers(self.tilts, "tilts", tilt_range, minimum=1.0, maximum=MAX_TILT)
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool) or not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be a whole number in [0, {SEED_MAX}] (NumPy's seeds), got {self.seed!r}")


def _finite_numbers(values, name: str, expected: str, minimum: float = -math.inf,
                    maximum: float = math.inf) -> tuple[float, ...]:
    """`values` (a list or tuple of finite numbers in [minimum, maximum]) as floats; ValueError starting with
    `name` and saying what is `expected` otherwise."""
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and minimum <= value <= maximum for value in values):
        raise ValueError(f"{name} must be a list of finite numbers {expected}, got {values!r}")
    return tuple(float(value) for value in values)


def rotate_pair(pair: EvalPair, angle_deg: float) -> EvalPair:
    """The pair with image1 rotated by angle_deg (counter-clockwise as displayed) about its centre.

    The canvas grows to hold the whole rotated image; multiples of 90 degrees are exact (np.rot90), other
    angles are resampled bilinearly. warp1 becomes rotation @ pair.warp1 (original -> shown pixels).
    The group becomes f"rot {angle_deg:g}", which the name gains too.
    """
    quarter_turns = angle_deg / 90.0
    exact = quarter_turns == round(quarter_turns)
    if exact:
        k = int(round(quarter_turns)) % 4
        cos, sin = (1.0, 0.0, -1.0, 0.0)[k], (0.0, 1.0, 0.0, -1.0)[k]  # exact values, so an exact canvas
    else:
        cos, sin = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    linear = np.array([[cos, sin], [-sin, cos]])  # counter-clockwise on screen, with y pointing down
    warp, shape = centred_map(linear, pair.image1.shape[:2])
    image1 = np.ascontiguousarray(np.rot90(pair.image1, k)) if exact else resample(pair.image1, warp, shape)
    return _shown(pair, image1, warp, f"rot {angle_deg:g}")


def tilt_pair(pair: EvalPair, tilt: float, direction_deg: float) -> EvalPair:
    """The pair with image1 compressed by the factor `tilt` (>= 1) along the direction direction_deg
    (counter-clockwise from +x as displayed), the view of the image plane from latitude arccos(1 / tilt).

    As ASIFT simulates a tilt: a Gaussian blur of sigma = 0.8 sqrt(tilt^2 - 1) original pixels along the
    direction, then subsampling by `tilt` along it (bilinear). Unlike ASIFT there is no in-plane rotation:
    the image keeps its orientation, so rotation and tilt are stressed separately. tilt 1 is the original.
    warp1 becomes compression @ pair.warp1. The group becomes f"tilt {tilt:g}", which the name gains with
    the direction.
    """
    image1, warp = tilt_view(pair.image1, tilt, direction_deg)
    shown = _shown(pair, image1, warp, f"tilt {tilt:g}")
    return replace(shown, name=f"{shown.name} dir {direction_deg:.1f}")


def stress_variants(pair: EvalPair, index: int, kind: StressKind | None,
                    config: StressConfig | None = None) -> Iterator[EvalPair]:
    """The variants of the benchmark's `index`-th pair that a stress test scores: the pair itself (kind None),
    or the pair at every angle of config.angles (kind "rotation") or every tilt of config.tilts (kind "tilt").
    A pair's tilt direction, uniform in [0, 180) degrees, is the same for all its tilts (so a tilt curve
    compares like with like) and depends only on config.seed, `index` and the pair's name: the same run
    repeats exactly."""
    config = config or StressConfig()
    if kind is None:
        yield pair
    elif kind == "rotation":
        yield from (rotate_pair(pair, angle) for angle in config.angles)
    elif kind == "tilt":
        direction = tilt_direction(config.seed, index, pair.name)
        yield from (tilt_pair(pair, tilt, direction) for tilt in config.tilts)
    else:
        raise ValueError(f"stress={kind!r} is not one of None, {', '.join(map(repr, STRESS_KINDS))}")


def tilt_direction(seed: int, index: int, name: str) -> float:
    """A direction in [0, 180) degrees drawn from (seed, index, name), stable across runs and machines
    (crc32, not Python's salted hash)."""
    return float(np.random.default_rng([seed, index, zlib.crc32(name.encode())]).uniform(0.0, 180.0))


def _shown(pair: EvalPair, image1: np.ndarray, warp: np.ndarray, label: str) -> EvalPair:
    """The pair showing image1, with warp (3, 3, current shown image1 -> new) composed onto warp1."""
    previous = np.eye(3) if pair.warp1 is None else np.asarray(pair.warp1, np.float64)
    return replace(pair, name=f"{pair.name} {label}", image1=image1, warp1=warp @ previous, group=label)
