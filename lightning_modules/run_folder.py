"""A run folder that holds checkpoints belongs to its run: train.py refuses to start another run in it; and
`latest` beside the run folders points to the newest.

Checked in a Hydra callback, before Hydra writes the new run's `.hydra/` record over the old one: a fixed
`hydra.run.dir` (README's torchrun recipe) is one forgotten `ckpt_path=` away from replacing a run's
last.ckpt, best.ckpt and logs. Resuming the run (`ckpt_path=` one of its own checkpoints) or
`overwrite_run_dir=true` lets it go on.
"""

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def used_run_folder(folder: Path, ckpt_path: str | None, overwrite: bool, sweep: bool = False) -> str | None:
    """Why a run may not write to `folder` (a run's folder, or a sweep's holding one per job), or None."""
    checkpoints = sorted(folder.glob("*/checkpoints/*.ckpt" if sweep else "checkpoints/*.ckpt"))
    if overwrite or not checkpoints:
        return None
    if not sweep and ckpt_path is not None and Path(ckpt_path).resolve().parent == (folder / "checkpoints").resolve():
        return None  # resuming this run
    what = "sweep folder" if sweep else "run folder"
    return (f"{what} {folder} holds the checkpoints of an earlier run ({checkpoints[0].relative_to(folder)}"
            f"{f' and {len(checkpoints) - 1} more' if len(checkpoints) > 1 else ''}); resume it with "
            f"ckpt_path={checkpoints[0] if sweep else folder / 'checkpoints' / 'last.ckpt'}, choose another "
            f"hydra.{'sweep' if sweep else 'run'}.dir, or give overwrite_run_dir=true to replace it")


class RefuseUsedRunFolder(Callback):
    """configs/train.yaml's `hydra.callbacks.run_folder`: exit code 2 and one line when the run (or sweep)
    folder is an earlier run's."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        overwrite = config.get("overwrite_run_dir", False)
        _refuse(used_run_folder(Path(_run_dir(config)), config.get("ckpt_path"), overwrite))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse(used_run_folder(Path(config.hydra.sweep.dir), None, config.get("overwrite_run_dir", False), sweep=True))


def _run_dir(config: DictConfig) -> str:
    """The config's `run_dir`: Hydra's run folder unless given explicitly (`run_dir=...`, as the tests do)."""
    return config.hydra.run.dir if OmegaConf.is_interpolation(config, "run_dir") else config.run_dir


def _refuse(problem: str | None) -> None:
    if problem is not None:
        print(f"{Path(sys.argv[0]).name}: error: {problem}", file=sys.stderr)
        sys.exit(2)


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
