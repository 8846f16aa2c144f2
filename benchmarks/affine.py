"""Tilt robustness: pose AUC on the world's test scenes and homography AUC on photos, per ASIFT tilt of image 1,
for several matchers on the same pairs, each learned one also with affine simulation (models/affine.py).

    python benchmarks/affine.py --world data/world --photos PHOTOS \\
        --loftr main=outputs/train/synthetic/latest/checkpoints/last.ckpt \\
        --loftr tilt-trained=outputs/train/affine_synthetic/latest/checkpoints/last.ckpt \\
        --matcher sift --matcher asift --matcher xfeat_lighterglue --matcher aliked_lightglue \\
        --simulate main=1.5 --simulate xfeat_lighterglue --plot outputs/affine/auc.png

Every pair is matched with image 1 tilted by each of --tilts along a seeded direction (evaluate.py's
stress=tilt; the ground truth stays exact) and scored by the evaluation harness. `--simulate LABEL` adds
"LABEL+affine": that matcher inside `AffineSimulation` (--affine KEY=VALUE sets its options; LABEL=TOLERANCE
the transition tilt that matcher handles alone, which sets its covering). Prints, per benchmark, one row per
tilt with AUC at the benchmark's three thresholds (pose: 5/10/20 degrees; homographies: 3/5/10 px) per
matcher, the share of the t = 1 AUC kept at t = 4 (at the largest threshold), and the median time per pair;
--plot draws AUC (largest threshold) against tilt, a curve per matcher and a file per benchmark.
"""

import argparse
import math
import sys
from itertools import islice
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rotation import AUC_KEYS, parse_named_checkpoint, parse_option
from evaluation.benchmarks import Benchmark, build_benchmark
from evaluation.harness import HarnessConfig, run
from evaluation.matchers import MATCHERS, Matcher, build_matcher
from evaluation.metrics import PairResult, summarize, summarize_groups
from evaluation.plots import curves_figure, save_figure
from evaluation.stress import StressConfig
from models.affine import AFFINE_SUFFIX, AffineSimulation, AffineSimulationConfig
from models.checkpoint import CheckpointError
from models.matcher import LoFTRMatcher

KEPT_AT_TILT = 4.0  # the target: the share of the upright AUC kept at t = 4


class EveryNth:
    """`benchmark` with only every `step`-th of its pairs, the first included: a sample spread over all its
    scenes, where --max-pairs takes the first scene's."""

    def __init__(self, benchmark: Benchmark, step: int):
        self.benchmark, self.step = benchmark, step

    def __getattr__(self, name: str):
        return getattr(self.benchmark, name)

    def pairs(self):
        return islice(self.benchmark.pairs(), 0, None, self.step)

    def num_pairs(self) -> int:
        return math.ceil(self.benchmark.num_pairs() / self.step)


def parse_simulated(text: str) -> tuple[str, float | None]:
    """LABEL or LABEL=TOLERANCE of --simulate."""
    label, sep, tolerance = text.partition("=")
    try:
        return label, float(tolerance) if sep else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"--simulate takes LABEL or LABEL=TOLERANCE, got {text!r}") from None


def tilt_table(groups: dict[str, dict[str, dict[str, float]]], runtimes: dict[str, float], kind: str,
               tilts: list[float]) -> str:
    """groups: matcher -> "tilt T" group -> summary. One row per tilt ('a / b / c' AUCs per matcher), then
    the share of the t = 1 AUC kept at t = 4 and the median milliseconds per pair."""
    keys = AUC_KEYS[kind]
    names = list(groups)
    width = max(21, *(len(name) + 2 for name in names))  # room for "100.0 / 100.0 / 100.0"
    rows = [f"{'tilt':<12}" + "".join(f"{name:>{width}}" for name in names),
            f"{'':<12}" + "".join(f"{' / '.join(k.split('@')[1] for k in keys):>{width}}" for _ in names)]
    for tilt in tilts:
        cells = [" / ".join(f"{groups[name][f'tilt {tilt:g}'][k]:.1f}" for k in keys) for name in names]
        rows.append(f"{tilt:<12g}" + "".join(f"{cell:>{width}}" for cell in cells))
    if 1.0 in tilts and KEPT_AT_TILT in tilts:
        kept = []
        for name in names:
            upright, tilted = (groups[name][f"tilt {t:g}"][keys[-1]] for t in (1.0, KEPT_AT_TILT))
            kept.append(f"{100 * tilted / upright:.0f}%" if upright > 0 else "-")
        rows.append(f"{f'kept at {KEPT_AT_TILT:g}':<12}" + "".join(f"{k:>{width}}" for k in kept))
    rows.append(f"{'ms / pair':<12}" + "".join(f"{runtimes[name]:>{width}.0f}" for name in names))
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, help="a generated world (its test scenes: pose AUC)")
    parser.add_argument("--photos", type=Path, help="a folder of photos (seeded homographies: homography AUC)")
    parser.add_argument("--pairs-per-photo", type=int, default=5, help="homographies drawn per photo")
    parser.add_argument("--loftr", action="append", default=[], type=parse_named_checkpoint,
                        metavar="NAME=CHECKPOINT", help="a LoFTR-family checkpoint (repeat for several)")
    parser.add_argument("--matcher", action="append", default=[], choices=sorted(set(MATCHERS) - {"loftr"}),
                        help="a matcher of evaluation/matchers.py with its defaults (repeat)")
    parser.add_argument("--simulate", action="append", default=[], type=parse_simulated, metavar="LABEL[=TOLERANCE]",
                        help="also run this --loftr NAME or --matcher with affine simulation (repeat), covering at "
                             "its own measured tolerance (the transition tilt it handles) if given")
    parser.add_argument("--affine", action="append", default=[], type=parse_option, metavar="KEY=VALUE",
                        help="an option of the simulation (models/affine.py AffineSimulationConfig), e.g. tolerance=2")
    parser.add_argument("--tilts", nargs="+", type=float, default=list(StressConfig().tilts))
    parser.add_argument("--max-pairs", type=int, default=None, help="the first N pairs of each benchmark")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="only every N-th pair of the world's")
    parser.add_argument("--trusted", action="store_true", help="checkpoints may hold pickled objects")
    parser.add_argument("--plot", type=Path, help="AUC against tilt; BENCHMARK is added to the file's name")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for PyTorch and OpenCV alike (default: each library's own), so that "
                             "ASIFT (OpenCV) and the learned matchers (PyTorch) are timed on the same cores")
    args = parser.parse_args()

    try:  # bad input: one line naming it, exit code 2
        benchmarks: list[Benchmark] = []
        if args.world is not None:
            benchmarks.append(build_benchmark("synthetic", root=str(args.world)))
        if args.photos is not None:
            benchmarks.append(build_benchmark("homographies", root=str(args.photos),
                                              pairs_per_image=args.pairs_per_photo))
        for benchmark in benchmarks:
            benchmark.check()
        if args.every < 1:
            raise ValueError(f"--every {args.every}: must be a whole number >= 1")
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads {args.threads}: must be a whole number >= 1")
            torch.set_num_threads(args.threads)
            cv2.setNumThreads(args.threads)
        if args.world is not None and args.every > 1:
            benchmarks[0] = EveryNth(benchmarks[0], args.every)
        matchers: dict[str, Matcher] = {
            name: LoFTRMatcher.from_checkpoint(path, trusted=args.trusted) for name, path in args.loftr}
        matchers.update({name: build_matcher(name) for name in args.matcher})
        views = dict.fromkeys(matchers, 1)
        for label, tolerance in args.simulate:
            if label not in matchers:
                raise ValueError(f"--simulate {label}: not a --loftr NAME or --matcher given ({', '.join(matchers)})")
            options = dict(args.affine) | ({} if tolerance is None else {"tolerance": tolerance})
            simulated = AffineSimulation(matchers[label], AffineSimulationConfig(**options))
            matchers[f"{label}{AFFINE_SUFFIX}"], views[f"{label}{AFFINE_SUFFIX}"] = simulated, simulated.views
        config = HarnessConfig(stress="tilt", stress_config=StressConfig(tilts=tuple(args.tilts)),
                               max_pairs=args.max_pairs)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as error:
        parser.error(str(error))
    if not benchmarks or not matchers:
        parser.error("give --world ROOT and/or --photos DIR, and at least one --loftr or --matcher")

    for benchmark in benchmarks:
        groups, runtimes = {}, {}
        for name, matcher in matchers.items():
            print(f"{benchmark.name}: {name} ({views[name]} view{'s' * (views[name] > 1)} a pair) ...", file=sys.stderr,
                  flush=True)
            results: list[PairResult] = run(benchmark, matcher, config)
            groups[name] = summarize_groups(results, benchmark.kind)
            runtimes[name] = summarize(results, benchmark.kind)["runtime_ms"]
        pairs = int(next(iter(next(iter(groups.values())).values()))["pairs"])
        print(f"\n{benchmark.name}: {benchmark.kind} AUC per tilt of image 1 ({pairs} pairs a tilt)")
        print(tilt_table(groups, runtimes, benchmark.kind, list(args.tilts)))
        if args.plot is not None:
            key = AUC_KEYS[benchmark.kind][-1]
            curves = {name: [groups[name][f"tilt {t:g}"][key] for t in args.tilts] for name in groups}
            path = args.plot.with_name(f"{args.plot.stem}_{benchmark.name}{args.plot.suffix or '.png'}")
            unit = "degrees" if benchmark.kind == "pose" else "px"
            save_figure(curves_figure(list(args.tilts), curves, "tilt t = 1 / cos(latitude)",
                                      f"{benchmark.kind} AUC@{key.split('@')[1]} {unit}",
                                      f"{benchmark.name}: AUC against tilt"), path)
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
