"""The Hydra entry points' common ending: a configuration Hydra cannot compose (a wrongly typed value, an
unknown key or group option) is one line naming the override, with exit code 2, as every other bad input; and
the keys a composed configuration still leaves `???`."""

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from utils.files import write_failure
from utils.run_folder import claimed_folders, forget_records, release_all, restore_records

# Hydra's own report of these lines: where the error sits in the schema, and how to get the full traceback
_NOISE = ("full_key:", "reference_type=", "object_type=", "Set the environment variable HYDRA_FULL_ERROR")


def run_hydra_main(main: Callable[[], None]) -> None:
    """Call a `@hydra.main` function; a composition error becomes `PROGRAM: error: ...` and exit code 2."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra raises its errors instead of printing them
    try:
        main()
        forget_records()
    except (HydraException, OmegaConfBaseException) as error:
        print(f"{Path(sys.argv[0]).name}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # Hydra's own record of the run (.hydra/, the job's log) on a full or read-only disk
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        restore_records(partial=True)
        where = " or ".join(str(folder) for folder in claimed_folders()) or "the run folder"
        print(f"{Path(sys.argv[0]).name}: error: cannot write to {where}: {write_failure(error)}", file=sys.stderr)
        sys.exit(2)
    finally:
        restore_records(partial=False)  # a failed run's record only where it wrote outputs (none after a success)
        release_all()  # the run folder, also after an exit that Hydra's on_run_end never sees


def one_line(error: BaseException) -> str:
    """The messages of `error` and of its causes on one line, `; `-separated, without Hydra's schema notes
    and search path."""
    lines = []
    while error is not None:
        for line in str(error).splitlines():
            line = line.strip().rstrip(".")
            if line.startswith("Config search path"):
                break
            if line and not line.startswith(_NOISE) and line not in lines:
                lines.append(line)
        error = error.__cause__
    return "; ".join(lines).replace(":; ", ": ")


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
