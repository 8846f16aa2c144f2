"""What every matcher returns (`Matches`), the image every matcher takes (`check_grayscale`), and the error of an
image too small for a matcher (`ImageTooSmallError`)."""

from dataclasses import dataclass

import numpy as np

KEYS = ("keypoints0", "keypoints1", "confidence")  # also the names in match.py's files and predictions.h5


@dataclass
class Matches:
    """keypoints0, keypoints1: (N, 2) float (x, y) pixels of the images the matcher was given; confidence: (N,)."""

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.keypoints0)

    def __getitem__(self, key: str) -> np.ndarray:
        """`result["keypoints0"]`, as the fields: the names of match.py's .npz and of predictions.h5."""
        if key not in KEYS:
            raise KeyError(f"{key!r}: a match result holds {', '.join(KEYS)}")
        return getattr(self, key)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in KEYS}


def check_grayscale(image: np.ndarray, name: str) -> None:
    """ValueError naming `name` unless `image` is an (H, W) uint8 grayscale array, what every matcher takes."""
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        shape, dtype = np.shape(image), getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W) uint8 grayscale array, got shape {shape} and dtype {dtype}")


class ImageTooSmallError(ValueError):
    """An image smaller than a matcher can take: `name` ("image0", "image1"), its `shape` (H, W), the
    `matcher` and the `minimum` side in pixels. Every matcher's too-small image is one (LoFTRMatcher's is the
    subclass models.matcher.CoarseCellTooSmallError)."""

    def __init__(self, name: str, shape: tuple[int, ...], matcher: str, minimum: int):
        self.minimum = minimum
        super().__init__(f"{name}: {shape[1]}x{shape[0]} px is smaller than {matcher} takes ({minimum} px on each "
                         f"side)")
