"""The schema of `configs/train.yaml`: typed dataclasses, registered with Hydra so that every key is known
(overridable without `+`) and a misspelt one fails at composition, naming it.

The YAML files only override these defaults (the papers' values, see each dataclass)."""

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from data.datamodule import DataConfig
from data.synthetic.ensure import WorldSettings
from evaluation.final import FinalEvaluation
from losses.loftr_loss import LossConfig
from models.family import FAMILIES
from models.loftr import LoFTRConfig
from utils.values import check_number, check_seed

from .schedule import OptimizerConfig


@dataclass
class ValidationConfig:
    epipolar_threshold: float = 1e-4  # a match is correct below it (LoFTR: 1e-4 MegaDepth, 5e-4 ScanNet)
    num_figures: int = 4  # match figures logged per validation (rank 0, first batches)
    ransac_seed: int = 0

    def __post_init__(self):
        # normalized image coordinates; inf would count every match correct
        check_number("validation.epipolar_threshold", self.epipolar_threshold, 0, above=True)
        check_number("validation.num_figures", self.num_figures, 0, integer=True)
        check_seed("validation.ransac_seed", self.ransac_seed)


@dataclass
class TrainingConfig:
    """What the LightningModule is built from, and stores in its checkpoints (hyper_parameters.training)."""

    # a family member's config (models/family.py): the model group's file picks the schema (register_configs), Any
    # since OmegaConf has no unions of dataclasses
    model: Any = field(default_factory=LoFTRConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    init_checkpoint: str | None = None  # fine-tune from these weights (official LoFTR, kornia or ours)
    trust_init_checkpoint: bool = False  # allow pickled objects in it (only for files you trust)
    freeze_backbone: bool = False  # fine-tuning: train the transformers and matching only
    max_nonfinite_steps: int = 20  # consecutive NaN/inf losses tolerated (skipped) before training stops

    def __post_init__(self):
        check_number("max_nonfinite_steps", self.max_nonfinite_steps, 0, integer=True)


@dataclass
class CheckpointSettings:
    monitor: str = "auto"  # best.ckpt by it; auto: val/auc@20 for pose data, val/auc@10 for homography data
    every_n_train_steps: int | None = None  # last.ckpt every N steps (None: every epoch)

    def __post_init__(self):
        check_number("callbacks.checkpoint.every_n_train_steps", self.every_n_train_steps, 1, integer=True,
                     optional=True)


@dataclass
class CallbackSettings:
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    progress_bar: bool = True
    learning_rate_monitor: bool = True


@dataclass
class TrainConfig(TrainingConfig):
    """The whole of configs/train.yaml: the module's TrainingConfig (model, loss, optimizer, validation,
    init_checkpoint, ...) and what train.py builds around it."""

    data: DataConfig = field(default_factory=DataConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # pytorch_lightning.Trainer arguments
    logger: dict[str, Any] = field(default_factory=dict)  # {name: wandb | csv | tensorboard | none, ...}
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    world: WorldSettings = field(default_factory=WorldSettings)
    final_evaluation: FinalEvaluation = field(default_factory=FinalEvaluation)
    # keys an experiment needs set (not null), checked before anything runs: a `???` in an experiment file
    # cannot do it, since OmegaConf keeps a schema default under a merged `???`
    required: list[str] = field(default_factory=list)
    ckpt_path: str | None = None  # resume this run: its last.ckpt (steps, schedule, optimizer state)
    overwrite_run_dir: bool = False  # start a run in a folder that holds an earlier run's checkpoints
    validate_only: bool = False  # no training: validate the model (init_checkpoint's weights) on data.val
    seed: int = 66  # LoFTR's default seed
    experiment_name: str = "default"
    run_dir: str = "outputs/train"

    def __post_init__(self):
        super().__post_init__()
        check_number("seed", self.seed, 0, 2**32 - 1, integer=True)  # what Lightning's seed_everything takes


def training_config(config: TrainConfig) -> TrainingConfig:
    """The TrainingConfig part of the whole configuration: what the LightningModule gets, field by field."""
    return TrainingConfig(**{part.name: getattr(config, part.name) for part in fields(TrainingConfig)})


def register_configs() -> None:
    """train_schema, and one schema per model family for the files of configs/model/ to start from: the model
    key is typed by the file chosen, so a misspelt model key still fails at composition."""
    store = ConfigStore.instance()
    schema = OmegaConf.structured(TrainConfig)
    schema.model = None  # the model file's schema fills it
    for split in ("train", "val", "test"):  # entries of their own without `+`: data.val={NAME: {type: ..., ...}}
        OmegaConf.set_struct(schema.data[split], False)
    store.store(name="train_schema", node=schema)
    for family in FAMILIES.values():  # loftr_schema, eloftr_schema
        store.store(group="model", name=f"{family.name}_schema", node=family.config_type)
