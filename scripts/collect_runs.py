"""One table of the final metrics of every run under a folder (a Hydra multirun sweep, or any runs):

    python scripts/collect_runs.py outputs/train/multirun/2026-11-25_10-00-00 [--csv table.csv]

A run is a folder with the summary.json that train.py writes; its label is the command-line overrides it
ran with (from .hydra/overrides.yaml), or its path.
"""

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.files import check_no_output_on_input, write_failure, written_atomically

SKIPPED = ("run_dir=", "hydra.", "world.root=", "logger=")  # the same for every run of a sweep, or noise


class RunError(ValueError):
    """A run's file cannot be read as train.py writes it; the message names the file."""


def label_of(run: Path, root: Path) -> str:
    """The run's overrides (but the sweep's common ones), or its folder under `root`."""
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        try:
            items = yaml.safe_load(overrides.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise RunError(f"{overrides}: cannot read it as YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(items or [], list) or not all(isinstance(item, str) for item in items or []):
            raise RunError(f"{overrides}: expected Hydra's list of overrides (KEY=VALUE lines)")
        shown = [item for item in items or [] if not item.startswith(SKIPPED)]
        return " ".join(shown) or str(run.relative_to(root))
    return str(run.relative_to(root))


def row_of(summary_path: Path) -> dict:
    """The table's row of one run: its step, validation metrics and final-evaluation AUCs."""
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise RunError(f"{summary_path}: cannot read it as JSON ({error})") from None
    final = summary.get("final_evaluation") or {} if isinstance(summary, dict) else None
    if not (isinstance(summary, dict) and isinstance(summary.get("validation") or {}, dict) and isinstance(final, dict)
            and all(isinstance(metrics, dict) for metrics in final.values())):
        raise RunError(f"{summary_path}: not a train.py summary (an object with validation: {{metric: value}} and "
                       f"final_evaluation: {{matcher: {{metric: value}}}})")
    row = {"step": summary.get("global_step")}
    row.update(summary.get("validation") or {})
    for matcher, metrics in final.items():
        row.update({f"{matcher} {key}": value for key, value in metrics.items() if key.startswith("auc@")})
    return row


def rows_of(root: Path) -> dict[str, dict[str, float]]:
    """{label: row} of every run under `root`; runs with the same overrides told apart by their folders."""
    paths = sorted(root.rglob("summary.json"))
    labels = [label_of(path.parent, root) for path in paths]
    repeated = {label for label, count in Counter(labels).items() if count > 1}
    return {(f"{label} ({path.parent.relative_to(root)})" if label in repeated else label): row_of(path)
            for label, path in zip(labels, paths)}


def write_csv(path: Path, columns: list[str], rows: dict[str, dict]) -> None:
    with written_atomically(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["run", *columns])
        writer.writerows([[label, *(row.get(c) for c in columns)] for label, row in rows.items()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a sweep folder, or any folder holding runs")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = parser.parse_args(argv)
    try:
        if not args.folder.is_dir():
            raise RunError(f"{args.folder} is not a folder")
        read = {f"{path.parent}'s {name}": path.parent / name for path in sorted(args.folder.rglob("summary.json"))
                for name in ("summary.json", ".hydra/overrides.yaml")}
        check_no_output_on_input(read, [("--csv", args.csv)])
        rows = rows_of(args.folder)
        if not rows:
            raise RunError(f"no summary.json under {args.folder} (finished train.py runs write one)")
    except ValueError as error:
        print(f"collect_runs.py: error: {error}", file=sys.stderr)
        return 2
    columns = list(dict.fromkeys(key for row in rows.values() for key in row))
    width = max(len(label) for label in rows) + 2
    print("run".ljust(width) + "".join(column.rjust(max(12, len(column) + 2)) for column in columns))
    for label, row in rows.items():
        cells = ["-" if row.get(c) is None else (f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]))
                 for c in columns]
        print(label.ljust(width) + "".join(cell.rjust(max(12, len(c) + 2)) for cell, c in zip(cells, columns)))
    if args.csv is not None:
        try:
            write_csv(args.csv, columns, rows)
        except OSError as error:
            print(f"collect_runs.py: error: cannot write --csv {args.csv}: {write_failure(error)}; any earlier "
                  f"file there is whole", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
