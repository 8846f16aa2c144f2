"""Pictures of matches for people to look at: match.py's --plot and the evaluation reports."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure


def plot_matches(
    image0: np.ndarray,
    image1: np.ndarray,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    color_values: np.ndarray,
    path: str | Path,
    title: str,
    color_label: str = "confidence",
    value_range: tuple[float, float] | None = None,
    cmap: str = "RdYlGn",
) -> None:
    """Draw image0 and image1 side by side with a line per match, coloured by `color_values`, to `path`.

    image0, image1: (H, W) grayscale or (H, W, 3) RGB, uint8 or float in [0, 1].
    kpts0, kpts1: (N, 2) (x, y) pixel coordinates in image0 / image1.
    color_values: (N,) one value per match (confidence, error, ...), named `color_label` on the colour bar.
    value_range: (low, high) of the colour scale; None spans the values given. The default colour map runs
    from red (low) to green (high), visible on gray images; pass cmap="RdYlGn_r" when low is good (errors).
    The format follows the suffix of `path` (png, pdf, svg, ...); parent folders are created.
    """
    for name, image in (("image0", image0), ("image1", image1)):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"{name} must be (H, W) or (H, W, 3), got shape {image.shape}")
    kpts0, kpts1 = np.asarray(kpts0, np.float64), np.asarray(kpts1, np.float64)
    color_values = np.asarray(color_values, np.float64)
    for name, points in (("kpts0", kpts0), ("kpts1", kpts1)):
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {points.shape}")
    if not len(kpts0) == len(kpts1) == color_values.size or color_values.ndim != 1:
        raise ValueError(
            f"kpts0, kpts1 and color_values must hold one entry per match, got shapes "
            f"{kpts0.shape}, {kpts1.shape} and {color_values.shape}"
        )

    gap = max(4, image0.shape[1] // 50)  # white space, so that the two images' borders do not merge
    canvas = _side_by_side(_as_rgb(image0), _as_rgb(image1), gap)
    offset = image0.shape[1] + gap
    low, high = value_range if value_range is not None else _span(color_values)
    norm, colormap = Normalize(low, high), colormaps[cmap]

    height, width = canvas.shape[:2]
    figure = Figure(figsize=(12, 12 * height / width + 0.8), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(canvas)
    order = np.argsort(color_values)  # strongest matches drawn last, on top
    segments = np.stack([kpts0[order], kpts1[order] + [offset, 0]], axis=1)
    colors = colormap(norm(color_values[order]))
    axes.add_collection(LineCollection(segments, colors=colors, linewidths=0.8, alpha=0.8))
    axes.scatter(segments[:, 0, 0], segments[:, 0, 1], s=2, c=colors, linewidths=0)
    axes.scatter(segments[:, 1, 0], segments[:, 1, 1], s=2, c=colors, linewidths=0)
    axes.set_xlim(0, width - 1)
    axes.set_ylim(height - 1, 0)
    axes.set_axis_off()
    axes.set_title(title)
    figure.colorbar(ScalarMappable(norm, colormap), ax=axes, label=color_label, fraction=0.025, pad=0.01)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # about one figure pixel per image pixel, bounded so huge images give a file of reasonable size
    figure.savefig(path, dpi=min(300, max(100, width / 12)))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:  # float images are in [0, 1]
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def _side_by_side(rgb0: np.ndarray, rgb1: np.ndarray, gap: int) -> np.ndarray:
    """Both images `gap` pixels apart on white, top-aligned so pixel rows keep their coordinates."""
    height = max(rgb0.shape[0], rgb1.shape[0])
    canvas = np.full((height, rgb0.shape[1] + gap + rgb1.shape[1], 3), 255, np.uint8)
    canvas[: rgb0.shape[0], : rgb0.shape[1]] = rgb0
    canvas[: rgb1.shape[0], rgb0.shape[1] + gap:] = rgb1
    return canvas


def _span(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)
