"""The folder a run writes to, claimed for that run alone: one rule for train.py's run folder (and a sweep's),
evaluate.py's out_dir and the scripts, checked in a Hydra callback before Hydra writes its record of the run
(.hydra/, the job's log) there, so that a refused run leaves the folder exactly as it was.

Refused in one line (exit code 2):
- a path that is a file;
- a folder another run is writing to now: each run holds an exclusive lock on the folder's `.run.lock`
  (fcntl.flock) for its life and removes the file as it ends; the kernel drops the lock when the process ends,
  however it ends (a killed run leaves the file, unlocked), so a run that has ended can always be resumed in
  its folder;
- a folder holding the records of another program's run (evaluate.py into a training run would replace its
  summary.json and .hydra/), or, for train.py, an earlier run's checkpoints unless resuming it (`ckpt_path=`
  one of them) or `overwrite_run_dir=true`; an earlier evaluate.py run's folder may be evaluated into again:
  its results are replaced all at once;
- a folder that is, or lies inside, one of the run's inputs (a benchmark's data, the generated world).

In a distributed run only the process of global rank 0 claims the folder: the others share it.
"""

import fcntl
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from utils.files import lies_inside, same_file

LOCK = ".run.lock"
# what each program leaves in its run folder: another program's run is recognised by any of them
RECORDS = {"train": ("checkpoints", "train.log"), "evaluate": ("results.csv", "predictions.h5", "evaluate.log")}
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")  # torchrun, SLURM, Lightning's launcher

_held: list[IO] = []  # the locks this process holds, one per claimed folder
_new_records: list[Path] = []  # Hydra's record of the run (.hydra/, the job's log) where there was none before
_earlier_records: dict[Path, bytes] = {}  # an earlier run's .hydra/*.yaml in the folder, which Hydra rewrites
_earlier_outputs: dict[Path, int] = {}  # that run's outputs (checkpoints, results) and their mtimes


class RunFolderError(Exception):
    """A run may not write to the folder it was given; the message is the one line to show."""


def used_run_folder(folder: Path, ckpt_path: str | None, overwrite: bool, sweep: bool = False) -> str | None:
    """Why train.py may not start a run in `folder` (a run's folder, or a sweep's holding one per job) because
    of an earlier run's checkpoints there, or None."""
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


def foreign_run(folder: Path, program: str) -> str | None:
    """Why `program` may not write to `folder` because another program's run is there, or None."""
    for other, records in RECORDS.items():
        found = [name for name in records if other != program and (folder / name).exists()]
        if found:
            return f"holds a {other}.py run ({', '.join(found)}) whose records this run would replace"
    return None


def check_run_folder(folder: Path, name: str, program: str, inputs: dict[str, Any] | None = None,
                     ckpt_path: str | None = None, overwrite: bool = False, sweep: bool = False) -> None:
    """RunFolderError when `program` ("train", "evaluate") may not write to `folder`, which the user calls
    `name` (hydra.run.dir, out_dir, ...): a file, another program's run, an earlier training run (train.py:
    unless resumed or overwritten), or inside one of `inputs` ({key: path or None}). Reads only."""
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{name} {folder} is a file: give a folder for the run's outputs")
    for key, path in (inputs or {}).items():
        if path is not None and (same_file(folder, Path(path)) or lies_inside(folder, Path(path))):
            raise RunFolderError(f"{name} {folder} lies in {key} {path}: the run's records would be written "
                                 f"into its data; choose another {name}")
    if folder.is_dir() and not overwrite:
        problem = foreign_run(folder, program)
        if problem is not None:
            raise RunFolderError(f"{name} {folder} {problem}; choose another {name}"
                                 + (" or give overwrite_run_dir=true" if program == "train" else ""))
    problem = used_run_folder(folder, ckpt_path, overwrite, sweep) if program == "train" else None
    if problem is not None:
        raise RunFolderError(problem)


def claim(folder: Path, name: str, check: Callable[[], None] | None = None) -> None:
    """Lock `folder` (made if missing) for this process until `release_all` or its end, once `check()` (that
    raises RunFolderError) passes. RunFolderError when another run holds it or `check` fails; then nothing is
    written. A folder in use is said to be so before any other problem with it."""
    lock, file = folder / LOCK, None
    try:
        file = _locked(lock, folder, name) if lock.is_file() else None
        if check is not None:
            check()
        if file is None:
            folder.mkdir(parents=True, exist_ok=True)
            file = _locked(lock, folder, name)
    except BaseException as error:
        if file is not None:
            file.close()
        if isinstance(error, OSError):  # a folder that cannot be made or written to
            raise RunFolderError(f"{name} {folder}: cannot write there ({error.strerror or error})") from None
        raise
    _held.append(file)
    try:  # whose lock it is, for the message of a run refused while this one goes on; the lock holds without
        file.truncate(0)
        file.write(f"{os.getpid()}\n".encode())
    except OSError:  # a full disk: the run's first write says so
        pass


def _locked(lock: Path, folder: Path, name: str) -> IO:
    """`lock` opened (made if missing, its bytes kept) and locked; RunFolderError when another run holds it."""
    # held open, unbuffered, for the run's life: the lock lives with the open file, and closing it writes nothing
    file = open(lock, "a+b", buffering=0)  # noqa: SIM115
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not lock.exists() or not os.path.samestat(os.fstat(file.fileno()), lock.stat()):
            file.close()  # removed by the run that held it as it ended: the lock is the new file's
            return _locked(lock, folder, name)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().decode(errors="replace").strip()
        file.close()
        raise RunFolderError(f"{name} {folder} is in use by another run{f' (process {holder})' if holder else ''}: "
                             f"choose another {name}, or wait for that run to end") from None
    except OSError as error:  # a filesystem without locks (some network mounts): run, unguarded
        print(f"warning: cannot lock {lock} ({error.strerror or error}): a second run started into {folder} "
              f"would not be refused", file=sys.stderr)
    return file


def claimed_folders() -> list[Path]:
    """The folders this process holds now."""
    return [Path(file.name).parent for file in _held]


def restore_records(partial: bool) -> None:
    """After this run failed: put back the earlier run's .hydra/*.yaml that Hydra rewrote, unless this run
    wrote outputs of its own (a checkpoint, results), so that the record describes what the folder holds;
    `partial` (writing Hydra's record failed, a full disk): also remove what it wrote where there was none
    before. The earlier files go back into the space their truncation freed."""
    if partial:
        for path in _new_records:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    if _earlier_records and _outputs(next(iter(_earlier_records)).parent.parent) != _earlier_outputs:
        _earlier_records.clear()
    for path, data in _earlier_records.items():
        try:
            if not path.is_file() or path.read_bytes() != data:
                path.write_bytes(data)
        except OSError:  # the command's own line says why the run failed; this one is a best effort
            pass
    forget_records()


def forget_records() -> None:
    """The run succeeded: its record stands."""
    _new_records.clear()
    _earlier_records.clear()
    _earlier_outputs.clear()


def _outputs(folder: Path) -> dict[Path, int]:
    """The files a run leaves in `folder` (RECORDS, but the logs) and their modification times."""
    found = {}
    for name in {name for names in RECORDS.values() for name in names if not name.endswith(".log")}:
        path = folder / name
        for file in (sorted(path.rglob("*")) if path.is_dir() else [path]):
            if file.is_file():
                found[file] = file.stat().st_mtime_ns
    return found


def release_all() -> None:
    """Unlock every folder this process claimed, removing the lock files: a run leaves no trace of its lock
    (one killed leaves the file, unlocked, for the next run to take)."""
    while _held:
        file = _held.pop()
        Path(file.name).unlink(missing_ok=True)  # while still locked: a run that opened it now sees it removed
        file.close()


def is_rank_zero() -> bool:
    """This process is a run's only one, or the global rank 0 of a distributed run (as its launcher says)."""
    return all(os.environ.get(variable, "0") == "0" for variable in _RANK_VARIABLES)


class ClaimRunFolder(Callback):
    """configs/{train,evaluate}.yaml's `hydra.callbacks.run_folder`: the run (or sweep) folder checked and
    claimed before Hydra writes to it; exit code 2 and one line when it may not be used.

    program: "train" or "evaluate"; folder_key: the config key holding the run's folder (train.py's `run_dir`,
    Hydra's own run folder unless given, evaluate.py's `out_dir`); inputs: the config keys of the run's input
    paths, `*` for every item of a list or mapping (data.train.*.root)."""

    def __init__(self, program: str, folder_key: str, inputs: list[str] | None = None):
        self.program, self.folder_key, self.inputs = program, folder_key, list(inputs or [])

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        raw = OmegaConf.to_container(config, resolve=False).get(self.folder_key)
        if raw == "${hydra:runtime.output_dir}":  # train.py's default: Hydra's run folder
            folder, name = config.hydra.run.dir, "hydra.run.dir"
        else:
            folder, name = OmegaConf.select(config, self.folder_key), self.folder_key
        self._claim(Path(folder), name, config, sweep=False)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(Path(config.hydra.sweep.dir), "hydra.sweep.dir", config, sweep=True)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()

    def _claim(self, folder: Path, name: str, config: DictConfig, sweep: bool) -> None:
        if not is_rank_zero():
            return
        release_all()  # left by an earlier run in this process that did not end through utils.cli.run_hydra_main
        inputs = {key: path for pattern in self.inputs for key, path in _selected(config, pattern)}
        try:
            claim(folder, name, lambda: check_run_folder(
                folder, name, self.program, inputs, ckpt_path=None if sweep else config.get("ckpt_path"),
                overwrite=bool(config.get("overwrite_run_dir", False)), sweep=sweep))
        except RunFolderError as error:
            print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
            sys.exit(2)
        subfolder, job = config.hydra.get("output_subdir"), OmegaConf.select(config, "hydra.job.name")
        records = [] if sweep else [folder / subfolder if subfolder else None, folder / f"{job}.log" if job else None]
        record = folder / subfolder if subfolder and not sweep else None
        forget_records()
        _new_records[:] = [path for path in records if path is not None and not path.exists()]
        if record is not None and record.is_dir():
            _earlier_records.update({path: path.read_bytes() for path in record.glob("*.yaml") if path.is_file()})
            _earlier_outputs.update(_outputs(folder))


def _selected(config: DictConfig, key: str) -> list[tuple[str, str]]:
    """(key, value) of the config's `key`, each item's for a `*` (a list or mapping), the ones that are set."""
    head, star, tail = key.partition(".*.")
    if not star:
        value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        return [(key, str(value))] if isinstance(value, (str, Path)) else []
    items = OmegaConf.select(config, head, default=None, throw_on_resolution_failure=False)
    if isinstance(items, ListConfig):
        names = range(len(items))
    elif isinstance(items, DictConfig):
        names = items.keys()
    else:
        return []
    return [pair for name in names for pair in _selected(config, f"{head}.{name}.{tail}")]
