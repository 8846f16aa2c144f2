"""Train a LoFTR-family matcher: `python train.py [experiment=NAME] [KEY=VALUE ...]`.

Without arguments: experiment `synthetic`, a tiny LoFTR on the generated world (made on the first run),
trained on the CPU, then evaluated on the held-out scene next to OpenCV SIFT. Configs: configs/train.yaml and
its groups; the schema and its defaults: lightning_modules/config.py. Each run writes to its `run_dir`:
checkpoints/ (best and last), logs, summary.json (final metrics) and the Hydra config it ran with.

    python train.py experiment=loftr_megadepth data.train.0.root=... trainer.devices=8
    python train.py -m experiment=synthetic model.coarse.attention=linear,full    # a sweep
    python train.py experiment=synthetic ckpt_path=outputs/train/synthetic/RUN/checkpoints/last.ckpt  # resume
"""

import inspect
import json
import os
import sys
import time
import typing
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
import pytorch_lightning as pl
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from data.datamodule import DATASETS, DataConfig, PairDataModule
from data.synthetic.manifest import read_world_manifest, world_manifest
from lightning_modules.callbacks import PairsPerSecond
from lightning_modules.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError
from lightning_modules.config import (CallbackSettings, FinalEvaluation, TrainConfig, WorldSettings, register_configs,
                                      training_config)
from lightning_modules.loftr_module import LoFTRModule, NonFiniteLossError
from models.checkpoint import CheckpointError, fit_problems, read_checkpoint
from utils.annotations import fits, type_name
from utils.cli import run_hydra_main
from utils.files import written_atomically

register_configs()


class ConfigError(Exception):
    """A wrong configuration or a missing input: reported in one line, exit code 2."""


def ensure_world(world: WorldSettings) -> None:
    """Generate the synthetic world at `world.root` unless the world there was made with exactly these settings
    (its world.json: layout, scenes, test scenes, cameras, size, textures, seed). Under torchrun or SLURM every
    process runs this: the global rank 0 (Lightning's, read from RANK, LOCAL_RANK or SLURM_PROCID before the
    trainer exists) generates, the others wait for its manifest."""
    root = Path(world.root)
    wanted = world_manifest("flat", world.scenes, world.test_scenes, world.cameras, world.size, world.textures,
                            world.seed)
    found = read_world_manifest(root)
    if not world.generate or found == wanted:
        return
    if rank_zero_only.rank != 0:
        while read_world_manifest(root) != wanted:
            time.sleep(1)
        return
    from data.synthetic.__main__ import main as generate

    if found is not None:
        changed = ", ".join(f"{key} {found.get(key)} -> {value}" for key, value in wanted.items() if found.get(key) != value)
        print(f"the synthetic world in {root} was made with other settings ({changed}): generating it again ...")
    else:
        print(f"generating the synthetic world in {root} (once) ...")
    width, height = world.size
    arguments = ["--out", str(root), "--scenes", str(world.scenes), "--test-scenes", str(world.test_scenes),
                 "--cameras", str(world.cameras), "--size", f"{width}x{height}", "--textures", world.textures,
                 "--seed", str(world.seed)]
    if generate(arguments) != 0:
        raise ConfigError(f"could not generate the synthetic world in {root}")


def build_logger(settings: dict, run_dir: Path, name: str):
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
    monitor = settings.checkpoint.monitor
    if monitor == "auto":
        homography = any(entry.get("type") == "homography" for entry in data.val)
        monitor = "val/auc@10" if homography else "val/auc@20"
    folder = run_dir / "checkpoints"
    # last.ckpt on its own callback: Lightning 2.6 refreshes save_last only when a best checkpoint is saved
    # and at the end of every training epoch: Lightning's default saves it after validation only when validation
    # runs every epoch, so with check_val_every_n_epoch > 1 or no validation data it was saved rarely or never
    # and at train end, so that it always holds the final step
    from lightning_modules.callbacks import LastCheckpoint

    callbacks: list[pl.Callback] = [LastCheckpoint(folder, settings.checkpoint.every_n_train_steps)]
    if data.val:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=folder, filename="best", monitor=monitor, mode="max",
                                                      save_top_k=1, auto_insert_metric_name=False,
                                                      enable_version_counter=False))
    if settings.learning_rate_monitor and logging:  # logger=none: nothing to log the rate to
        callbacks.append(pl.callbacks.LearningRateMonitor(logging_interval="step"))
    callbacks.append(PairsPerSecond())  # logged, and shown on the bar when there is one
    return callbacks


def check_trainer_settings(settings: dict) -> None:
    """ConfigError naming the first `trainer.` option that pl.Trainer does not take, or of the wrong type."""
    valid = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(f"trainer: unknown option(s) {unknown}; valid Trainer arguments: {', '.join(sorted(valid))}")
    annotations = typing.get_type_hints(pl.Trainer.__init__)
    for key, value in settings.items():
        if key in annotations and not fits(value, annotations[key]):
            raise ConfigError(f"trainer.{key}={value!r}: expected {type_name(annotations[key])}")
    if settings.get("use_distributed_sampler", False):
        raise ConfigError("trainer.use_distributed_sampler=true: the data module shards its loaders across the "
                          "ranks itself; Lightning's sampler would shard them again")


def build_trainer(settings: dict, logger, callbacks: list[pl.Callback], progress_bar: bool = True) -> pl.Trainer:
    # PairDataModule shards each loader by the trainer's global_rank and world_size, once; Lightning's
    # distributed sampler on top gave each rank 1/world_size of its shard, and the training loader would
    # lose its resumable state (data/datamodule.py, ResumableLoader)
    settings = {**settings, "use_distributed_sampler": False}
    return pl.Trainer(**settings, logger=logger, callbacks=callbacks, enable_progress_bar=progress_bar,
                      plugins=[AtomicCheckpointIO()])


def checked_data(data: DataConfig) -> PairDataModule:
    """The data module with every split's datasets built: an unknown type or field, a missing root, list or
    index file stops here, naming the entry (`data.val.0: ...`), before a model or logger is made."""
    for split in ("train", "val", "test"):
        for position, entry in enumerate(getattr(data, split)):
            if entry.get("type") not in DATASETS:
                raise ConfigError(f"data.{split}.{position}.type={entry.get('type')!r}: choose one of {sorted(DATASETS)}")
    datamodule = PairDataModule(data)
    try:
        datamodule.setup()
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from None
    return datamodule


def final_evaluation(settings: FinalEvaluation, module: LoFTRModule, run_dir: Path) -> dict:
    """The trained model and the baselines on one benchmark; the table is printed and returned."""
    from evaluation.benchmarks import build_benchmark
    from evaluation.harness import HarnessConfig, run
    from evaluation.matchers import LoFTRMatcher, build_matcher
    from evaluation.metrics import summarize
    from evaluation.report import format_table

    options = dict(settings.benchmark)
    benchmark = build_benchmark(options.pop("name"), **options)
    harness = HarnessConfig(max_pairs=settings.max_pairs)
    matchers = {"loftr (trained)": LoFTRMatcher(module.model.cpu().eval())}
    matchers.update({name: build_matcher(name) for name in settings.baselines})
    rows = {label: summarize(run(benchmark, matcher, harness), benchmark.kind) for label, matcher in matchers.items()}
    print(format_table(rows, f"{benchmark.name}: held-out pairs"))
    return rows


def train(config: TrainConfig, link_latest_run: bool = True) -> dict:
    """Fit, then evaluate; returns the run's summary (also written to run_dir/summary.json). `link_latest_run`:
    point `latest` beside run_dir to it (not in a sweep, whose folder would then list one run twice)."""
    check_trainer_settings(config.trainer)  # before a world is generated or data read
    pl.seed_everything(config.seed, workers=True, verbose=False)
    ensure_world(config.world)
    datamodule = checked_data(config.data)
    run_dir = Path(config.run_dir)
    try:
        module = LoFTRModule(training_config(config))
    except (FileNotFoundError, CheckpointError) as error:
        raise ConfigError(f"init_checkpoint: {error}") from None
    except ValueError as error:  # the model's own checks: widths, backbone type and group order
        raise ConfigError(f"model: {error}") from None
    if config.ckpt_path is not None:
        check_resumable(config.ckpt_path, module)
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
    if trainer.is_global_zero and config.final_evaluation.benchmark is not None:
        summary["final_evaluation"] = final_evaluation(config.final_evaluation, module, run_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        from evaluation.report import write_json  # strict JSON: NaN/inf as null at any depth

        try:
            with written_atomically(run_dir / "summary.json") as temporary:
                write_json(temporary, summary)
        except OSError as error:
            raise ConfigError(f"cannot write {run_dir / 'summary.json'}: {error.strerror or error}; the "
                              f"checkpoints are in {run_dir / 'checkpoints'}") from None
        latest = link_latest(run_dir) if link_latest_run else None
        checkpoint = (latest or run_dir) / "checkpoints" / "last.ckpt"
        command = match_command(config.final_evaluation, checkpoint) if checkpoint.is_file() else None
        if command is not None:
            print(f"match two held-out images with the trained model:\n  {command}")
    return summary


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


def link_latest(run_dir: Path) -> Path | None:
    """A stable path to the newest run: `latest` beside run_dir, a symlink to it (replaced atomically), e.g.
    outputs/train/synthetic/latest. None, with a warning, where it cannot be made."""
    link, temporary = run_dir.parent / "latest", run_dir.parent / f".latest-{os.getpid()}"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(temporary, link)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        print(f"warning: cannot point {link} to {run_dir}: {error}", file=sys.stderr)
        return None
    return link


def match_command(settings: FinalEvaluation, checkpoint: Path) -> str | None:
    """The match.py command that matches the first pair of the final evaluation's benchmark with `checkpoint`;
    None for benchmarks whose pairs are not two image files under their root."""
    from evaluation.benchmarks import build_benchmark

    if settings.benchmark is None:
        return None
    options = dict(settings.benchmark)
    benchmark = build_benchmark(options.pop("name"), **options)
    root = getattr(benchmark, "root", None)
    pair = next(iter(benchmark.pairs()), None)
    names = pair.name.split() if pair is not None else []
    if root is None or len(names) != 2 or not all((Path(root) / name).is_file() for name in names):
        return None
    shown = lambda path: path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path  # noqa: E731
    images = " ".join(str(shown(Path(root).absolute() / name)) for name in names)
    return (f"python match.py {images} --checkpoint {shown(checkpoint.absolute())} --out outputs/demo/matches.npz "
            f"--plot outputs/demo/matches.png")


def unset_keys(node: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """The dotted keys still `???` under `node`, found without resolving interpolations (OmegaConf's own
    `missing_keys` resolves them, and `${data.root}/train` then raises on `data.root`)."""
    found = []
    for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        name = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            found.append(name)
            continue
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and not (child._is_none() or child._is_interpolation()):
            found += unset_keys(child, f"{name}.")
    return found


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
