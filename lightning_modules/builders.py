"""What train.py builds around the LoFTRModule from its configuration, each checked before a step runs: the
data module, the module itself, the logger, the callbacks and the trainer; and whether a checkpoint resumes.

Every wrong setting or missing input is a ConfigError naming the key, which train.py reports in one line.
"""

import inspect
import os
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from data.datamodule import DATASETS, DataConfig, PairDataModule
from evaluation.benchmarks import build_benchmark
from evaluation.final import FinalEvaluation
from evaluation.harness import HarnessConfig
from evaluation.matchers import MATCHERS
from models.checkpoint import CheckpointError, fit_problems, read_checkpoint
from utils.annotations import fits, type_name
from utils.values import check_number

from .callbacks import LastCheckpoint, PairsPerSecond
from .checkpoint_io import AtomicCheckpointIO
from .config import CallbackSettings, TrainingConfig
from .loftr_module import LoFTRModule


class ConfigError(Exception):
    """A wrong configuration or a missing input: reported in one line, exit code 2."""


def checked_data(data: DataConfig) -> PairDataModule:
    """The data module with every split's datasets built: an unknown type or field, a missing root, list or
    index file stops here, naming the entry (`data.val.megadepth: ...`), before a model or logger is made."""
    for split in ("train", "val", "test"):
        check_entries(split, data.entries(split))
    datamodule = PairDataModule(data)
    try:
        datamodule.setup()
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from None
    return datamodule


def check_entries(split: str, entries: dict) -> None:
    """ConfigError naming an entry of `split` that is not a mapping of fields or has no known type: an override
    of a misspelt entry name (data.train.megadpth.longer_side=...) makes an entry of its own, without a type."""
    typed = [name for name, entry in entries.items() if isinstance(entry, dict) and "type" in entry]
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"data.{split}.{name}={entry!r}: an entry is a mapping of fields (or null: left out)")
        if "type" not in entry:
            raise ConfigError(f"data.{split}.{name}: no such entry in data.{split} ({', '.join(typed) or 'none'}); "
                              f"a new one needs its type, one of {sorted(DATASETS)}")
        if entry["type"] not in DATASETS:
            raise ConfigError(f"data.{split}.{name}.type={entry['type']!r}: choose one of {sorted(DATASETS)}")


def check_final_evaluation(settings: FinalEvaluation) -> None:
    """ConfigError naming the `final_evaluation.` value that would stop the run after training: a benchmark
    option out of range or a missing benchmark root, max_pairs < 1, an unknown baseline."""
    if settings.benchmark is None:
        return
    try:
        HarnessConfig(max_pairs=settings.max_pairs)
        unknown = [name for name in settings.baselines if name not in MATCHERS]
        if unknown:
            raise ValueError(f"baselines: unknown matcher(s) {unknown}; valid names: {', '.join(sorted(MATCHERS))}")
    except ValueError as error:
        raise ConfigError(f"final_evaluation.{error}") from None
    options = dict(settings.benchmark)
    try:
        build_benchmark(options.pop("name", None), **options).check()
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"final_evaluation.{error}" if str(error).startswith("benchmark.") else
                          f"final_evaluation.benchmark: {error}") from None


def build_module(config: TrainingConfig) -> LoFTRModule:
    """The module, its model built and `init_checkpoint`'s weights loaded; ConfigError naming the key when the
    checkpoint cannot be read or the model's settings do not go together."""
    try:
        return LoFTRModule(config)
    except (FileNotFoundError, CheckpointError) as error:
        raise ConfigError(f"init_checkpoint: {error}") from None
    except ValueError as error:  # the model's own checks: widths, backbone type and group order
        raise ConfigError(f"model: {error}") from None


def check_resumable(path: str, module: LoFTRModule) -> None:
    """ConfigError unless `path` is a training checkpoint of train.py (steps, optimizer and loops, not weights
    only) whose weights are finite and fit `module`'s model."""
    try:
        checkpoint = read_checkpoint(path)
    except (FileNotFoundError, CheckpointError) as error:
        raise ConfigError(f"ckpt_path={path}: {error}") from None
    if not {"state_dict", "optimizer_states", "loops"} <= set(checkpoint):
        raise ConfigError(f"ckpt_path={path}: holds weights only, not the state of a training run to resume; "
                          f"to train from these weights give init_checkpoint={path} instead")
    problems = fit_problems(module.state_dict(), checkpoint["state_dict"])
    if problems:
        shown = "; ".join(problem if len(problem) < 200 else problem[:200] + " ..." for problem in problems)
        raise ConfigError(f"ckpt_path={path}: was trained with another model than this configuration's ({shown}); "
                          f"resume with the configuration the run was started with")


def build_logger(settings: dict, run_dir: Path, name: str):
    """The `logger` setting's Lightning logger writing under `run_dir` (False for `none`); wandb runs offline
    unless a login is found (`offline: auto`)."""
    options = dict(settings)
    kind = options.pop("name", "none")
    if kind == "none":
        return False
    if kind == "csv":
        return pl.loggers.CSVLogger(save_dir=run_dir, name="csv", version="")
    if kind == "tensorboard":
        return pl.loggers.TensorBoardLogger(save_dir=run_dir, name="tensorboard", version="")
    if kind == "wandb":
        offline = options.pop("offline", "auto")
        if offline == "auto":
            offline = not _wandb_logged_in()
        if offline:
            os.environ.setdefault("WANDB_MODE", "offline")
            print(f"wandb runs offline (no login found); to upload later: wandb sync {run_dir}/wandb/offline-run-*")
        return pl.loggers.WandbLogger(save_dir=str(run_dir), name=name, offline=bool(offline), **options)
    raise ConfigError(f"logger={kind!r} is not one of wandb, csv, tensorboard, none")


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_callbacks(settings: CallbackSettings, run_dir: Path, data: DataConfig, logging: bool) -> list[pl.Callback]:
    """last.ckpt and (with validation data) best.ckpt under run_dir/checkpoints, the learning-rate monitor
    (when something logs) and the pairs-per-second meter."""
    monitor = settings.checkpoint.monitor
    if monitor == "auto":
        homography = any(entry.get("type") == "homography" for entry in data.entries("val").values())
        monitor = "val/auc@10" if homography else "val/auc@20"
    folder = run_dir / "checkpoints"
    # last.ckpt on its own callback, every epoch (or N steps) and at train end, so that it holds the final step:
    # Lightning's save_last follows validation, and with check_val_every_n_epoch > 1 or no validation data it
    # was saved rarely or never
    callbacks: list[pl.Callback] = [LastCheckpoint(folder, settings.checkpoint.every_n_train_steps)]
    if data.entries("val"):
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=folder, filename="best", monitor=monitor, mode="max",
                                                      save_top_k=1, auto_insert_metric_name=False,
                                                      enable_version_counter=False))
    if settings.learning_rate_monitor and logging:  # logger=none: nothing to log the rate to
        callbacks.append(pl.callbacks.LearningRateMonitor(logging_interval="step"))
    callbacks.append(PairsPerSecond())  # logged, and shown on the bar when there is one
    return callbacks


# The ranges of the numeric Trainer arguments: (smallest value, whole numbers only); None passes. Lightning
# checks some late (accumulate_grad_batches=0: a ZeroDivisionError in the first step) or not at all.
TRAINER_RANGES = {
    "accumulate_grad_batches": (1, True), "max_epochs": (-1, True), "min_epochs": (0, True),
    "max_steps": (-1, True), "min_steps": (0, True), "num_nodes": (1, True), "check_val_every_n_epoch": (1, True),
    "num_sanity_val_steps": (-1, True), "gradient_clip_val": (0, False), "val_check_interval": (0, False),
    "limit_train_batches": (0, False), "limit_val_batches": (0, False), "limit_test_batches": (0, False),
}


def unavailable_accelerator(settings: Mapping) -> str | None:
    """Why the `trainer` settings cannot run on this machine (a GPU recipe where torch sees no CUDA GPU, more
    GPUs than it has), as the one line to show, or None. Cheap: checked before the run folder is made."""
    accelerator, devices = settings.get("accelerator", "auto"), settings.get("devices", "auto")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and count > 0):  # auto picks CUDA where it is
        if count == 0:
            return (f"trainer.accelerator={accelerator}: this machine has no CUDA GPU that torch can use; add "
                    f"trainer=cpu to train on the CPU")
        if isinstance(devices, int) and not isinstance(devices, bool) and devices > count:
            return f"trainer.devices={devices}: this machine has {count} CUDA GPU(s); give trainer.devices={count}"
    if accelerator == "mps" and not torch.backends.mps.is_available():
        return "trainer.accelerator=mps: this machine has no Apple GPU (MPS); add trainer=cpu to train on the CPU"
    return None


class RefuseUnavailableAccelerator(Callback):
    """configs/train.yaml's `hydra.callbacks.accelerator`, listed before the run folder's: exit code 2 and the
    one line of `unavailable_accelerator`, before any folder is made."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_unavailable(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # a sweep submitted elsewhere (hydra/launcher=submitit_slurm from a login node) runs on other machines:
        # each job checks its own (check_trainer_settings)
        if str(OmegaConf.select(config, "hydra.launcher._target_", default="")).endswith(".BasicLauncher"):
            _refuse_unavailable(config)


def _refuse_unavailable(config: DictConfig) -> None:
    problem = unavailable_accelerator(config.get("trainer") or {})
    if problem is not None:
        print(f"{Path(sys.argv[0]).name}: error: {problem}", file=sys.stderr)
        sys.exit(2)


def check_trainer_settings(settings: dict) -> None:
    """ConfigError naming the first `trainer.` option that pl.Trainer does not take, of the wrong type or out of
    its range, or an accelerator this machine does not have."""
    valid = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(f"trainer: unknown option(s) {unknown}; valid Trainer arguments: {', '.join(sorted(valid))}")
    annotations = typing.get_type_hints(pl.Trainer.__init__)
    for key, value in settings.items():
        if key in annotations and not fits(value, annotations[key]):
            raise ConfigError(f"trainer.{key}={value!r}: expected {type_name(annotations[key])}")
    for key, (minimum, integer) in TRAINER_RANGES.items():
        value = settings.get(key)
        try:
            check_number(f"trainer.{key}", value, minimum, integer=integer, optional=True)
            if key.startswith("limit_") and isinstance(value, float):  # a float is a share of the batches
                check_number(f"trainer.{key}", value, 0, 1)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    problem = unavailable_accelerator(settings)
    if problem is not None:
        raise ConfigError(problem)
    if settings.get("use_distributed_sampler", False):
        raise ConfigError("trainer.use_distributed_sampler=true: the data module shards its loaders across the "
                          "ranks itself; Lightning's sampler would shard them again")


def build_trainer(settings: dict, logger, callbacks: list[pl.Callback], progress_bar: bool = True) -> pl.Trainer:
    """pl.Trainer with the `trainer` settings (checked by check_trainer_settings), writing checkpoints
    atomically."""
    # PairDataModule shards each loader by the trainer's global_rank and world_size, once; Lightning's
    # distributed sampler on top gave each rank 1/world_size of its shard, and the training loader would
    # lose its resumable state (data/datamodule.py, ResumableLoader)
    settings = {**settings, "use_distributed_sampler": False}
    return pl.Trainer(**settings, logger=logger, callbacks=callbacks, enable_progress_bar=progress_bar,
                      plugins=[AtomicCheckpointIO()])
