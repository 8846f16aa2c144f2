"""Pictures for people to look at: matches coloured by confidence or by epipolar error (match.py's --plot, the
evaluation reports, training validation figures), and a homography's overlay and panorama (match.py's
--overlay, --panorama).

Functions take numpy arrays. Figures come back as matplotlib Figures, as RGB uint8 arrays (`figure_to_rgb`,
for loggers) or are written to a file.
"""

from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from .metrics import epipolar_errors

# Errors below the threshold run from green to yellow-green, errors above from orange to red: the colour
# jumps where a match turns incorrect. Used over the range [0, 2 threshold].
ERROR_CMAP = ListedColormap(np.concatenate([
    np.linspace([0.0, 0.6, 0.0], [0.75, 0.9, 0.0], 128),
    np.linspace([1.0, 0.55, 0.0], [0.85, 0.0, 0.0], 128),
]), name="correct_incorrect")


# ----------------------------------------------------------------------------------------------- matches


def matches_figure(
    image0: np.ndarray,
    image1: np.ndarray,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    color_values: np.ndarray,
    title: str = "",
    color_label: str = "confidence",
    value_range: tuple[float, float] | None = None,
    cmap: str | ListedColormap = "RdYlGn",
    threshold: float | None = None,
) -> Figure:
    """image0 and image1 side by side with a line per match, coloured by `color_values`.

    image0, image1: (H, W) grayscale or (H, W, 3) RGB, uint8 or float in [0, 1].
    kpts0, kpts1: (N, 2) (x, y) pixel coordinates in image0 / image1.
    color_values: (N,) one value per match (confidence, error, ...), named `color_label` on the colour bar.
    value_range: (low, high) of the colour scale; None spans the values given. The default colour map runs
    from red (low) to green (high), visible on gray images; pass cmap="RdYlGn_r" when low is good (errors).
    threshold: a value marked by a line on the colour bar (the correct/incorrect boundary of an error).
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
    norm = Normalize(low, high)
    colormap = colormaps[cmap] if isinstance(cmap, str) else cmap

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
    colorbar = figure.colorbar(ScalarMappable(norm, colormap), ax=axes, label=color_label, fraction=0.025, pad=0.01)
    if threshold is not None:
        colorbar.ax.axhline(threshold, color="black", linewidth=1.5)
    return figure


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
    """Draw the `matches_figure` of these arguments to `path`; the format follows its suffix (png, pdf, svg,
    ...) and parent folders are created."""
    figure = matches_figure(image0, image1, kpts0, kpts1, color_values, title, color_label, value_range, cmap)
    save_figure(figure, path)


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write `figure` to `path` (format from the suffix), at about one figure pixel per image pixel, bounded
    so that huge images give a file of reasonable size; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width_inches = figure.get_size_inches()[0]
    figure.savefig(path, dpi=min(300, max(100, _canvas_width(figure) / width_inches)))


def curves_figure(x: list[float], curves: dict[str, list[float]], xlabel: str, ylabel: str, title: str) -> Figure:
    """One line per entry of `curves` (label -> y at each x), markers at the measured points: a stress test's
    AUC against rotation or tilt, one curve per matcher."""
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for label, values in curves.items():
        axes.plot(x, values, marker="o", label=label)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title, xticks=x)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def figure_to_rgb(figure: Figure, dpi: float = 100) -> np.ndarray:
    """`figure` rendered at `dpi` (which it keeps) to an (H, W, 3) uint8 RGB array (what image loggers take)."""
    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def scored_matches_figure(
    image0: np.ndarray,
    image1: np.ndarray,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    title: str = "",
    errors: np.ndarray | None = None,
    threshold: float | None = None,
    confidence: np.ndarray | None = None,
) -> Figure:
    """The matches of a scored pair. With `errors` (N,) and `threshold`: coloured by the error, green below the
    threshold (correct), orange to red above (incorrect, red from twice the threshold), and the title gains the
    count of correct matches. Otherwise coloured by `confidence` (N,) in [0, 1], red (low) to green (high).

    Arguments as `matches_figure`; errors and threshold in one unit, e.g. the squared normalized symmetric
    epipolar error of `epipolar_errors` with the benchmark's threshold. ValueError when neither colouring is
    given.
    """
    if errors is not None and threshold is not None:
        errors = np.asarray(errors, np.float64).reshape(-1)
        summary = f"{int((errors < threshold).sum())}/{len(errors)} correct (epipolar error < {threshold:g})"
        return matches_figure(
            image0, image1, kpts0, kpts1, errors, f"{title}\n{summary}" if title else summary,
            color_label="symmetric epipolar error", value_range=(0.0, 2 * threshold), cmap=ERROR_CMAP,
            threshold=threshold,
        )
    if confidence is None:
        raise ValueError("scored_matches_figure colours by errors with a threshold, or by confidence: give either")
    return matches_figure(image0, image1, kpts0, kpts1, confidence, title, value_range=(0.0, 1.0))


def epipolar_matches_figure(
    image0: np.ndarray,
    image1: np.ndarray,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    T_0to1: np.ndarray,
    threshold: float,
    title: str = "",
) -> Figure:
    """The `scored_matches_figure` of matches against a true pose: coloured by their `epipolar_errors`.
    Arguments as `epipolar_errors`; threshold in squared normalized units."""
    errors = epipolar_errors(kpts0, kpts1, K0, K1, T_0to1)
    return scored_matches_figure(image0, image1, kpts0, kpts1, title, errors=errors, threshold=threshold)


# ----------------------------------------------------------------------------------------------- homography


def warp_overlay(
    image0: np.ndarray, image1: np.ndarray, H_0to1: np.ndarray, style: str = "blend", tile: int = 32
) -> np.ndarray:
    """Image 0 warped through `H_0to1` onto image 1: an (H1, W1, 3) uint8 RGB picture in image 1's frame.

    image0, image1: (H, W) uint8 grayscale (RGB is converted); H_0to1: (3, 3) image-0 pixels -> image-1 pixels.
    style "blend": warped image 0 in magenta, image 1 in green, so aligned structure looks gray and
    misalignment shows as coloured fringes; "checkerboard": `tile`-pixel squares alternate between the two,
    so edges break at square borders when misaligned. Outside image 0's footprint image 1 is shown in gray at
    half brightness.
    """
    gray0, gray1 = _as_gray(image0), _as_gray(image1)
    H = _check_homography(H_0to1)
    height, width = gray1.shape
    warped = cv2.warpPerspective(gray0, H, (width, height), flags=cv2.INTER_LINEAR)
    inside = warp_footprint(gray0.shape, H, (height, width))
    if style == "blend":
        picture = np.stack([warped, gray1, warped], axis=-1)
    elif style == "checkerboard":
        rows, cols = np.indices((height, width)) // max(1, tile)
        picture = np.repeat(np.where((rows + cols) % 2 == 0, warped, gray1)[..., None], 3, axis=-1)
    else:
        raise ValueError(f"style must be 'blend' or 'checkerboard', got {style!r}")
    outside = np.repeat((gray1 // 2)[..., None], 3, axis=-1)
    return np.where(inside[..., None], picture, outside)


def warp_footprint(shape0: tuple[int, int], H_0to1: np.ndarray, shape1: tuple[int, int]) -> np.ndarray:
    """(H1, W1) bool: pixels of a (H1, W1) = `shape1` frame whose bilinear sample through H_0to1^-1 lies wholly
    inside an image of `shape0` = (H0, W0), i.e. where a warp of that image is defined."""
    ones = np.ones(shape0, np.float32)
    return cv2.warpPerspective(ones, np.asarray(H_0to1, np.float64), shape1[::-1], flags=cv2.INTER_LINEAR) > 0.999


def panorama(image0: np.ndarray, image1: np.ndarray, H_0to1: np.ndarray, max_scale: float = 4.0) -> np.ndarray:
    """Both images on one canvas in image 1's frame, image 0 warped through `H_0to1`: (Hc, Wc, 3) uint8 RGB.

    The canvas is the smallest that holds image 1 and warped image 0; image 1 sits at an integer offset, copied
    unresampled; where the two overlap they are averaged (misalignment shows as ghosting); black elsewhere.
    ValueError when H_0to1 sends a corner of image 0 through the line at infinity or the canvas would be more
    than `max_scale` times the larger image on a side (a wrong homography).
    """
    gray0, gray1 = _as_gray(image0), _as_gray(image1)
    H = _check_homography(H_0to1)
    (h0, w0), (h1, w1) = gray0.shape, gray1.shape
    corners = np.array([[0, 0, 1], [w0 - 1, 0, 1], [0, h0 - 1, 1], [w0 - 1, h0 - 1, 1]], np.float64) @ H.T
    if (corners[:, 2] <= 0).any():  # w is affine in (x, y): positive at the corners, positive on all image 0
        raise ValueError("the homography sends part of image 0 through the line at infinity: no panorama")
    corners = corners[:, :2] / corners[:, 2:]
    low = np.floor(np.minimum(corners.min(0), 0.0)).astype(int)
    high = np.ceil(np.maximum(corners.max(0), [w1 - 1, h1 - 1])).astype(int)
    width, height = high - low + 1
    limit = max_scale * max(h0, w0, h1, w1)
    if max(width, height) > limit:
        raise ValueError(
            f"the panorama would be {width}x{height} px, more than {max_scale:g} times the larger image: "
            f"the homography stretches image 0 too far"
        )
    shift = np.array([[1.0, 0.0, -low[0]], [0.0, 1.0, -low[1]], [0.0, 0.0, 1.0]])
    layer0 = cv2.warpPerspective(gray0, shift @ H, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
    inside0 = warp_footprint(gray0.shape, shift @ H, (height, width))
    layer1 = np.zeros((height, width), np.float32)
    inside1 = np.zeros((height, width), bool)
    rows, cols = slice(-low[1], -low[1] + h1), slice(-low[0], -low[0] + w1)
    layer1[rows, cols], inside1[rows, cols] = gray1, True
    count = inside0.astype(np.float32) + inside1
    total = np.where(inside0, layer0, 0) + np.where(inside1, layer1, 0)
    canvas = np.where(count > 0, total / np.maximum(count, 1), 0).round().astype(np.uint8)
    return np.repeat(canvas[..., None], 3, axis=-1)


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array to `path` in the format of its suffix (.png, .jpg, ...); parent
    folders are created. OSError when OpenCV cannot write it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    except cv2.error as error:  # no writer for the suffix, among others
        raise OSError(f"cannot write {path}: {error.err}") from None
    if not written:
        raise OSError(f"cannot write {path}")


# ----------------------------------------------------------------------------------------------- helpers


def _check_homography(H: np.ndarray) -> np.ndarray:
    H = np.asarray(H, np.float64)
    if H.shape != (3, 3) or not np.isfinite(H).all() or np.linalg.cond(H) > 1e12:
        raise ValueError(f"H_0to1 must be a finite invertible (3, 3) matrix, got {H.tolist()}")
    return H


def _as_gray(image: np.ndarray) -> np.ndarray:
    rgb = _as_rgb(image)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY) if np.asarray(image).ndim == 3 else rgb[..., 0]


def _canvas_width(figure: Figure) -> float:
    """Pixel width of the widest image drawn in `figure`."""
    return max((im.get_array().shape[1] for axes in figure.axes for im in axes.get_images()), default=1200)


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
