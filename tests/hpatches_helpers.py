"""A tiny release in HPatches' layout: textured sequences with known homographies."""

from pathlib import Path

import cv2
import numpy as np

from data.synthetic.texture import make_texture
from geometry.warp import warp_image


def write_sequence(root: Path, name: str, seed: int) -> list[np.ndarray]:
    """Sequence `name` in HPatches' layout (colour 1.ppm..6.ppm, H_1_2..H_1_6); returns its homographies."""
    folder = root / name
    folder.mkdir(parents=True)
    reference = make_texture(SIZE[1], SIZE[0], seed=seed)
    homographies = sequence_homographies(seed, name.startswith("v_"))
    cv2.imwrite(str(folder / "1.ppm"), cv2.cvtColor(reference, cv2.COLOR_GRAY2BGR))
    for k, H in enumerate(homographies, start=2):
        cv2.imwrite(str(folder / f"{k}.ppm"), cv2.cvtColor(warp_image(reference, H), cv2.COLOR_GRAY2BGR))
        np.savetxt(folder / f"H_1_{k}", H)
    return homographies


SEQUENCES = ("i_ajuntament", "i_dc", "v_bird", "v_talent")


SIZE = (80, 60)  # (width, height) of the tiny images


def sequence_homographies(seed: int, viewpoint: bool) -> list[np.ndarray]:
    """H_1_k, k = 2..6: identity for illumination sequences (as in HPatches), random mild warps otherwise."""
    rng = np.random.default_rng(seed)
    homographies = []
    for _ in range(5):
        H = np.eye(3)
        if viewpoint:
            H[:2, :2] += rng.uniform(-0.1, 0.1, (2, 2))
            H[:2, 2] = rng.uniform(-5, 5, 2)
            H[2, :2] = rng.uniform(-1e-4, 1e-4, 2)
        homographies.append(H)
    return homographies
