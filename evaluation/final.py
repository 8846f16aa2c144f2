"""After training: the trained model next to baselines on one of evaluate.py's benchmarks, one table, and the
match.py command that tries the trained checkpoint on one of the benchmark's pairs."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from models.matcher import LoFTRMatcher

from .benchmarks import Benchmark, build_benchmark
from .harness import HarnessConfig, protocol, run
from .matchers import build_matcher
from .metrics import summarize
from .report import format_table


@dataclass
class FinalEvaluation:
    """After training: the trained model and baselines on a benchmark (evaluate.py's), one table."""

    benchmark: dict[str, Any] | None = None  # {name: ..., options}; null: no final evaluation
    baselines: list[str] = field(default_factory=lambda: ["sift"])
    max_pairs: int | None = None


def final_evaluation(settings: FinalEvaluation, model: nn.Module) -> dict:
    """`model` (moved to the CPU, in eval mode) and the baselines on `settings.benchmark`, which must be set;
    the table is printed and returned: {label: summary} with the label "loftr (trained)" for `model`
    ("eloftr (trained)" for an Efficient LoFTR)."""
    benchmark = _benchmark(settings)
    harness = HarnessConfig(max_pairs=settings.max_pairs)
    trained = LoFTRMatcher(model.cpu().eval())
    matchers = {f"{trained.name} (trained)": trained}
    matchers.update({name: build_matcher(name) for name in settings.baselines})
    rows = {label: summarize(run(benchmark, matcher, harness), benchmark.kind) for label, matcher in matchers.items()}
    print(format_table(rows, f"{benchmark.name}: held-out pairs ({protocol(harness, benchmark.kind)})"))
    return rows


def match_command(settings: FinalEvaluation, checkpoint: Path) -> str | None:
    """The match.py command that matches the first pair of the final evaluation's benchmark with `checkpoint`;
    None without a benchmark, or for benchmarks whose pairs are not two image files under their root."""
    if settings.benchmark is None:
        return None
    benchmark = _benchmark(settings)
    root = getattr(benchmark, "root", None)
    pair = next(iter(benchmark.pairs()), None)
    names = pair.name.split() if pair is not None else []
    if root is None or len(names) != 2 or not all((Path(root) / name).is_file() for name in names):
        return None
    def shown(path):
        return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    images = " ".join(str(shown(Path(root).absolute() / name)) for name in names)
    return (f"python match.py {images} --checkpoint {shown(checkpoint.absolute())} --out outputs/demo/matches.npz "
            f"--plot outputs/demo/matches.png")


def _benchmark(settings: FinalEvaluation) -> Benchmark:
    options = dict(settings.benchmark)
    return build_benchmark(options.pop("name"), **options)
