"""One table of the final metrics of every run under a folder (a Hydra multirun sweep, or any runs):

    python scripts/collect_runs.py outputs/train/multirun/2026-11-25_10-00-00 [--csv table.csv]

A run is a folder with the summary.json that train.py writes; its label is the command-line overrides it
ran with (from .hydra/overrides.yaml), or its path.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

SKIPPED = ("run_dir=", "hydra.", "world.root=", "logger=")  # the same for every run of a sweep, or noise


def label_of(run: Path, root: Path) -> str:
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        items = yaml.safe_load(overrides.read_text()) or []
        shown = [item for item in items if not item.startswith(SKIPPED)]
        return " ".join(shown) or str(run.relative_to(root))
    return str(run.relative_to(root))


def rows_of(root: Path) -> dict[str, dict[str, float]]:
    rows = {}
    for summary_path in sorted(root.rglob("summary.json")):
        summary = json.loads(summary_path.read_text())
        row = {"step": summary.get("global_step")}
        row.update(summary.get("validation", {}))
        for matcher, metrics in (summary.get("final_evaluation") or {}).items():
            row.update({f"{matcher} {key}": value for key, value in metrics.items() if key.startswith("auc@")})
        rows[label_of(summary_path.parent, root)] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a sweep folder, or any folder holding runs")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"collect_runs.py: error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    rows = rows_of(args.folder)
    if not rows:
        print(f"collect_runs.py: error: no summary.json under {args.folder} (finished train.py runs write one)",
              file=sys.stderr)
        return 2
    columns = list(dict.fromkeys(key for row in rows.values() for key in row))
    width = max(len(label) for label in rows) + 2
    print("run".ljust(width) + "".join(column.rjust(max(12, len(column) + 2)) for column in columns))
    for label, row in rows.items():
        cells = ["-" if row.get(c) is None else (f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]))
                 for c in columns]
        print(label.ljust(width) + "".join(cell.rjust(max(12, len(c) + 2)) for cell, c in zip(cells, columns)))
    if args.csv is not None:
        with open(args.csv, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["run", *columns])
            writer.writerows([[label, *(row.get(c) for c in columns)] for label, row in rows.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
