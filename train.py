"""Train a LoFTR-family matcher: `python train.py [experiment=NAME] [KEY=VALUE ...]`.

Without arguments: experiment `synthetic`, a tiny Efficient LoFTR on the generated world (made on the first
run), trained on the CPU, then evaluated on the held-out scenes next to OpenCV SIFT and pretrained XFeat.
Configs: configs/train.yaml and its groups; the schema and its defaults: lightning_modules/config.py; what is
built from them, each part checked: lightning_modules/builders.py. Each run writes to its `run_dir`:
checkpoints/ (best and last), logs, summary.json (final metrics) and the Hydra config it ran with.

    python train.py experiment=loftr_megadepth data.root=... trainer.devices=8
    python train.py -m experiment=synthetic model.coarse.attention=linear,full    # a sweep
    python train.py experiment=synthetic ckpt_path=outputs/train/synthetic/RUN/checkpoints/last.ckpt  # resume
"""

import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from data.synthetic.ensure import WorldGenerationError, ensure_world
from evaluation.final import final_evaluation, match_command
from evaluation.report import write_json
from lightning_modules.builders import (
    ConfigError,
    build_callbacks,
    build_logger,
    build_module,
    build_trainer,
    check_final_evaluation,
    check_resumable,
    check_trainer_settings,
    checked_data,
)
from lightning_modules.checkpoint_io import CheckpointWriteError
from lightning_modules.config import TrainConfig, register_configs, training_config
from lightning_modules.loftr_module import NonFiniteLossError
from lightning_modules.run_folder import link_latest
from utils.cli import run_hydra_main, unset_keys
from utils.files import written_atomically

register_configs()


def train(config: TrainConfig, link_latest_run: bool = True) -> dict:
    """Fit, then evaluate; returns the run's summary (also written to run_dir/summary.json). `link_latest_run`:
    point `latest` beside run_dir to it (not in a sweep, whose folder would then list one run twice)."""
    check_trainer_settings(config.trainer)  # before a world is generated or data read
    pl.seed_everything(config.seed, workers=True, verbose=False)
    try:
        ensure_world(config.world)
    except WorldGenerationError as error:
        raise ConfigError(str(error)) from None
    datamodule = checked_data(config.data)
    check_final_evaluation(config.final_evaluation)  # after the world is made: it may be the benchmark's data
    module = build_module(training_config(config))
    if config.ckpt_path is not None:
        check_resumable(config.ckpt_path, module)
    run_dir = Path(config.run_dir)
    logger = build_logger(config.logger, run_dir, config.experiment_name)
    callbacks = build_callbacks(config.callbacks, run_dir, config.data, bool(logger))
    trainer = build_trainer(config.trainer, logger, callbacks, config.callbacks.progress_bar)
    try:
        if config.validate_only:
            trainer.validate(module, datamodule=datamodule)
        else:
            trainer.fit(module, datamodule=datamodule, ckpt_path=config.ckpt_path)
    except (FileNotFoundError, ValueError, CheckpointWriteError) as error:  # data files, options, a full disk
        raise ConfigError(str(error)) from None

    summary = {"experiment": config.experiment_name, "global_step": trainer.global_step,
               "skipped_steps": module.skipped_steps,
               "validation": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}}
    if not trainer.is_global_zero:
        return summary
    if config.final_evaluation.benchmark is not None:
        summary["final_evaluation"] = final_evaluation(config.final_evaluation, module.model)
    write_summary(run_dir, summary)
    latest = link_latest(run_dir) if link_latest_run else None
    checkpoint = (latest or run_dir) / "checkpoints" / "last.ckpt"
    command = match_command(config.final_evaluation, checkpoint) if checkpoint.is_file() else None
    if command is not None:
        print(f"match two held-out images with the trained model:\n  {command}")
    return summary


def write_summary(run_dir: Path, summary: dict) -> None:
    """run_dir/summary.json, strict JSON (NaN and inf as null at any depth), written atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with written_atomically(run_dir / "summary.json") as temporary:
            write_json(temporary, summary)
    except OSError as error:
        raise ConfigError(f"cannot write {run_dir / 'summary.json'}: {error.strerror or error}; the "
                          f"checkpoints are in {run_dir / 'checkpoints'}") from None


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(config: DictConfig) -> None:
    try:
        missing = unset_keys(config) + [key for key in config.required if OmegaConf.select(config, key) is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: not set; give "
                              f"{' '.join(key + '=...' for key in missing)} on the command line")
        try:
            settings = OmegaConf.to_object(config)
        except ValueError as error:  # a config class's own check of its values
            raise ConfigError(str(error)) from None
        train(settings, link_latest_run=HydraConfig.get().mode == RunMode.RUN)
    except (ConfigError, NonFiniteLossError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_hydra_main(main)
