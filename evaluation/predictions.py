"""A run's predictions: the matches of every scored pair, kept so that scoring can be redone without matching.

evaluate.py writes them to `out_dir/predictions.h5` (glue-factory's predictions.h5) and scores from them;
`predictions=PATH` scores a stored run again, with another RANSAC threshold or seed, without building the
matcher. The file:

    attributes   benchmark (its name), resize (its `Resize`, as text), matcher (its name), stress ("" for none)
    /KEY/        one group per scored pair, stress variants apart: KEY is the harness's `Variant.key`,
                 URL-quoted (a "/" in a pair's name would separate HDF5 groups)
        kpts0        (N, 2) float64 (x, y) pixels of the original image 0
        kpts1        (N, 2) float64 (x, y) pixels of the original image 1 (a stress warp undone)
        confidence   (N,) float64
        attribute runtime_s: the matching time in seconds
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import h5py
import numpy as np

from data.pairs import Matches


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
    matcher's name, the stress kind (None: none)."""

    benchmark: str
    resize: str
    matcher: str
    stress: str | None


class PredictionStore:
    """An open predictions file: `add` a pair's prediction, `get` it back, `header` says what made it."""

    def __init__(self, file: h5py.File, path: Path, header: RunHeader):
        self._file, self.path, self.header = file, path, header

    @classmethod
    @contextmanager
    def create(cls, path: str | Path, header: RunHeader) -> Iterator["PredictionStore"]:
        """A new file at `path` (replacing one there) for the run `header` describes; OSError when it cannot be
        written."""
        with h5py.File(path, "w") as file:
            file.attrs.update({"benchmark": header.benchmark, "resize": header.resize, "matcher": header.matcher,
                               "stress": header.stress or ""})
            yield cls(file, Path(path), header)

    @classmethod
    @contextmanager
    def open(cls, path: str | Path) -> Iterator["PredictionStore"]:
        """The file at `path`, read only; PredictionsError when it is missing or not a predictions file."""
        path = Path(path)
        if not path.is_file():
            raise PredictionsError(f"predictions {path} does not exist: give the predictions.h5 of an earlier run")
        try:
            file = h5py.File(path, "r")
        except OSError as error:  # not HDF5, truncated
            raise PredictionsError(f"predictions {path} cannot be read ({error}): give the predictions.h5 of an "
                                   f"earlier run") from None
        with file:
            yield cls(file, path, _read_header(file, path))

    def check_fits(self, benchmark: str, resize: str, stress: str | None) -> None:
        """PredictionsError naming the setting when the file was made on another benchmark, resize or stress
        kind than these."""
        stored = self.header
        for what, made_with, given in (("benchmark", stored.benchmark, benchmark),
                                       ("benchmark.resize", stored.resize, resize), ("stress", stored.stress, stress)):
            if made_with != given:
                raise PredictionsError(f"predictions {self.path} were made with {what}={made_with}, not {given}: give "
                                       f"that run's settings, or match again without predictions=")

    def add(self, key: str, prediction: Prediction) -> None:
        """Store `prediction` under `key` (a pair and its stress variant)."""
        group = self._file.create_group(_group_name(key))
        matches = prediction.matches
        group["kpts0"] = np.asarray(matches.kpts0, np.float64).reshape(-1, 2)
        group["kpts1"] = np.asarray(matches.kpts1, np.float64).reshape(-1, 2)
        group["confidence"] = np.asarray(matches.confidence, np.float64).reshape(-1)
        group.attrs["runtime_s"] = float(prediction.runtime_s)

    def get(self, key: str) -> Prediction:
        """The prediction stored under `key`; PredictionsError when there is none (the file was made with other
        settings) or it is malformed."""
        name = _group_name(key)
        if name not in self._file:
            raise PredictionsError(f"predictions {self.path} hold no matches for pair {key!r}: they were made with "
                                   f"other benchmark or stress settings; give that run's, or match again without "
                                   f"predictions=")
        try:
            group = self._file[name]
            kpts0, kpts1 = group["kpts0"][()], group["kpts1"][()]
            confidence, runtime = group["confidence"][()], float(group.attrs["runtime_s"])
        except (KeyError, OSError, TypeError, ValueError) as error:
            raise PredictionsError(f"predictions {self.path}: pair {key!r} cannot be read ({error})") from None
        n = len(kpts0)
        if kpts0.shape != (n, 2) or kpts1.shape != (n, 2) or confidence.shape != (n,) or not np.isfinite(runtime):
            raise PredictionsError(f"predictions {self.path}: pair {key!r} is malformed: kpts0 {kpts0.shape}, kpts1 "
                                   f"{kpts1.shape}, confidence {confidence.shape}, runtime_s {runtime}")
        return Prediction(Matches(kpts0, kpts1, confidence), runtime)


def _read_header(file: h5py.File, path: Path) -> RunHeader:
    try:
        attrs = {key: str(file.attrs[key]) for key in ("benchmark", "resize", "matcher", "stress")}
    except (KeyError, OSError) as error:
        raise PredictionsError(f"predictions {path} is not a predictions file of evaluate.py (its header: "
                               f"{error})") from None
    return RunHeader(attrs["benchmark"], attrs["resize"], attrs["matcher"], attrs["stress"] or None)


def _group_name(key: str) -> str:
    return quote(key, safe=" ")
