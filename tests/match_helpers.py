"""match.py's inputs and outputs: images written to disk, warped views of a texture, the matches of an HDF5
file read back, and the share of matches on a known warp."""

from pathlib import Path
from urllib.parse import unquote

import cv2
import h5py
import numpy as np

from data.synthetic.texture import make_texture
from geometry.warp import apply_homography, warp_image


def write_image(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path



def write_views(root: Path, count: int) -> list[tuple[str, str]]:
    """`count` pairs under `root`: view{i}.png, a 200x150 texture, and warped/view{i}.png, its warp by VIEW;
    their names relative to `root`."""
    (root / "warped").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        image = make_texture(150, 200, seed=100 + i)
        write_image(root / f"view{i}.png", image)
        write_image(root / "warped" / f"view{i}.png", warp_image(image, VIEW))
        names.append((f"view{i}.png", f"warped/view{i}.png"))
    return names


def stored(path: Path) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """{(name0, name1): {dataset: array}} of a match.py HDF5 file, names unquoted."""
    with h5py.File(path, "r") as file:
        return {(unquote(key0), unquote(key1)): {key: value[()] for key, value in pair.items()}
                for key0, group in file.items() for key1, pair in group.items()}


def share_on_the_warp(matches, H: np.ndarray, tolerance_px: float = 3.0) -> float:
    """The share of the matches whose keypoint in image 1 lies within `tolerance_px` of where H takes its
    keypoint in image 0."""
    errors = np.linalg.norm(apply_homography(H, np.asarray(matches["keypoints0"], np.float64))
                            - matches["keypoints1"], axis=1)
    return float((errors < tolerance_px).mean())


def tilted_view(height: int, width: int) -> np.ndarray:
    """(3, 3) homography image0 -> image1 pixels: a rotation by 8 degrees and a zoom by 0.9 about the centre,
    with a slight perspective tilt (as --demo's)."""
    to_centre = np.array([[1.0, 0.0, -width / 2], [0.0, 1.0, -height / 2], [0.0, 0.0, 1.0]])
    angle, zoom = np.deg2rad(8.0), 0.9
    about_centre = np.array([[zoom * np.cos(angle), -zoom * np.sin(angle), 0.0],
                             [zoom * np.sin(angle), zoom * np.cos(angle), 0.0], [2e-4, 1e-4, 1.0]])
    return np.linalg.inv(to_centre) @ about_centre @ to_centre


VIEW = tilted_view(150, 200)  # the warp of write_views' pairs
