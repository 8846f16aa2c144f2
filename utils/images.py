"""Images as the matchers take them: decoded from a file (EXIF orientation applied), or converted from what
users hold (colour or gray numpy arrays, uint8 or float, torch tensors) to (H, W) uint8 grayscale."""

from pathlib import Path

import cv2
import numpy as np


def read_grayscale(path: str | Path, apply_orientation: bool = True) -> np.ndarray:
    """(H, W) uint8 grayscale image at `path`, turned as its EXIF orientation says (as cameras mean it shown;
    every loader reads photos so); `apply_orientation=False`: the pixels as stored. FileNotFoundError or
    ValueError naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"image {path} is not a file")
    # OpenCV logs its own warning for a truncated file; the error below says it on the one line users read
    log_level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        data = np.fromfile(path, np.uint8)
        flags = cv2.IMREAD_GRAYSCALE | (0 if apply_orientation else cv2.IMREAD_IGNORE_ORIENTATION)
        image = cv2.imdecode(data, flags) if data.size else None
    except (OSError, cv2.error) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    finally:
        cv2.utils.logging.setLogLevel(log_level)
    if image is None:
        raise ValueError(f"cannot decode image {path} (corrupt, empty or not an image OpenCV reads)")
    return image
