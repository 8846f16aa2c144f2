"""One table and one cumulative-error plot of several evaluate.py runs of the same benchmark: a row and a curve
per run (matcher and estimator), from each run's summary.json and results.csv.

    python evaluate.py benchmark=synthetic matcher=sift out_dir=outputs/cmp/sift
    python evaluate.py benchmark=synthetic matcher=xfeat out_dir=outputs/cmp/xfeat
    python scripts/compare_runs.py outputs/cmp/sift outputs/cmp/xfeat --plot outputs/cmp/compare.png

A run is named by its title (benchmark / matcher / estimator); runs of different benchmarks, or of pose and
homography kinds, are refused in one line (exit 2). `evaluate.py matcher=[sift,xfeat]` does this in one run.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.compare import compare_runs
from utils.files import write_failure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="evaluate.py run folders (out_dir)")
    parser.add_argument("--plot", type=Path, help="write the cumulative-error plot here (PNG)")
    args = parser.parse_args(argv)
    try:
        print(compare_runs(args.runs, plot=args.plot))
    except (FileNotFoundError, ValueError) as error:  # the runs read
        print(f"compare_runs.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the plot written: a full disk, a folder in its place
        print(f"compare_runs.py: error: cannot write --plot {args.plot}: {write_failure(error)}; any earlier file "
              f"there is whole", file=sys.stderr)
        return 2
    if args.plot is not None:
        print(f"plot -> {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
