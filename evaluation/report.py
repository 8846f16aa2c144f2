"""Results of an evaluation run: the terminal table, per-pair CSV, summary JSON and plots (PNG)."""

import csv
import json
import math
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from utils.files import written_atomically

from .metrics import HOMOGRAPHY_AUC_THRESHOLDS_PX, POSE_AUC_THRESHOLDS_DEG, PairResult, summarize, summarize_groups

COLUMNS = ("mAA", "pairs", "precision", "matches", "runtime_ms")  # after the AUC columns
COUNTS = ("pairs", "bags", "failed")  # columns of whole numbers


def format_table(rows: dict[str, dict[str, float]], title: str = "",
                 columns: Sequence[tuple[str, str]] | None = None) -> str:
    """A plain-text table, one row per entry of `rows` (label -> summary); AUCs and precision in percent.
    columns: (key, header) pairs; default: the first row's AUC keys, then those of COLUMNS any row has."""
    if columns is None:
        keys = [key for key in next(iter(rows.values())) if key.startswith("auc@")]
        keys += [key for key in COLUMNS if any(key in row for row in rows.values())]
        columns = [(key, key) for key in keys]
    label_width = max(len(label) for label in [*rows, ""]) + 2
    lines = [title] if title else []
    lines.append("".rjust(label_width) + "".join(header.rjust(12) for _, header in columns))
    for label, row in rows.items():
        cells = [_cell(row.get(key), key) for key, _ in columns]
        lines.append(label.ljust(label_width) + "".join(cell.rjust(12) for cell in cells))
    return "\n".join(lines)


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    if key in COUNTS:
        return f"{int(value)}"
    return f"{value:.1f}" if key != "runtime_ms" else f"{value:.0f}"


def write_csv(path: Path, results: Sequence[PairResult]) -> None:
    """One row per pair: name, group, matches, runtime, errors (inf where estimation failed), precision."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["name", "group", "num_matches", "runtime_ms", "rotation_error_deg",
                         "translation_error_deg", "pose_error_deg", "homography_error_px", "precision"])
        for r in results:
            pose = (r.pose.rotation_deg, r.pose.translation_deg, r.pose.max_deg) if r.pose else ("", "", "")
            writer.writerow([r.name, r.group, r.num_matches, f"{1000 * r.runtime_s:.2f}", *pose,
                             "" if r.homography_error_px is None else r.homography_error_px,
                             "" if r.precision is None else r.precision])


def finite_or_null(value):
    """`value` with every non-finite float (NaN, +-inf; Python or numpy) replaced by None, through dicts,
    lists and tuples (tuples become lists, as JSON writes them); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, summary: dict) -> None:
    """The run's summary as strict JSON, with non-finite numbers as null (JSON has no NaN or inf)."""
    path.write_text(json.dumps(finite_or_null(summary), indent=2, allow_nan=False) + "\n")


def errors_of(results: Sequence[PairResult], kind: str) -> np.ndarray:
    return np.array([r.pose.max_deg if kind == "pose" else r.homography_error_px for r in results], np.float64)


def plot_cumulative_errors(path: Path, curves: dict[str, np.ndarray], kind: str, title: str) -> None:
    """Share of pairs with an error below x, one curve per label, up to the largest AUC threshold."""
    limit = (POSE_AUC_THRESHOLDS_DEG if kind == "pose" else HOMOGRAPHY_AUC_THRESHOLDS_PX)[-1]
    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.subplots()
    x = np.linspace(0, limit, 200)
    for label, errors in curves.items():
        axes.plot(x, 100 * (errors[None, :] <= x[:, None]).mean(1), label=label)
    axes.set_xlabel("pose error (degrees)" if kind == "pose" else "mean corner error (px)")
    axes.set_ylabel("pairs below (%)")
    axes.set_xlim(0, limit)
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.set_title(title)
    if len(curves) > 1:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


def plot_auc_by_group(path: Path, groups: dict[str, dict[str, float]], title: str, xlabel: str) -> None:
    """AUC at each threshold against the group (rotation angle, tilt), in the order given."""
    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.subplots()
    labels = list(groups)
    for key in [k for k in next(iter(groups.values())) if k.startswith("auc@")]:
        axes.plot(range(len(labels)), [groups[label][key] for label in labels], marker="o", label=key)
    axes.set_xticks(range(len(labels)), [label.split()[-1] for label in labels])
    axes.set_xlabel(xlabel)
    axes.set_ylabel("AUC (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)


def report_paths(out_dir: Path, stress: str | None = None) -> dict[str, Path]:
    """{file name: path} of the files `write_report` writes to `out_dir`."""
    names = ["results.csv", "summary.json", "cumulative_errors.png", *([f"auc_by_{stress}.png"] if stress else [])]
    return {name: out_dir / name for name in names}


def write_report(out_dir: Path, results: Sequence[PairResult], kind: str, title: str,
                 stress: str | None = None, extra: dict | None = None) -> tuple[str, dict]:
    """Write results.csv, summary.json and the plots to `out_dir`; returns the table and the summary (with the
    entries of `extra` too, e.g. a threshold sweep's). All or nothing: when a write fails (OSError: a full
    disk), the files of an earlier report there stay as they were."""
    overall = summarize(results, kind)
    groups = summarize_groups(results, kind)
    summary = {"title": title, "kind": kind, "overall": overall, "groups": groups, **(extra or {})}
    by_group: dict[str, list[PairResult]] = {}
    for result in results:
        by_group.setdefault(result.group, []).append(result)
    with ExitStack() as outputs:  # each file replaces its earlier self only once all are written
        paths = {name: outputs.enter_context(written_atomically(path))
                 for name, path in report_paths(out_dir, stress).items()}
        write_csv(paths["results.csv"], results)
        write_json(paths["summary.json"], summary)
        if stress is not None:
            curves = {group: errors_of(members, kind) for group, members in by_group.items()}
            plot_auc_by_group(paths[f"auc_by_{stress}.png"], groups, title,
                              "rotation of image 1 (degrees)" if stress == "rotation" else "tilt t")
        else:
            curves = {"all pairs": errors_of(results, kind)}
        plot_cumulative_errors(paths["cumulative_errors.png"], curves, kind, title)
    rows = {**(groups if len(groups) > 1 else {}), "all": overall}
    return format_table(rows, title), summary
