"""Checkpoints written so that a kill or a full disk never costs the previous one.

Lightning 2.6 writes through fsspec to a temporary file in $TMPDIR and `shutil.move`s it into place; when
$TMPDIR is on another filesystem than the run folder (local scratch beside shared storage, as on most
clusters) that move is a copy which truncates the target first, and a kill or a full disk in the copy leaves
last.ckpt empty. Here the temporary file lies beside its target, is synced, and only then replaces it
(`os.replace`, atomic within one filesystem: utils/files.py). Reading goes through models/checkpoint.py's loader.
"""

import errno
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from models.checkpoint import read_checkpoint
from utils.files import write_failure, written_atomically


class CheckpointWriteError(Exception):
    """A checkpoint could not be written (full disk, no permission); the previous one is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints written atomically beside their target; read with `weights_only=True` unless the
    run trusts its files (`trusted`), through the project's one checkpoint loader."""

    def __init__(self, trusted: bool = False):
        self.trusted = trusted

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        try:
            with written_atomically(path) as temporary:
                try:
                    with open(temporary, "wb") as file:
                        torch.save(checkpoint, file)
                except RuntimeError as error:  # while the partial file still takes its space
                    cause = write_error(error, path.parent)
                    if cause is error:
                        raise
                    raise cause from error
        except OSError as error:
            raise CheckpointWriteError(f"cannot write checkpoint {path.name} to {path.parent}: "
                                       f"{write_failure(error)}; any previous one there is intact") from None

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, trusted=self.trusted if weights_only is None else not weights_only)


def write_error(error: RuntimeError, folder: Path) -> BaseException:
    """The OSError behind torch.save's RuntimeError, else `error` itself. Its zip writer swallows the OSError
    of a full disk and raises "unexpected pos" (a short write): the OSError is then the error's context or,
    where that is lost, the folder has (almost) no space left."""
    cause = error.__context__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__
    if cause is not None:
        return cause
    space = os.statvfs(folder)
    if "unexpected pos" in str(error) and space.f_bavail * space.f_frsize < (1 << 20):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
    return error
