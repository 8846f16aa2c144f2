"""Images as the matchers take them: decoded from a file (EXIF orientation applied), or converted from what
users hold (colour or gray numpy arrays, uint8 or float, torch tensors) to (H, W) uint8 grayscale."""

from pathlib import Path

import cv2
import numpy as np
import torch


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


def as_grayscale(image, name: str = "image") -> np.ndarray:
    """`image` as the (H, W) uint8 grayscale array matchers take. `image` may be a path (read with
    `read_grayscale`), a numpy array (H, W), (H, W, 1) or (H, W, 3) RGB, uint8 or float in [0, 1], or a torch
    tensor (H, W), (C, H, W) or (1, C, H, W) with C 1 or 3 (RGB), uint8 or float in [0, 1], as torchvision and
    kornia hold images. Colour becomes gray with ITU-R BT.601's weights (OpenCV's, as `read_grayscale`); float
    becomes uint8 by rounding value x 255. ValueError naming `name` for anything else; FileNotFoundError for a
    missing file."""
    if isinstance(image, (str, Path)):
        return read_grayscale(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dim() == 3 and image.shape[0] in (1, 3):  # channels first -> last
            image = image.permute(1, 2, 0)
        image = image.numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a path, a numpy array or a torch tensor, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        raise ValueError(f"{name} must be an (H, W) gray or (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype.kind == "f":
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError(f"{name}: a float image must hold finite values in [0, 1] (an 8-bit image divided by "
                             f"255), found values outside it")
        image = np.round(image * 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got {image.dtype}")
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)
