"""train.py in the tests: the overrides of a seconds-long run, its composed configuration, train.py as a
subprocess, and the keys of a checkpoint's training hyper-parameters."""

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]


def small(world: Path, run_dir: Path | None, *overrides: str) -> list[str]:
    """Overrides for a seconds-long run of the tiny LoFTR's synthetic experiment (unless `overrides` name
    another) on `world` (160x120 images)."""
    experiment = [] if any(o.startswith("experiment=") for o in overrides) else ["experiment=loftr_synthetic"]
    return [
        *experiment,
        f"world.root={world}", "world.generate=false", *([f"run_dir={run_dir}"] if run_dir else []), "logger=csv",
        "final_evaluation.benchmark=null", "data.train.synthetic.crop_size=null",
        "data.num_workers=0", "data.batch_size=1", "data.samples_per_scene=4",
        *(f"data.{split}.synthetic.{key}=160" for split in ("train", "val")
          for key in ("longer_side", "depth_pad_size")),
        "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1", "optimizer.warmup_steps=3", *overrides,
    ]


def config_of(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        from omegaconf import OmegaConf

        return OmegaConf.to_object(compose("train", overrides=overrides))


def run_script(*args: str, cwd: Path = ROOT, threads: int | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` in a process of its own: for commands that start processes (DDP, launchers). `threads`:
    torch's threads in each process, when several run at once (two of two threads each on two cores spend
    most of their time waiting for each other)."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


# what checkpoints store under hyper_parameters.training (models/checkpoint.py reads its "model")
TRAINING_KEYS = ["model", "loss", "optimizer", "validation", "init_checkpoint", "trust_init_checkpoint",
                 "freeze_backbone", "max_nonfinite_steps"]
