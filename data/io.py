"""Reading images and depth maps, with errors that name the file."""

from pathlib import Path

import cv2
import numpy as np


def read_grayscale(path: str | Path) -> np.ndarray:
    """(H, W) uint8 grayscale image at `path`; FileNotFoundError or ValueError naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"image {path} is not a file")
    # OpenCV logs its own warning for a truncated file; the error below says it on the one line users read
    log_level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        data = np.fromfile(path, np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    except (OSError, cv2.error) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    finally:
        cv2.utils.logging.setLogLevel(log_level)
    if image is None:
        raise ValueError(f"cannot decode image {path} (corrupt, empty or not an image OpenCV reads)")
    return image


def read_depth_h5(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth of a MegaDepth `.h5` file (dataset `depth`); unknown depth, 0 in MegaDepth, is 0
    here too, and NaN or negative values, which no valid map holds, are read as unknown as well."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth map not found: {path}")
    try:
        with h5py.File(path, "r") as file:
            depth = np.asarray(file["depth"], dtype=np.float32)
    except (OSError, KeyError) as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from None
    if depth.ndim != 2:
        raise ValueError(f"depth map {path} has shape {depth.shape}, expected (H, W)")
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth
