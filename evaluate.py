"""Score a matcher on a benchmark as the papers report it: pose AUC@5/10/20 and epipolar precision (or
homography AUC@1/3/5/10), matches and runtime per pair, optionally under rotation or tilt stress.

    python evaluate.py benchmark=synthetic matcher=sift
    python evaluate.py benchmark=megadepth1500 benchmark.root=... benchmark.scene_info_dir=... \
        matcher=loftr checkpoint=weights/outdoor_ds.ckpt
    python evaluate.py benchmark=synthetic matcher=loftr checkpoint=last.ckpt stress=rotation
    python evaluate.py benchmark=synthetic predictions=outputs/evaluate/RUN/predictions.h5 ransac_threshold=1.0
    python evaluate.py benchmark=synthetic matcher=[sift,xfeat,loftr] checkpoint=last.ckpt

Several matchers (`matcher=[a,b,...]`) run one after the other in one process, each into its own folder under
the run folder (`out_dir/NAME/`, checkpoint= going to loftr only), then one table, cumulative_errors.png with a
curve per matcher, and matches/NNN.png with each matcher's picture of the same pair one above the other.

Predicts, then scores: every scored pair's matches go to predictions.h5 in the run folder (`out_dir`), and the
table is computed from them; `predictions=FILE` scores an earlier run's again (another RANSAC threshold or
seed) without building the matcher. Prints the table and writes results.csv (per pair), summary.json,
cumulative_errors.png (and auc_by_rotation.png or auc_by_tilt.png) and match pictures of the first pairs to
the run folder. Choices and options: configs/evaluate.yaml (schema: evaluation/config.py), configs/benchmark/,
configs/matcher/.
"""

import sys
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from data.errors import BadPairError
from data.pairs import ImageTooSmallError
from evaluation.benchmarks import Benchmark, build_benchmark
from evaluation.compare import compare_runs, stack_pictures
from evaluation.config import EvaluateConfig, evaluate_config, register_configs
from evaluation.harness import Predictor, ScoredPair, Variant, match_variant, protocol, score_thresholds
from evaluation.loftr_matcher import ImageTooLargeError
from evaluation.loftr_matcher import ImageTooSmallError as CoarseCellTooSmallError
from evaluation.matchers import Matcher, build_matcher
from evaluation.metrics import summarize
from evaluation.plots import save_figure, scored_matches_figure
from evaluation.predictions import Prediction, PredictionsError, PredictionStore, RunHeader, match_bound
from evaluation.report import report_paths, write_report
from geometry.warp import apply_homography
from models.checkpoint import CheckpointError
from utils.cli import one_line, run_hydra_main
from utils.files import check_no_output_on_input, write_failure, written_atomically
from utils.run_folder import RunFolderError, check_run_folder, claim

BENCHMARK_PATHS = ("root", "image_root", "scene_info_dir", "index_dir", "pairs_file")  # the inputs' options
PREDICTIONS = "predictions.h5"  # in the run folder

register_configs()


class EvaluationError(Exception):
    """Bad input: a missing data root or checkpoint, a wrong option. Reported as one line, exit code 2."""


def make_benchmark(settings: EvaluateConfig) -> Benchmark:
    options = dict(settings.benchmark)
    try:
        benchmark = build_benchmark(options.pop("name"), **options)
        benchmark.check()
    except (ValueError, FileNotFoundError) as error:
        hint = "" if str(error).startswith("benchmark.") else " (on the command line: benchmark.<option>=...)"
        raise EvaluationError(f"{error}{hint}") from None
    return benchmark


def check_out_dir(settings: EvaluateConfig) -> None:
    """EvaluationError when a file of the run would land on an input: in the benchmark's data, on the
    checkpoint or on the predictions scored again."""
    inputs = {f"benchmark.{key}": settings.benchmark.get(key) for key in BENCHMARK_PATHS}
    inputs.update(checkpoint=settings.checkpoint, predictions=settings.predictions)
    out_dir = Path(settings.out_dir)
    written = [*report_paths(out_dir, settings.stress).values(), out_dir / "matches"]
    if settings.predictions is None:
        written.append(out_dir / PREDICTIONS)
    try:
        check_no_output_on_input(inputs, [("out_dir", path) for path in written])
    except ValueError as error:
        raise EvaluationError(str(error)) from None


def cannot_write(out_dir: Path, error: OSError) -> EvaluationError:
    return EvaluationError(f"cannot write the results to {out_dir}: {write_failure(error)}")


def make_matcher(settings: EvaluateConfig) -> Matcher:
    options = dict(settings.matcher)
    name = options.pop("name")
    if name == "loftr":
        device = options.pop("device", "auto")
        options["device"] = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        options["checkpoint"] = settings.checkpoint
        if settings.checkpoint is None:
            print("warning: matcher=loftr without checkpoint=FILE: random weights, meaningless matches",
                  file=sys.stderr)
    elif settings.checkpoint is not None:
        raise EvaluationError(f"checkpoint={settings.checkpoint} is for matcher=loftr, not matcher={name}")
    try:
        return build_matcher(name, **options)
    except (TypeError, ValueError) as error:  # an option the constructor does not take, or a value out of range
        raise EvaluationError(f"matcher {name}: {error}") from None
    except (FileNotFoundError, CheckpointError) as error:
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
        figure = scored_matches_figure(pair.image0, pair.image1, matches.kpts0, kpts1,
                                       f"{pair.name}: {len(matches)} matches", errors=scored.errors,
                                       threshold=threshold, confidence=matches.confidence)
        try:
            with written_atomically(out_dir / "matches" / f"{len(drawn):03d}.png") as temporary:
                save_figure(figure, temporary)
        except OSError as error:
            raise cannot_write(out_dir, error) from None

    return draw


def best_threshold(scored: dict[float, list], kind: str) -> tuple[float, dict[str, float]]:
    """The threshold whose results have the highest mAA (the first on a tie), and for a sweep {threshold: mAA}
    of every one (empty for a single threshold)."""
    if len(scored) == 1:
        return next(iter(scored)), {}
    score = {threshold: summarize(results, kind)["mAA"] for threshold, results in scored.items()}
    return max(score, key=score.get), {f"{threshold:g}": value for threshold, value in score.items()}


def predicting(settings: EvaluateConfig, outputs: ExitStack) -> tuple[Benchmark, str, Predictor]:
    """The benchmark, the matcher's name and a predictor that matches a variant, stores the prediction in
    out_dir/predictions.h5 (which replaces an earlier one when `outputs` closes) and reads it back: the scores
    are the store's."""
    matcher = make_matcher(settings)  # before the benchmark: a wrong matcher option fails before any data is read
    benchmark = make_benchmark(settings)
    header = RunHeader(benchmark.name, repr(benchmark.resize), matcher.name, settings.stress)
    path = outputs.enter_context(written_atomically(Path(settings.out_dir) / PREDICTIONS))
    store = outputs.enter_context(PredictionStore.create(path, header))

    def predict(variant: Variant) -> Prediction:
        store.add(variant.key, match_variant(variant, matcher))
        return stored(store, variant)

    return benchmark, matcher.name, predict


def stored(store: PredictionStore, variant: Variant) -> Prediction:
    """The prediction of `variant` in `store`, read no larger than the pair's images allow (`match_bound`)."""
    return store.get(variant.key, match_bound(variant.pair.image0.shape, variant.pair.image1.shape))


def reading(settings: EvaluateConfig, outputs: ExitStack) -> tuple[Benchmark, str, Predictor]:
    """The benchmark, the name of the matcher that made `settings.predictions` and a predictor reading them
    (the file stays open until `outputs` closes); the matcher is never built. PredictionsError when the file is
    missing, unreadable or made with other benchmark or stress settings."""
    store = outputs.enter_context(PredictionStore.open(settings.predictions))
    benchmark = make_benchmark(settings)
    store.check_fits(benchmark.name, repr(benchmark.resize), settings.stress)
    return benchmark, store.header.matcher, partial(stored, store)


def evaluate(settings: EvaluateConfig) -> dict:
    """Run the configured evaluation; returns the summary (see evaluation/report.py)."""
    check_out_dir(settings)  # the cheap checks first: nothing is read before they pass
    out_dir = Path(settings.out_dir)
    try:
        with ExitStack() as outputs:  # predictions.h5 and the report replace earlier files together
            prepare = predicting if settings.predictions is None else reading
            benchmark, matcher_name, predict = prepare(settings, outputs)
            draw = picture_writer(out_dir, settings.plot_pairs, benchmark.epipolar_threshold)
            if settings.ransac_sweep and benchmark.kind != "pose":
                raise EvaluationError(f"ransac_sweep=true sweeps the pose estimator's threshold; benchmark "
                                      f"{benchmark.name} scores homographies (3 px)")
            scored = score_thresholds(benchmark, predict, matcher_name, settings, on_pair=draw)
            if not next(iter(scored.values())):
                raise EvaluationError(f"benchmark {benchmark.name} has no pairs to evaluate")
            threshold, sweep = best_threshold(scored, benchmark.kind)
            title = " / ".join([benchmark.name, matcher_name, *([settings.stress] if settings.stress else []),
                                protocol(settings, benchmark.kind, threshold if sweep else None)])
            table, summary = write_report(out_dir, scored[threshold], benchmark.kind, title, stress=settings.stress,
                                          extra={"sweep": sweep} if sweep else None)
    except (BadPairError, FileNotFoundError, PredictionsError) as error:  # inputs that cannot be read
        raise EvaluationError(str(error)) from None
    except ImageTooLargeError as error:
        raise EvaluationError(f"{error}: lower benchmark.resize, e.g. benchmark.resize.longer_side="
                              f"{error.longest_side}") from None
    except (ImageTooSmallError, CoarseCellTooSmallError) as error:  # a resize rule too small for the matcher
        raise EvaluationError(f"{error}: raise benchmark.resize (benchmark.resize.longer_side=...)") from None
    except OSError as error:  # the outputs: a full disk, a folder that cannot be made
        raise cannot_write(out_dir, error) from None
    print(table)
    print(f"results -> {out_dir}")
    return summary


def listed_matchers(overrides: list[str]) -> list[str] | None:
    """The names of a `matcher=[a,b,...]` override (Hydra would merge their configs into one), else None."""
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.key_or_group == "matcher" and isinstance(override.value(), list):
            if not all(isinstance(name, str) for name in override.value()):  # [sift,[xfeat]], [sift,{a:1}]
                raise EvaluationError(f"{override.input_line}: give a flat list of matcher names, e.g. "
                                      f"'matcher=[sift,xfeat,loftr]'")
            return list(override.value())
    return None


def evaluate_several(names: list[str], overrides: list[str], settings: EvaluateConfig) -> dict[str, dict]:
    """`evaluate` for each matcher of `names`, composed from the command line's other `overrides`, into
    out_dir/NAME; then the table, the plot and the stacked pictures of all of them in out_dir. Returns
    {name: summary}."""
    if len(set(names)) < len(names) or not names:
        raise EvaluationError(f"matcher={names}: give each matcher once")
    if settings.predictions is not None:
        raise EvaluationError("predictions=FILE scores one run's matches again: give one matcher")
    if settings.checkpoint is not None and "loftr" not in names:
        raise EvaluationError(f"checkpoint={settings.checkpoint} is for matcher=loftr, which is not in {names}")
    keys = {override.key_or_group: override for override in OverridesParser.create().parse_overrides(overrides)}
    base = Path(settings.out_dir)
    kind = make_benchmark(settings).kind
    if "out_dir" not in keys:  # the default names the last matcher, whose config Hydra composed last
        base = base.parent.parent / "+".join(names) / base.name
    check_out_dir(replace(settings, out_dir=str(base)))
    try:  # the run-folder rule for the folders Hydra never saw: the base (unless it is out_dir) and each run's
        if base != Path(settings.out_dir):
            claim(base, "out_dir", lambda: check_run_folder(base, "out_dir", "evaluate"))
        for name in names:
            check_run_folder(base / name, "out_dir", "evaluate")
    except RunFolderError as error:
        raise EvaluationError(str(error)) from None
    kept = [override.input_line for key, override in keys.items() if key not in ("matcher", "out_dir")]
    summaries = {}
    for name in names:
        run_overrides = [o for o in kept if name == "loftr" or not o.startswith("checkpoint=")]
        try:
            config = hydra.compose("evaluate", overrides=[*run_overrides, f"matcher={name}", f"out_dir={base / name}"])
        except (HydraException, OmegaConfBaseException) as error:  # matcher.KEY=... that this matcher lacks
            raise EvaluationError(f"matcher {name}: {one_line(error)} (matcher.KEY=... goes to every listed "
                                  f"matcher)") from None
        try:
            summaries[name] = evaluate(evaluate_config(config))
        except ValueError as error:
            raise EvaluationError(str(error)) from None
    folders = [base / name for name in names]
    try:
        table = compare_runs(folders, labels=names, plot=base / "cumulative_errors.png",
                             title=f"{len(names)} matchers ({protocol(settings, kind)})")
        stack_pictures(folders, names, base / "matches")
    except OSError as error:
        raise cannot_write(base, error) from None
    print(table)
    print(f"results -> {base}")
    return summaries


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(config: DictConfig) -> None:
    try:
        try:
            settings = evaluate_config(config)
        except ValueError as error:  # a config class's own check of its values, naming the key
            raise EvaluationError(str(error)) from None
        overrides = list(HydraConfig.get().overrides.task)
        names = listed_matchers(overrides)
        if names is None:
            evaluate(settings)
        else:
            evaluate_several(names, overrides, settings)
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        sys.exit(2)


def check_matcher_lists(arguments: list[str]) -> None:
    """Exit code 2 and one line for a nested `matcher=[sift,[xfeat]]`, which Hydra's composition meets with a
    TypeError before `main` runs; an override Hydra cannot parse is left to Hydra to report."""
    try:
        listed_matchers([argument for argument in arguments if not argument.startswith("-")])
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except HydraException:
        pass


if __name__ == "__main__":
    check_matcher_lists(sys.argv[1:])
    run_hydra_main(main)
