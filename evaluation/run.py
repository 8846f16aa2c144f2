"""One evaluation run: a matcher (or the stored predictions of an earlier run) scored on a benchmark, the
report and match pictures written to the run folder (`out_dir`). evaluate.py's work for one matcher; several
matchers in one run: evaluation/several.py."""

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from data.errors import BadPairError
from geometry.warp import apply_homography
from models.checkpoint import CheckpointError
from models.matcher import ImageTooLargeError
from models.matches import ImageTooSmallError
from utils.files import check_no_output_on_input, write_failure, written_atomically

from .benchmarks import Benchmark, Multiview, build_benchmark
from .config import EvaluateConfig
from .harness import Predictor, ScoredPair, Variant, match_variant, protocol, score_thresholds
from .matchers import Matcher, build_matcher, default_quantization, simulated
from .metrics import summarize
from .multiview import MULTIVIEW_OUTPUTS, NoBagsError, run_multiview, write_multiview_report
from .plots import save_figure, scored_matches_figure
from .predictions import Prediction, PredictionsError, PredictionStore, RunHeader, match_bound
from .report import report_paths, write_report

BENCHMARK_PATHS = ("root", "image_root", "scene_info_dir", "index_dir", "pairs_file")  # the inputs' options
PREDICTIONS = "predictions.h5"  # in the run folder


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
    if settings.benchmark.get("name") == Multiview.name:
        written = [out_dir / name for name in MULTIVIEW_OUTPUTS]
    else:
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
        options["precision"] = settings.precision
        if settings.checkpoint is None:
            print("warning: matcher=loftr without checkpoint=FILE: random weights, meaningless matches",
                  file=sys.stderr)
    elif settings.checkpoint is not None:
        raise EvaluationError(f"checkpoint={settings.checkpoint} is for matcher=loftr, not matcher={name}")
    elif settings.precision != "fp32":
        raise EvaluationError(f"precision={settings.precision} is for matcher=loftr, not matcher={name}")
    try:
        matcher = build_matcher(name, **options)
    except (TypeError, ValueError) as error:  # an option the constructor does not take, or a value out of range
        raise EvaluationError(f"matcher {name}: {error}") from None
    except (FileNotFoundError, CheckpointError) as error:
        raise EvaluationError(str(error)) from None
    return simulated(matcher, settings.affine_simulation)  # its options were checked with the settings


def picture_writer(out_dir: Path, count: int, threshold: float | None):
    """An `on_pair` callback drawing the matches of the first `count` pairs: coloured by epipolar error where
    the pair has a pose (green under the benchmark's threshold), by confidence otherwise."""
    drawn = []

    def draw(scored: ScoredPair) -> None:
        if len(drawn) >= count:
            return
        drawn.append(scored.pair.name)
        matches, pair = scored.matches, scored.pair
        shown1 = matches.keypoints1  # as shown: on the stressed image 1
        kpts1 = shown1 if pair.warp1 is None else apply_homography(pair.warp1, shown1)
        figure = scored_matches_figure(pair.image0, pair.image1, matches.keypoints0, kpts1,
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


def predicting(settings: EvaluateConfig, outputs: ExitStack) -> tuple[Benchmark, str, Predictor, int | None]:
    """The benchmark, the matcher's name, a predictor that matches a variant, stores the prediction in
    out_dir/predictions.h5 (which replaces an earlier one when `outputs` closes) and reads it back (the scores
    are the store's), and the views the affine simulation matches a pair with (None without it)."""
    matcher = make_matcher(settings)  # before the benchmark: a wrong matcher option fails before any data is read
    benchmark = make_benchmark(settings)
    header = RunHeader(benchmark.name, repr(benchmark.resize), matcher.name, settings.stress, affine_options(settings))
    path = outputs.enter_context(written_atomically(Path(settings.out_dir) / PREDICTIONS))
    store = outputs.enter_context(PredictionStore.create(path, header))

    def predict(variant: Variant) -> Prediction:
        store.add(variant.key, match_variant(variant, matcher))
        return stored(store, variant)

    return benchmark, matcher.name, predict, None if settings.affine_simulation is None else matcher.views


def stored(store: PredictionStore, variant: Variant) -> Prediction:
    """The prediction of `variant` in `store`, read no larger than the pair's images allow (`match_bound`)."""
    return store.get(variant.key, match_bound(variant.pair.image0.shape, variant.pair.image1.shape))


def reading(settings: EvaluateConfig, outputs: ExitStack) -> tuple[Benchmark, str, Predictor, None]:
    """The benchmark, the name of the matcher that made `settings.predictions`, a predictor reading them (the
    file stays open until `outputs` closes) and None (the views are the matcher's, which is never built).
    PredictionsError when the file is missing, unreadable or made with other benchmark, stress or affine
    settings."""
    store = outputs.enter_context(PredictionStore.open(settings.predictions))
    benchmark = make_benchmark(settings)
    store.check_fits(benchmark.name, repr(benchmark.resize), settings.stress, affine_options(settings))
    return benchmark, store.header.matcher, partial(stored, store), None


def affine_options(settings: EvaluateConfig) -> str:
    """The affine simulation's options as the predictions file records them: JSON, keys sorted; "" without it."""
    affine = settings.affine_simulation
    return "" if affine is None else json.dumps(asdict(affine), sort_keys=True)


def affine_title(settings: EvaluateConfig, views: int | None) -> list[str]:
    """The table title's part for the affine simulation: none without it, e.g. "affine simulation, 9 views" (the
    views unknown when stored predictions are scored again)."""
    if settings.affine_simulation is None:
        return []
    return ["affine simulation" + ("" if views is None else f", {views} views")]


def affine_summary(settings: EvaluateConfig, views: int | None) -> dict | None:
    """summary.json's `affine`: None without the simulation, else its options and `views_per_pair`."""
    affine = settings.affine_simulation
    return None if affine is None else {**asdict(affine), "views_per_pair": views}


@contextmanager
def reported(out_dir: Path) -> Iterator[None]:
    """The run's errors as EvaluationErrors saying what to change: an input that cannot be read, a resize rule
    the matcher cannot take, outputs that cannot be written."""
    try:
        yield
    except (BadPairError, FileNotFoundError, PredictionsError) as error:  # inputs that cannot be read
        raise EvaluationError(str(error)) from None
    except ImageTooLargeError as error:
        raise EvaluationError(f"{error}: lower benchmark.resize, e.g. benchmark.resize.longer_side="
                              f"{error.longest_side}") from None
    except ImageTooSmallError as error:  # a resize rule too small for the matcher
        raise EvaluationError(f"{error}: raise benchmark.resize (benchmark.resize.longer_side=...)") from None
    except OSError as error:  # the outputs: a full disk, a folder that cannot be made
        raise cannot_write(out_dir, error) from None


def evaluate(settings: EvaluateConfig) -> dict:
    """Run the configured evaluation; returns the summary (see evaluation/report.py, and evaluation/multiview.py
    for benchmark=multiview)."""
    if settings.benchmark.get("name") == Multiview.name:
        return evaluate_multiview(settings)
    check_out_dir(settings)  # the cheap checks first: nothing is read before they pass
    out_dir = Path(settings.out_dir)
    with reported(out_dir), ExitStack() as outputs:  # predictions.h5 and the report replace earlier files together
        prepare = predicting if settings.predictions is None else reading
        benchmark, matcher_name, predict, views = prepare(settings, outputs)
        draw = picture_writer(out_dir, settings.plot_pairs, benchmark.epipolar_threshold)
        if settings.ransac_sweep and benchmark.kind != "pose":
            raise EvaluationError(f"ransac_sweep=true sweeps the pose estimator's threshold; benchmark "
                                  f"{benchmark.name} scores homographies (3 px)")
        scored = score_thresholds(benchmark, predict, matcher_name, settings, on_pair=draw)
        if not next(iter(scored.values())):
            raise EvaluationError(f"benchmark {benchmark.name} has no pairs to evaluate")
        threshold, sweep = best_threshold(scored, benchmark.kind)
        title = " / ".join([benchmark.name, matcher_name, *([settings.stress] if settings.stress else []),
                            *affine_title(settings, views),
                            protocol(settings, benchmark.kind, threshold if sweep else None)])
        extra = {**({"sweep": sweep} if sweep else {}), "affine": affine_summary(settings, views)}
        table, summary = write_report(out_dir, scored[threshold], benchmark.kind, title, stress=settings.stress,
                                      extra=extra)
    print(table)
    print(f"results -> {out_dir}")
    return summary


def evaluate_multiview(settings: EvaluateConfig) -> dict:
    """benchmark=multiview: IMC's multiview and stereo tasks (evaluation/multiview.py); returns the summary."""
    for given, why in ((settings.predictions is not None, "predictions=FILE (the bags are matched and mapped in "
                                                          "one run)"),
                       (settings.stress is not None, f"stress={settings.stress}"),
                       (settings.max_pairs is not None, "max_pairs (fewer bags: benchmark.bags, "
                                                        "benchmark.bag_sizes)"),
                       (settings.ransac_sweep, "ransac_sweep=true")):
        if given:
            raise EvaluationError(f"benchmark=multiview does not take {why}")
    check_out_dir(settings)
    out_dir = Path(settings.out_dir)
    matcher = make_matcher(settings)
    benchmark = make_benchmark(settings)
    simulation = settings.affine_simulation is not None
    quantization = benchmark.quantization or default_quantization(settings.matcher["name"], simulation)
    with reported(out_dir):
        try:
            result = run_multiview(benchmark, matcher, settings, quantization, out_dir)
        except NoBagsError as error:
            raise EvaluationError(str(error)) from None
        views = matcher.views if simulation else None
        title = " / ".join([benchmark.name, matcher.name, *affine_title(settings, views), protocol(settings),
                            f"{quantization} quantization"])
        table, summary = write_multiview_report(out_dir, result, title, {
            "quantization": quantization, "bag_sizes": list(benchmark.bag_sizes), "bags_per_size": benchmark.bags,
            "affine": affine_summary(settings, views)})
    print(table)
    print(f"results -> {out_dir}")
    return summary
