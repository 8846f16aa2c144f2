"""Score a matcher on a benchmark as the papers report it: pose AUC@5/10/20 and epipolar precision (or
homography AUC@3/5/10), matches and runtime per pair, optionally under rotation or tilt stress.

    python evaluate.py benchmark=synthetic matcher=sift
    python evaluate.py benchmark=megadepth1500 benchmark.root=... benchmark.scene_info_dir=... \
        matcher=loftr checkpoint=weights/outdoor_ds.ckpt
    python evaluate.py benchmark=synthetic matcher=loftr checkpoint=last.ckpt stress=rotation

Prints the table and writes results.csv (per pair), summary.json, cumulative_errors.png (and auc_by_rotation.png
or auc_by_tilt.png) and match pictures of the first pairs to the run folder (`out_dir`). Choices and options:
configs/evaluate.yaml, configs/benchmark/, configs/matcher/.
"""

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from data.errors import BadPairError
from evaluation.benchmarks import Benchmark, build_benchmark
from evaluation.harness import HarnessConfig, ScoredPair, apply_homography, run
from evaluation.matchers import ImageTooLargeError, Matcher, build_matcher
from evaluation.plots import ERROR_CMAP, matches_figure, save_figure
from evaluation.report import report_paths, write_report
from evaluation.stress import StressConfig
from models.checkpoint import CheckpointError
from utils.cli import run_hydra_main
from utils.files import check_no_output_on_input, written_atomically

BENCHMARK_PATHS = ("root", "image_root", "scene_info_dir", "index_dir", "pairs_file")  # the inputs' options


class EvaluationError(Exception):
    """Bad input: a missing data root or checkpoint, a wrong option. Reported as one line, exit code 2."""


def _options(section: DictConfig) -> tuple[str, dict]:
    options = OmegaConf.to_container(section, resolve=True)
    return options.pop("name"), options


def make_benchmark(config: DictConfig) -> Benchmark:
    name, options = _options(config.benchmark)
    try:
        benchmark = build_benchmark(name, **options)
        benchmark.check()
    except (ValueError, FileNotFoundError) as error:
        raise EvaluationError(f"{error} (on the command line: benchmark.<option>=...)") from None
    return benchmark


def make_harness(config: DictConfig) -> HarnessConfig:
    """The stress and pair options of the command line; EvaluationError naming the key of a wrong one."""
    try:
        stress = StressConfig(**OmegaConf.to_container(config.stress_config, resolve=True))
    except (ValueError, TypeError) as error:  # TypeError: an option StressConfig does not have
        raise EvaluationError(f"stress_config.{error}") from None
    try:
        return HarnessConfig(stress=config.stress, stress_config=stress, max_pairs=config.max_pairs,
                             ransac_seed=config.ransac_seed)
    except ValueError as error:
        raise EvaluationError(str(error)) from None


def check_out_dir(config: DictConfig) -> None:
    """EvaluationError when a file of the run would land on an input: in the benchmark's data, or on the
    checkpoint."""
    inputs = {f"benchmark.{key}": config.benchmark.get(key) for key in BENCHMARK_PATHS}
    inputs["checkpoint"] = config.checkpoint
    out_dir = Path(config.out_dir)
    written = [*report_paths(out_dir, config.stress).values(), out_dir / "matches"]
    try:
        check_no_output_on_input(inputs, [("out_dir", path) for path in written])
    except ValueError as error:
        raise EvaluationError(str(error)) from None


def cannot_write(out_dir: Path, error: OSError) -> EvaluationError:
    return EvaluationError(f"cannot write the results to {out_dir}: {error.strerror or error}")


def make_matcher(config: DictConfig) -> Matcher:
    name, options = _options(config.matcher)
    if name == "loftr":
        device = options.pop("device", "auto")
        options["device"] = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        options["checkpoint"] = config.checkpoint
        if config.checkpoint is None:
            print("warning: matcher=loftr without checkpoint=FILE: random weights, meaningless matches",
                  file=sys.stderr)
    elif config.checkpoint is not None:
        raise EvaluationError(f"checkpoint={config.checkpoint} is for matcher=loftr, not matcher={name}")
    try:
        return build_matcher(name, **options)
    except TypeError as error:  # an option the matcher's constructor does not take
        raise EvaluationError(f"matcher {name}: {error}") from None
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        raise EvaluationError(str(error)) from None


def picture_writer(out_dir: Path, count: int, threshold: float | None):
    """An `on_pair` callback drawing the matches of the first `count` pairs: coloured by epipolar error where
    the pair has a pose (green under the benchmark's threshold), by confidence otherwise."""
    drawn = []

    def draw(scored: ScoredPair) -> None:
        if len(drawn) >= count:
            return
        drawn.append(scored.pair.name)
        matches, pair = scored.matches, scored.pair
        kpts1 = matches.kpts1 if pair.warp1 is None else apply_homography(pair.warp1, matches.kpts1)  # as shown
        title = f"{pair.name}: {len(matches)} matches"
        path = out_dir / "matches" / f"{len(drawn):03d}.png"
        if scored.errors is not None and threshold is not None:
            correct = int((scored.errors < threshold).sum())
            figure = matches_figure(pair.image0, pair.image1, matches.kpts0, kpts1, scored.errors,
                                    f"{title}, {correct} correct", color_label="symmetric epipolar error",
                                    value_range=(0.0, 2 * threshold), cmap=ERROR_CMAP, threshold=threshold)
        else:
            figure = matches_figure(pair.image0, pair.image1, matches.kpts0, kpts1, matches.confidence, title,
                                    value_range=(0.0, 1.0))
        try:
            with written_atomically(path) as temporary:
                save_figure(figure, temporary)
        except OSError as error:
            raise cannot_write(out_dir, error) from None

    return draw


def evaluate(config: DictConfig) -> dict:
    """Run the configured evaluation; returns the summary (see evaluation/report.py)."""
    harness = make_harness(config)  # the cheap checks first: nothing is read before they pass
    check_out_dir(config)
    matcher = make_matcher(config)  # before the benchmark: a wrong matcher option fails before any data is read
    benchmark = make_benchmark(config)
    out_dir = Path(config.out_dir)
    draw = picture_writer(out_dir, config.plot_pairs, benchmark.epipolar_threshold)
    try:
        results = run(benchmark, matcher, harness, on_pair=draw)
    except (BadPairError, FileNotFoundError) as error:
        raise EvaluationError(str(error)) from None
    except ImageTooLargeError as error:
        raise EvaluationError(f"{error}: lower benchmark.resize, e.g. benchmark.resize.longer_side="
                              f"{error.longest_side}") from None
    if not results:
        raise EvaluationError(f"benchmark {benchmark.name} has no pairs to evaluate")
    title = f"{benchmark.name} / {matcher.name}" + (f" / {config.stress}" if config.stress else "")
    try:
        table, summary = write_report(out_dir, results, benchmark.kind, title, stress=config.stress)
    except OSError as error:
        raise cannot_write(out_dir, error) from None
    print(table)
    print(f"results -> {out_dir}")
    return summary


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(config: DictConfig) -> None:
    try:
        evaluate(config)
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_hydra_main(main)
