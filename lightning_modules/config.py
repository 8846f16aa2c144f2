"""The schema of `configs/train.yaml`: typed dataclasses, registered with Hydra so that every key is known
(overridable without `+`) and a misspelt one fails at composition, naming it.

The YAML files only override these defaults (the papers' values, see each dataclass)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from data.datamodule import DataConfig
from losses.loftr_loss import LossConfig
from models.loftr import LoFTRConfig

from .loftr_module import OptimizerConfig, TrainingConfig, ValidationConfig


@dataclass
class WorldSettings:
    """The synthetic world the `synthetic` data reads; generated at `root` when absent and `generate`."""

    generate: bool = False
    root: str = "data/world"
    scenes: int = 6
    test_scenes: int = 1  # the last scenes; the one before them validates, the rest train
    cameras: int = 20
    size: tuple[int, int] = (640, 480)  # (width, height)
    textures: str = "mixed"
    seed: int = 0


@dataclass
class FinalEvaluation:
    """After training: the trained model and baselines on a benchmark (evaluate.py's), one table."""

    benchmark: dict[str, Any] | None = None  # {name: ..., options}; null: no final evaluation
    baselines: list[str] = field(default_factory=lambda: ["sift"])
    max_pairs: int | None = None


@dataclass
class CheckpointSettings:
    monitor: str = "auto"  # best.ckpt by it; auto: val/auc@20 for pose data, val/auc@10 for homography data
    every_n_train_steps: int | None = None  # last.ckpt every N steps (None: every epoch)


@dataclass
class CallbackSettings:
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    progress_bar: bool = True
    learning_rate_monitor: bool = True


@dataclass
class TrainConfig:
    model: LoFTRConfig = field(default_factory=LoFTRConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # pytorch_lightning.Trainer arguments
    logger: dict[str, Any] = field(default_factory=dict)  # {name: wandb | csv | tensorboard | none, ...}
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    world: WorldSettings = field(default_factory=WorldSettings)
    final_evaluation: FinalEvaluation = field(default_factory=FinalEvaluation)
    init_checkpoint: str | None = None  # fine-tune from these weights (official LoFTR, kornia or ours)
    # keys an experiment needs set (not null), checked before anything runs: a `???` in an experiment file
    # cannot do it, since OmegaConf keeps a schema default under a merged `???`
    required: list[str] = field(default_factory=list)
    trust_init_checkpoint: bool = False
    freeze_backbone: bool = False
    max_nonfinite_steps: int = 20
    ckpt_path: str | None = None  # resume this run: its last.ckpt (steps, schedule, optimizer state)
    overwrite_run_dir: bool = False  # start a run in a folder that holds an earlier run's checkpoints
    validate_only: bool = False  # no training: validate the model (init_checkpoint's weights) on data.val
    seed: int = 66  # LoFTR's default seed
    experiment_name: str = "default"
    run_dir: str = "outputs/train"


def training_config(config: TrainConfig) -> TrainingConfig:
    """What the LightningModule needs of the whole configuration."""
    return TrainingConfig(model=config.model, loss=config.loss, optimizer=config.optimizer,
                          validation=config.validation, init_checkpoint=config.init_checkpoint,
                          trust_init_checkpoint=config.trust_init_checkpoint, freeze_backbone=config.freeze_backbone,
                          max_nonfinite_steps=config.max_nonfinite_steps)


def register_configs() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
