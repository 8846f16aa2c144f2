"""A benchmark of given pairs and a matcher that knows the answer, for the evaluation harness's tests."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from data.pairs import EvalPair
from data.synthetic.texture import make_texture
from evaluation.benchmarks import Benchmark, Resize
from models.matches import Matches


@dataclass
class GivenPairs(Benchmark):
    """A benchmark over pairs built in the test."""

    name: ClassVar[str] = "given"
    given: list[EvalPair] = field(default_factory=list)
    kind: str = "pose"
    resize: Resize = field(default_factory=lambda: Resize(longer_side=640))
    epipolar_threshold: float | None = 1e-4

    def check(self) -> None:
        pass

    def _pairs(self) -> Iterator[EvalPair]:
        return iter(self.given)


def two_view(seed: int = 0) -> tuple[EvalPair, np.ndarray, np.ndarray]:
    """A 1000x750 pair with a known pose and 300 scene points seen by both cameras: (pair, pixels in image 0,
    pixels in image 1), exact."""
    rng = np.random.default_rng(seed)
    K0 = np.array([[800.0, 0, 499.5], [0, 800.0, 374.5], [0, 0, 1]])
    K1 = np.array([[900.0, 0, 510.0], [0, 880.0, 370.0], [0, 0, 1]])
    angle = np.radians(8.0)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    T[:3, 3] = [-0.6, 0.05, 0.1]
    points = np.c_[rng.uniform(-2, 2, 300), rng.uniform(-1.5, 1.5, 300), rng.uniform(4, 9, 300)]
    in1 = points @ T[:3, :3].T + T[:3, 3]
    pixels0 = (points @ K0.T)[:, :2] / points[:, 2:]
    pixels1 = (in1 @ K1.T)[:, :2] / in1[:, 2:]
    image = make_texture(750, 1000, seed=seed)
    pair = EvalPair("exact", image, image.copy(), K0=K0, K1=K1, T_0to1=T, group="g")
    return pair, pixels0, pixels1


class Oracle:
    """Returns the true correspondences in the pixels of the images it is given, inferring the resize from
    their sizes (the original size is known)."""

    name = "oracle"

    def __init__(self, pixels0, pixels1, original_size=(1000, 750)):
        self.pixels0, self.pixels1, self.original_size = pixels0, pixels1, original_size

    def match(self, image0, image1) -> Matches:
        width, height = self.original_size
        scale0 = np.array([image0.shape[1] / width, image0.shape[0] / height])
        scale1 = np.array([image1.shape[1] / width, image1.shape[0] / height])
        return Matches(self.pixels0 * scale0, self.pixels1 * scale1, np.ones(len(self.pixels0)))
