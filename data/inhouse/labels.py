"""Labelled correspondences: the text/CSV format users write by hand or export from an annotation tool.

One correspondence a line, six fields separated by commas (or spaces/tabs):

    # image0, image1, x0, y0, x1, y1
    hall_01.jpg, hall_02.jpg, 412.5, 230.0, 198.25, 241.75

Image names are relative to the image folder; x, y are pixels of the ORIGINAL images with (0, 0) the centre
of the top-left pixel (x to the right, y down). Blank lines and lines starting with `#` are skipped, and so
is a first line that reads `image0,image1,x0,y0,x1,y1` (a spreadsheet's header). Lines of the same pair
need not be adjacent; a pair written in both orders is one pair.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..untrusted import read_small_text

HEADER = ("image0", "image1", "x0", "y0", "x1", "y1")
# The largest label file read: a line takes ~50 bytes, so a million hand-labelled correspondences, far more than
# any evaluation labels by hand.
MAX_LABEL_BYTES = 64 << 20


class LabelFileError(ValueError):
    """A label file that cannot be read; the message names the file and the line."""


@dataclass
class PairLabels:
    """The labelled correspondences of one pair: (N, 4) x0, y0, x1, y1 in original pixels, and the line of
    the file each came from (to name it in later checks)."""

    points: list[tuple[float, float, float, float]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def array(self) -> np.ndarray:
        return np.asarray(self.points, np.float64).reshape(-1, 4)


def read_labels(path: str | Path) -> dict[tuple[str, str], PairLabels]:
    """The label file at `path` as {(image0, image1): PairLabels}; LabelFileError naming the line otherwise."""
    path = Path(path)
    try:
        text = read_small_text(path, MAX_LABEL_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"label file not found: {path}") from None
    except ValueError as error:
        raise LabelFileError(f"label file {error}") from None
    pairs: dict[tuple[str, str], PairLabels] = {}
    seen_data = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in re.split(r"[,\s]+", line) if f]
        if not seen_data and tuple(f.lower() for f in fields) == HEADER:
            seen_data = True
            continue
        seen_data = True
        where = f"{path} line {number}"
        if len(fields) != 6:
            raise LabelFileError(f"{where}: expected 6 fields (image0, image1, x0, y0, x1, y1), got {len(fields)}: "
                                 f"{raw.strip()!r}")
        name0, name1 = fields[:2]
        if name0 == name1:
            raise LabelFileError(f"{where}: both points are on image {name0}; a correspondence joins two images")
        coordinates = []
        for label, text in zip(HEADER[2:], fields[2:]):
            try:
                value = float(text)
            except ValueError:
                raise LabelFileError(f"{where}: {label} = {text!r} is not a number") from None
            if not math.isfinite(value):
                raise LabelFileError(f"{where}: {label} = {text!r} is not a finite pixel coordinate")
            coordinates.append(value)
        x0, y0, x1, y1 = coordinates
        if (name1, name0) in pairs:  # the pair in the other order: one pair, points swapped
            name0, name1, x0, y0, x1, y1 = name1, name0, x1, y1, x0, y0
        labels = pairs.setdefault((name0, name1), PairLabels())
        labels.points.append((x0, y0, x1, y1))
        labels.lines.append(number)
    if not pairs:
        raise LabelFileError(f"{path}: no correspondences (expected lines 'image0, image1, x0, y0, x1, y1')")
    return pairs


def check_inside(path: str | Path, pair: tuple[str, str], labels: PairLabels, sizes: tuple[tuple[int, int], ...]
                 ) -> None:
    """LabelFileError naming the line of the first point outside its image; sizes: ((W0, H0), (W1, H1))."""
    for (x0, y0, x1, y1), number in zip(labels.points, labels.lines):
        for name, (x, y), (width, height) in zip(pair, ((x0, y0), (x1, y1)), sizes):
            if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
                raise LabelFileError(f"{path} line {number}: point ({x:g}, {y:g}) lies outside image {name} "
                                     f"({width}x{height} pixels)")
