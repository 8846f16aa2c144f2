"""Several evaluate.py runs of one benchmark side by side: one table, one cumulative-error plot with a curve per
run, and the match pictures of the same pairs stacked, a row per run. Read from the runs' folders (summary.json,
results.csv, matches/NNN.png), so runs made by `evaluate.py matcher=[a,b]`, by a multirun or one at a time
compare alike."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from utils.files import written_atomically

from .plots import write_rgb
from .report import format_table, plot_cumulative_errors

ERROR_COLUMN = {"pose": "pose_error_deg", "homography": "homography_error_px"}


def read_run(folder: Path) -> tuple[dict, np.ndarray]:
    """(summary.json, the per-pair errors of results.csv, inf where estimation failed) of one run folder.
    FileNotFoundError for a folder that is no run, ValueError naming the folder and what is wrong for one whose
    files cannot be read as evaluate.py writes them."""
    summary_path, results_path = folder / "summary.json", folder / "results.csv"
    for path in (summary_path, results_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an evaluate.py run: {path.name} is missing")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{folder}: cannot read its summary.json as JSON ({error})") from None
    problem = _not_a_summary(summary)
    if problem is not None:
        raise ValueError(f"{folder}: its summary.json is not an evaluate.py summary: {problem}")
    column = ERROR_COLUMN[summary["kind"]]
    try:
        with open(results_path, newline="") as file:
            rows = list(csv.DictReader(file))
        if rows and column not in rows[0]:
            raise ValueError(f"no {column} column")
        short = next((k for k, row in enumerate(rows, 2) if row[column] is None), None)
        if short is not None:
            raise ValueError(f"line {short} has no {column}")
        errors = np.array([float(row[column]) if row[column] else np.inf for row in rows])  # empty: failed
    except (OSError, ValueError) as error:  # unreadable, not text, not numbers, a column or cells missing
        raise ValueError(f"{folder}: cannot read its results.csv ({error})") from None
    return summary, errors


def _not_a_summary(summary) -> str | None:
    """What an evaluate.py summary.json lacks (a title, a known kind, an overall table), or None."""
    if not isinstance(summary, dict):
        return f"a JSON {type(summary).__name__}, not an object"
    if not isinstance(summary.get("title"), str):
        return "no title text"
    if summary.get("kind") not in ERROR_COLUMN:
        return f"kind {summary.get('kind')!r} is none of {', '.join(ERROR_COLUMN)}"
    if not isinstance(summary.get("overall"), dict):
        return "overall is not a table of metrics"
    return None


def compare_runs(folders: list[Path], labels: list[str] | None = None, plot: Path | None = None,
                 title: str | None = None) -> str:
    """The table of `folders` (a row each, labelled by `labels` or by each run's matcher / estimator; titled
    "BENCHMARK: `title`", by default "N runs"), and with `plot` the cumulative-error plot written there.
    ValueError when the runs are of different benchmarks."""
    runs = [read_run(folder) for folder in folders]
    benchmarks = {(summary["title"].split(" / ")[0], summary["kind"]) for summary, _ in runs}
    if len(benchmarks) > 1:
        raise ValueError(f"the runs are of different benchmarks: {sorted(benchmarks)}; compare one at a time")
    (benchmark, kind), = benchmarks
    if labels is None:
        labels = [" / ".join(summary["title"].split(" / ")[1:]) for summary, _ in runs]
        if len(set(labels)) < len(labels):  # the same matcher and estimator twice (two checkpoints)
            labels = [f"{label} ({folder})" for label, folder in zip(labels, folders)]
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        with written_atomically(plot) as temporary:
            plot_cumulative_errors(temporary, {label: errors for label, (_, errors) in zip(labels, runs)}, kind,
                                   benchmark)
    return format_table({label: summary["overall"] for label, (summary, _) in zip(labels, runs)},
                        f"{benchmark}: {title or f'{len(runs)} runs'}")


def stack_pictures(folders: list[Path], labels: list[str], out_dir: Path) -> list[Path]:
    """Each match picture that every run drew (matches/NNN.png: the same pairs, in the benchmark's order),
    the runs' versions one above the other, each under its label, in out_dir/NNN.png; the paths written."""
    names = sorted(set.intersection(*({p.name for p in (f / "matches").glob("*.png")} for f in folders)))
    written = []
    for name in names:
        rows = [cv2.cvtColor(cv2.imread(str(folder / "matches" / name)), cv2.COLOR_BGR2RGB) for folder in folders]
        width = max(row.shape[1] for row in rows)
        parts = []
        for label, row in zip(labels, rows):
            strip = np.full((36, width, 3), 255, np.uint8)
            cv2.putText(strip, label, (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
            parts += [strip, np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)]
        canvas = np.concatenate(parts)
        with written_atomically(out_dir / name) as temporary:
            write_rgb(temporary, canvas)
        written.append(out_dir / name)
    return written
