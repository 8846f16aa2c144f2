"""Rotation robustness: pose (or homography) AUC per in-plane rotation of image 1, for several matchers on the
same pairs, e.g. SE2-LoFTR against LoFTR trained with the same budget.

    python benchmarks/rotation.py --benchmark synthetic root=data/world \\
        --loftr LoFTR=outputs/train/synthetic/RUN/checkpoints/last.ckpt \\
        --loftr SE2-LoFTR=outputs/train/se2_synthetic/RUN/checkpoints/last.ckpt --sift \\
        --loftr-turns "LoFTR turns"=outputs/train/synthetic/RUN/checkpoints/last.ckpt
    python benchmarks/rotation.py --benchmark homographies root=PHOTOS pairs_per_image=5 --loftr ...

Every pair is matched with image 1 turned by each angle (evaluation/stress.py; the ground truth stays exact)
and scored by the evaluation harness. `--loftr-turns` runs a checkpoint as `load_matcher(..., rotations=[0, 90,
180, 270])` does: each quarter turn of image 1 matched, the most confident kept (the answer to rotated photos
that needs no retraining). Prints one row per angle and, per matcher, AUC at the benchmark's three
thresholds (pose: 5/10/20 degrees; homographies: 3/5/10 px), then the worst angle's AUC at the largest.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.baselines import SIFTMatcher
from evaluation.benchmarks import build_benchmark
from evaluation.harness import HarnessConfig, run
from evaluation.matchers import Matcher
from evaluation.metrics import summarize_groups
from evaluation.stress import StressConfig
from models.checkpoint import CheckpointError
from models.matcher import LoFTRMatcher

QUARTER_TURNS = (0, 90, 180, 270)
AUC_KEYS = {"pose": ("auc@5", "auc@10", "auc@20"), "homography": ("auc@3", "auc@5", "auc@10")}


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE of a benchmark option; numbers become numbers."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"benchmark options are KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def parse_named_checkpoint(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--loftr takes NAME=CHECKPOINT, got {text!r}")
    return name, path


def rotation_table(groups: dict[str, dict[str, dict[str, float]]], kind: str) -> str:
    """groups: matcher -> rotation group -> summary. One row per group, 'a / b / c' AUCs per matcher."""
    keys = AUC_KEYS[kind]
    names = list(groups)
    width = max(21, *(len(n) + 2 for n in names))  # room for "100.0 / 100.0 / 100.0"
    rows = [f"{'rotation':<10}" + "".join(f"{n:>{width}}" for n in names),
            f"{'':<10}" + "".join(f"{' / '.join(k.split('@')[1] for k in keys):>{width}}" for _ in names)]
    for group in next(iter(groups.values())):
        cells = [" / ".join(f"{groups[n][group][k]:.1f}" for k in keys) for n in names]
        rows.append(f"{group.removeprefix('rot '):<10}" + "".join(f"{c:>{width}}" for c in cells))
    worst = [min(summary[keys[-1]] for summary in groups[n].values()) for n in names]
    rows.append(f"{'worst':<10}" + "".join(f"{w:>{width}.1f}" for w in worst))
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="synthetic", help="a name of evaluation/benchmarks.py")
    parser.add_argument("options", nargs="*", type=parse_option, help="benchmark options KEY=VALUE (root=...)")
    parser.add_argument("--loftr", action="append", default=[], type=parse_named_checkpoint,
                        metavar="NAME=CHECKPOINT", help="a LoFTR or SE2-LoFTR checkpoint (repeat for several)")
    parser.add_argument("--loftr-turns", action="append", default=[], type=parse_named_checkpoint,
                        metavar="NAME=CHECKPOINT", help="a checkpoint matched at each quarter turn of image 1 (repeat)")
    parser.add_argument("--sift", action="store_true", help="also OpenCV SIFT with the ratio test")
    parser.add_argument("--angles", nargs="+", type=float, default=list(StressConfig().angles))
    parser.add_argument("--max-pairs", type=int, default=None, help="the first N pairs of the benchmark")
    parser.add_argument("--trusted", action="store_true", help="checkpoints may hold pickled objects")
    args = parser.parse_args()

    try:  # bad input: one line naming it, exit code 2
        benchmark = build_benchmark(args.benchmark, **dict(args.options))
        benchmark.check()
        matchers: dict[str, Matcher] = {
            name: LoFTRMatcher.from_checkpoint(path, trusted=args.trusted) for name, path in args.loftr}
        matchers.update({name: LoFTRMatcher.from_checkpoint(path, trusted=args.trusted, rotations=QUARTER_TURNS)
                         for name, path in args.loftr_turns})
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        parser.error(str(error))
    if args.sift:
        matchers["SIFT"] = SIFTMatcher()
    if not matchers:
        parser.error("give at least one matcher: --loftr NAME=CHECKPOINT, --loftr-turns NAME=CHECKPOINT or --sift")
    config = HarnessConfig(stress="rotation", stress_config=StressConfig(angles=tuple(args.angles)),
                           max_pairs=args.max_pairs)
    groups = {}
    for name, matcher in matchers.items():
        print(f"{name}: {benchmark.num_pairs() if args.max_pairs is None else args.max_pairs} pairs x "
              f"{len(args.angles)} angles ...", file=sys.stderr, flush=True)
        groups[name] = summarize_groups(run(benchmark, matcher, config), benchmark.kind)
    print(f"{benchmark.name}: {benchmark.kind} AUC per rotation of image 1 (degrees, counter-clockwise)")
    print(rotation_table(groups, benchmark.kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
