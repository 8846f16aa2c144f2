"""A run's predictions: the matches of every scored pair, kept so that scoring can be redone without matching.

evaluate.py writes them to `out_dir/predictions.h5` (glue-factory's predictions.h5) and scores from them;
`predictions=PATH` scores a stored run again, with another RANSAC threshold or seed, without building the
matcher. The file:

    attributes   benchmark (its name), resize (its `Resize`, as text), matcher (its name), stress ("" for none)
    /KEY/        one group per scored pair, stress variants apart: KEY is the harness's `Variant.key`,
                 URL-quoted (a "/" in a pair's name would separate HDF5 groups)
        keypoints0    (N, 2) float64 (x, y) pixels of the original image 0
        keypoints1    (N, 2) float64 (x, y) pixels of the original image 1 (a stress warp undone)
        confidence   (N,) float64
        attribute runtime_s: the matching time in seconds
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import h5py
import numpy as np

from data.io import write_bytes
from models.matches import Matches


class PredictionsError(ValueError):
    """A predictions file that is missing, unreadable, or made with other settings; the message names it."""


@dataclass
class Prediction:
    """A matcher's output on one pair (variant), in the ORIGINAL frames of both images, and its matching time
    in seconds."""

    matches: Matches
    runtime_s: float


@dataclass(frozen=True)
class RunHeader:
    """What a predictions file was made with: the benchmark's name and resize rule (`repr(Resize)`), the
    matcher's name, the stress kind (None: none), the affine simulation's options as JSON ("": none)."""

    benchmark: str
    resize: str
    matcher: str
    stress: str | None
    affine: str = ""


class PredictionStore:
    """An open predictions file: `add` a pair's prediction, `get` it back, `header` says what made it."""

    def __init__(self, file: h5py.File, path: Path, header: RunHeader):
        self._file, self.path, self.header = file, path, header

    @classmethod
    @contextmanager
    def create(cls, path: str | Path, header: RunHeader) -> Iterator["PredictionStore"]:
        """A new file at `path` (replacing one there) for the run `header` describes, written when the block
        ends without an exception; OSError when it cannot be written. Built in memory and written by Python
        (data.io.write_bytes): HDF5 crashed the process closing a file it could not flush on a full disk."""
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as file:
            file.attrs.update({"benchmark": header.benchmark, "resize": header.resize, "matcher": header.matcher,
                               "stress": header.stress or "", "affine": header.affine})
            yield cls(file, Path(path), header)
        write_bytes(path, buffer.getbuffer())

    @classmethod
    @contextmanager
    def open(cls, path: str | Path) -> Iterator["PredictionStore"]:
        """The file at `path`, read only; PredictionsError when it is missing or not a predictions file."""
        path = Path(path)
        if not path.exists():
            raise PredictionsError(f"predictions {path} does not exist: give the predictions.h5 of an earlier run")
        if not path.is_file():  # a device (/dev/zero), a pipe, a folder
            raise PredictionsError(f"predictions {path} is not a regular file: give the predictions.h5 of an "
                                   f"earlier run")
        try:
            file = h5py.File(path, "r")
        except OSError as error:  # not HDF5, truncated
            raise PredictionsError(f"predictions {path} cannot be read ({error}): give the predictions.h5 of an "
                                   f"earlier run") from None
        with file:
            yield cls(file, path, _read_header(file, path))

    def check_fits(self, benchmark: str, resize: str, stress: str | None, affine: str = "") -> None:
        """PredictionsError naming the setting when the file was made on another benchmark, resize, stress kind
        or affine simulation (RunHeader's JSON, "" for none) than these."""
        stored = self.header
        for what, made_with, given in (("benchmark", stored.benchmark, benchmark),
                                       ("benchmark.resize", stored.resize, resize), ("stress", stored.stress, stress),
                                       ("affine", stored.affine or "none", affine or "none")):
            if made_with != given:
                raise PredictionsError(f"predictions {self.path} were made with {what}={made_with}, not {given}: give "
                                       f"that run's settings, or match again without predictions=")

    def add(self, key: str, prediction: Prediction) -> None:
        """Store `prediction` under `key` (a pair and its stress variant)."""
        group = self._file.create_group(_group_name(key))
        matches = prediction.matches
        group["keypoints0"] = np.asarray(matches.keypoints0, np.float64).reshape(-1, 2)
        group["keypoints1"] = np.asarray(matches.keypoints1, np.float64).reshape(-1, 2)
        group["confidence"] = np.asarray(matches.confidence, np.float64).reshape(-1)
        group.attrs["runtime_s"] = float(prediction.runtime_s)

    def get(self, key: str, max_matches: int) -> Prediction:
        """The prediction stored under `key`, of at most `max_matches` matches (`match_bound`); PredictionsError
        when there is none (the file was made with other settings) or it is malformed: a link, a dataset that is
        not rows of real numbers or declares more rows than that, a value that is not finite, a negative time.
        Everything is checked from the file's metadata before a dataset is read, so a small file that declares
        billions of rows (through a fill value) allocates nothing."""
        name = _group_name(key)
        if name not in self._file:
            raise PredictionsError(f"predictions {self.path} hold no matches for pair {key!r}: they were made with "
                                   f"other benchmark or stress settings; give that run's, or match again without "
                                   f"predictions=")
        where = f"predictions {self.path}: pair {key!r}"
        try:
            group = _plain_member(self._file, name, h5py.Group, where)
            kpts0, kpts1, confidence = (_read_rows(group, dataset, columns, max_matches, where)
                                        for dataset, columns in _COLUMNS.items())
            runtime = group.attrs["runtime_s"]
        except PredictionsError:
            raise
        except (KeyError, OSError, TypeError, ValueError) as error:
            raise PredictionsError(f"{where} cannot be read ({error})") from None
        number = isinstance(runtime, (int, float, np.integer, np.floating)) and not isinstance(runtime, bool)
        if not (number and np.isfinite(runtime) and runtime >= 0):
            raise PredictionsError(f"{where}: runtime_s = {runtime!r} is not a time in seconds (a finite number >= 0)")
        if not len(kpts0) == len(kpts1) == len(confidence):
            raise PredictionsError(f"{where} is malformed: keypoints0 {kpts0.shape}, keypoints1 {kpts1.shape}, "
                                   f"confidence {confidence.shape} (one row a match in each)")
        return Prediction(Matches(kpts0, kpts1, confidence), float(runtime))


# A pair's datasets and their columns (None: one value a row).
_COLUMNS = {"keypoints0": 2, "keypoints1": 2, "confidence": None}
# The fewest matches `match_bound` allows a pair: dense matchers sample a fixed number whatever the image size
# (RoMa and DKM 5000-10000), more than a small image has pixels.
MIN_MATCH_BOUND = 1 << 16


def match_bound(shape0: tuple[int, ...], shape1: tuple[int, ...]) -> int:
    """The most matches a stored pair of images of shapes (H, W, ...) may hold: one a pixel of the larger image
    (LoFTR gives at most one a coarse cell, 1/64 of that; detectors far fewer), and at least MIN_MATCH_BOUND."""
    return max(MIN_MATCH_BOUND, *(int(shape[0]) * int(shape[1]) for shape in (shape0, shape1)))


def _plain_member(group: h5py.Group, name: str, kind: type, where: str):
    """group[name] when it is a hard link to a `kind` (Group or Dataset) stored in this file; PredictionsError
    otherwise: soft and external links may point anywhere, into another file too."""
    link = group.get(name, getlink=True)
    if link is None:
        raise PredictionsError(f"{where}: has no {name}")
    if not isinstance(link, h5py.HardLink):
        raise PredictionsError(f"{where}: {name} is a {type(link).__name__} (soft or external link), not data "
                               f"stored in the file: give the predictions.h5 evaluate.py wrote")
    member = group[name]
    if not isinstance(member, kind):
        raise PredictionsError(f"{where}: {name} is not an HDF5 {kind.__name__.lower()}")
    return member


def _read_rows(group: h5py.Group, name: str, columns: int | None, max_rows: int, where: str) -> np.ndarray:
    """The dataset `name` of `group` as float64 (N, columns) or (N,), N <= max_rows, every value finite; its
    dtype, shape and storage are checked from the metadata before anything is read."""
    dataset = _plain_member(group, name, h5py.Dataset, where)
    where = f"{where}: {name}"
    if dataset.dtype.kind not in "fiu":  # complex, strings, variable-length and compound types
        raise PredictionsError(f"{where} has dtype {dataset.dtype}, not real numbers")
    if dataset.external or dataset.is_virtual:  # raw data in other files
        raise PredictionsError(f"{where} keeps its data in other files (external or virtual storage)")
    expected = (columns,) if columns else ()
    if dataset.ndim != 1 + len(expected) or dataset.shape[1:] != expected:
        shape = "(N, 2)" if columns else "(N,)"
        raise PredictionsError(f"{where} has shape {dataset.shape}, expected {shape}")
    if dataset.shape[0] > max_rows:
        raise PredictionsError(f"{where} declares {dataset.shape[0]} matches, more than the {max_rows} this pair "
                               f"can have (one a pixel of the larger image)")
    rows = dataset[()].astype(np.float64)
    if not np.isfinite(rows).all():
        raise PredictionsError(f"{where} holds NaN or inf values ({int((~np.isfinite(rows)).sum())} of them)")
    return rows


def _read_header(file: h5py.File, path: Path) -> RunHeader:
    try:
        attrs = {key: str(file.attrs[key]) for key in ("benchmark", "resize", "matcher", "stress")}
    except (KeyError, OSError) as error:
        raise PredictionsError(f"predictions {path} is not a predictions file of evaluate.py (its header: "
                               f"{error})") from None
    # files of runs before the affine simulation existed have no "affine": made without it
    return RunHeader(attrs["benchmark"], attrs["resize"], attrs["matcher"], attrs["stress"] or None,
                     str(file.attrs.get("affine", "")))


def _group_name(key: str) -> str:
    return quote(key, safe=" ")
