"""`latest` beside the run folders, pointing to the newest. The rule for which folder a run may use (checked
before Hydra writes to it, for train.py, evaluate.py and the scripts alike) lives in utils/run_folder.py."""

import os
import sys
from pathlib import Path

from utils.run_folder import used_run_folder  # noqa: F401 (train.py's rule, imported from here by its tests)


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
