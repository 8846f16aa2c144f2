"""One table and one cumulative-error plot of several evaluate.py runs of the same benchmark: a row and a curve
per run (matcher and estimator), from each run's summary.json and results.csv.

    python evaluate.py benchmark=synthetic matcher=sift out_dir=outputs/cmp/sift
    python evaluate.py benchmark=synthetic matcher=xfeat out_dir=outputs/cmp/xfeat
    python scripts/compare_runs.py outputs/cmp/sift outputs/cmp/xfeat --plot outputs/cmp/compare.png

A run is named by its title (benchmark / matcher / estimator); runs of different benchmarks, or of pose and
homography kinds, are refused in one line (exit 2).
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.report import format_table, plot_cumulative_errors
from utils.files import written_atomically

ERROR_COLUMN = {"pose": "pose_error_deg", "homography": "homography_error_px"}


def read_run(folder: Path) -> tuple[dict, np.ndarray]:
    """(summary.json, the per-pair errors of results.csv, inf where estimation failed) of one run folder."""
    summary_path, results_path = folder / "summary.json", folder / "results.csv"
    for path in (summary_path, results_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an evaluate.py run: {path.name} is missing")
    try:
        summary = json.loads(summary_path.read_text())
        column = ERROR_COLUMN[summary["kind"]]
        with open(results_path, newline="") as file:
            errors = np.array([float(row[column]) if row[column] else np.inf for row in csv.DictReader(file)])
    except (ValueError, KeyError) as error:
        raise ValueError(f"{folder}: cannot read its summary.json or results.csv ({error})") from None
    return summary, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="evaluate.py run folders (out_dir)")
    parser.add_argument("--plot", type=Path, help="write the cumulative-error plot here (PNG)")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(folder) for folder in args.runs]
        benchmarks = {(summary["title"].split(" / ")[0], summary["kind"]) for summary, _ in runs}
        if len(benchmarks) > 1:
            raise ValueError(f"the runs are of different benchmarks: {sorted(benchmarks)}; compare one at a time")
    except (FileNotFoundError, ValueError) as error:
        print(f"compare_runs.py: error: {error}", file=sys.stderr)
        return 2
    (benchmark, kind), = benchmarks
    labels = [" / ".join(summary["title"].split(" / ")[1:]) for summary, _ in runs]
    if len(set(labels)) < len(labels):  # the same matcher and estimator twice (two checkpoints): add the folders
        labels = [f"{label} ({folder})" for label, folder in zip(labels, args.runs)]
    rows = {label: summary["overall"] for label, (summary, _) in zip(labels, runs)}
    print(format_table(rows, f"{benchmark}: {len(runs)} runs"))
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        with written_atomically(args.plot) as temporary:
            plot_cumulative_errors(temporary, {label: errors for label, (_, errors) in zip(labels, runs)}, kind,
                                   benchmark)
        print(f"plot -> {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
