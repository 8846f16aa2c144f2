"""The schema of `configs/evaluate.yaml`: a typed dataclass registered with Hydra, so that every key is known
(overridable without `+`) and a misspelt one fails at composition, naming it.

Every option of every benchmark is in the schema too (`benchmark_schema`, configs/benchmark/NAME.yaml starts
from NAME_schema), so `benchmark.intrinsics_size=[320,240]` needs no `+`.

The harness's options (stress, stress_config, max_pairs, ransac_seed, ransac_threshold, ransac_sweep,
sweep_thresholds, estimator) are HarnessConfig's, with its defaults; the YAML file only sets the run folder.
Benchmarks and matchers are groups (configs/benchmark/, configs/matcher/) whose options each benchmark or matcher
checks itself. The affine simulation is a group too (configs/affine/: none or simulated), its schema every field
of models/affine.py's AffineSimulationConfig (`affine.max_tilt=6`, no `+`), checked by that class."""

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from geometry.estimation import POSE_RANSAC_THRESHOLD_PX
from models.affine import AffineSimulationConfig
from utils.values import check_number

from .benchmarks import BENCHMARKS, Benchmark
from .harness import HarnessConfig


@dataclass
class EvaluateConfig(HarnessConfig):
    """evaluate.py's options: the harness's (inherited, with their checks) and what to match, with what, where
    the run's files go and which stored predictions to score again."""

    benchmark: dict[str, Any] = field(default_factory=dict)  # {name: ..., options}: configs/benchmark/NAME.yaml
    matcher: dict[str, Any] = field(default_factory=dict)  # {name: ..., options}: configs/matcher/NAME.yaml
    # {name: none} or {name: simulated, options}: configs/affine/NAME.yaml, AffineSimulationConfig's fields
    affine: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    checkpoint: str | None = None  # matcher=loftr: ours, kornia's or the official LoFTR files; None: random weights
    precision: str = "fp32"  # matcher=loftr: fp32, or the forward under autocast in bf16 (CPUs with it, GPUs) or fp16
    # Any: HarnessConfig checks them and says what it wants ("a whole number >= 1", "give ransac_sweep=true"),
    # which OmegaConf's own check of a number would not ("could not be converted to Integer")
    max_pairs: Any = None
    ransac_threshold: Any = POSE_RANSAC_THRESHOLD_PX
    plot_pairs: int = 3  # match pictures of the first N pairs (coloured by epipolar error, or by confidence)
    predictions: str | None = None  # an earlier run's predictions.h5: score it again, no matcher is built or run
    out_dir: str = "outputs/evaluate/${benchmark.name}/${matcher.name}/${now:%Y-%m-%d_%H-%M-%S}"

    def __post_init__(self):
        super().__post_init__()
        check_number("plot_pairs", self.plot_pairs, 0, integer=True)
        affine_simulation(self.affine)  # its check: a wrong option is a ValueError naming affine.<field>

    @property
    def affine_simulation(self) -> AffineSimulationConfig | None:
        """The affine simulation's options (None: affine=none); ValueError naming `affine.<field>` for a wrong
        value."""
        return affine_simulation(self.affine)


def affine_simulation(affine: dict[str, Any]) -> AffineSimulationConfig | None:
    """AffineSimulationConfig of an `affine` group's node ({name: none} or {name: simulated, field: value, ...}),
    None for none; ValueError naming `affine.<field>` (its message starts with the field's name)."""
    options = dict(affine)
    name = options.pop("name", "none")
    if name not in AFFINE_SCHEMAS:
        raise ValueError(f"affine={name}: give affine=none or affine=simulated")
    if name == "none":
        return None
    try:
        return AffineSimulationConfig(**options)
    except ValueError as error:
        raise ValueError(f"affine.{error}") from None


def evaluate_config(config: DictConfig) -> EvaluateConfig:
    """The composed configuration as typed values; ValueError naming the key of a wrong value (a
    StressConfig field as `stress_config.<field>`)."""
    try:
        OmegaConf.to_object(config.stress_config)
    except ValueError as error:  # StressConfig's own check, whose message starts with the field's name
        raise ValueError(f"stress_config.{error}") from None
    return OmegaConf.to_object(config)


def benchmark_schema(benchmark: type[Benchmark]) -> dict[str, Any]:
    """`benchmark`'s name and every option with its default, as configs/benchmark/NAME.yaml starts from. Of the
    resize rule only the default's keys: another rule stays `'~benchmark.resize.longer_side'
    '+benchmark.resize.size=[640,480]'`, since the Resize check wants exactly one."""
    schema: dict[str, Any] = {"name": benchmark.name}
    for option in fields(benchmark):
        default = option.default if option.default_factory is MISSING else option.default_factory()
        if is_dataclass(default):
            default = {key: value for key, value in asdict(default).items() if value is not None}
        schema[option.name] = list(default) if isinstance(default, tuple) else default
    return schema


# configs/affine/NAME.yaml starts from NAME_schema: its name and, simulated, every option with its default
AFFINE_SCHEMAS = {"none": {"name": "none"},
                  "simulated": {"name": "simulated",
                                **{option.name: option.default for option in fields(AffineSimulationConfig)}}}


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="evaluate_schema", node=EvaluateConfig)
    for name, schema in AFFINE_SCHEMAS.items():
        store.store(group="affine", name=f"{name}_schema", node=schema)
    for benchmark in BENCHMARKS.values():
        store.store(group="benchmark", name=f"{benchmark.name}_schema", node=benchmark_schema(benchmark))
