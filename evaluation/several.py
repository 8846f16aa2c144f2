"""Several matchers in one evaluate.py run (`matcher=[a,b,...]`): each matcher's run composed from the same
command line into its own folder (out_dir/NAME), then one table, one plot of the cumulative errors and each
matcher's picture of the same pair one above the other. With affine=simulated every listed matcher is wrapped in
the simulation and labelled NAME+affine."""

from dataclasses import replace
from pathlib import Path

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from models.affine import AFFINE_SUFFIX
from utils.cli import one_line
from utils.run_folder import RunFolderError, check_run_folder, claim

from .benchmarks import Multiview
from .compare import compare_runs, stack_pictures
from .config import EvaluateConfig, evaluate_config
from .harness import protocol
from .multiview import multiview_comparison
from .run import EvaluationError, cannot_write, check_out_dir, evaluate, make_benchmark


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
    simulation = settings.affine_simulation is not None  # the same for every matcher: one command line
    labels = [f"{name}{AFFINE_SUFFIX}" if simulation else name for name in names]
    if kind == Multiview.kind:  # reconstructions: one row a matcher (no pair errors to plot or pictures)
        table = multiview_comparison(f"{len(names)} matchers, multiview ({protocol(settings)})",
                                     dict(zip(labels, summaries.values())))
        print(table)
        print(f"results -> {base}")
        return summaries
    try:
        table = compare_runs(folders, labels=labels, plot=base / "cumulative_errors.png",
                             title=f"{len(names)} matchers ({protocol(settings, kind)}"
                                   f"{', affine simulation' if simulation else ''})")
        stack_pictures(folders, labels, base / "matches")
    except OSError as error:
        raise cannot_write(base, error) from None
    print(table)
    print(f"results -> {base}")
    return summaries
