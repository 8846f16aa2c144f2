"""train.py refuses a configuration it cannot run with one line naming the key, exit code 2, before a model, a
checkpoint or a log folder exists: README's commands with the data folder left out, keys still `???`, a wrong
field of a data entry, a root that does not exist."""

from pathlib import Path

import pytest

from tests.helpers import run_here

ROOT = Path(__file__).resolve().parents[1]


def refused(run_dir: Path, *overrides: str) -> str:
    """train.py's stderr for a run that must stop at its configuration; checks the exit code and that nothing
    but Hydra's own record of the config was written."""
    # trainer=cpu: the GPU recipes on a machine without CUDA would stop first at that (tests/test_faults_values.py)
    run = run_here([str(ROOT / "train.py"), *overrides, "trainer=cpu", f"hydra.run.dir={run_dir}"], ROOT)
    assert run.returncode == 2, run.stderr[-2000:]
    written = {path.name for path in run_dir.iterdir()} if run_dir.is_dir() else set()
    assert written <= {".hydra", "train.log"}, written
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), run.stderr
    return lines[0]


@pytest.mark.parametrize("experiment", ["loftr_megadepth", "loftr_scannet"])  # the others extend the first
def test_a_recipe_without_its_data_folder_names_data_root(tmp_path, experiment):
    assert "data.root: not set; give data.root=..." in refused(tmp_path / "run", f"experiment={experiment}")


def test_finetuning_without_a_checkpoint_or_data_names_every_missing_key(tmp_path):
    line = refused(tmp_path / "run", "experiment=finetune_inhouse")
    assert "data.train.0.root, data.train.0.scene_info.0, init_checkpoint: not set" in line


def test_a_data_folder_that_does_not_exist_names_the_entry(tmp_path):
    line = refused(tmp_path / "run", "experiment=loftr_megadepth", f"data.root={tmp_path / 'nowhere'}")
    assert f"data.train.0: MegaDepth root {tmp_path / 'nowhere' / 'train'} does not exist" in line
    line = refused(tmp_path / "run", "experiment=loftr_scannet", f"data.root={tmp_path / 'nowhere'}")
    assert f"data.train.0: index file not found: {tmp_path / 'nowhere' / 'index' / 'intrinsics.npz'}" in line


def test_a_wrong_field_of_a_data_entry_names_it(tmp_path):
    (tmp_path / "world").mkdir()  # beside the run folder: a run folder inside its data is refused
    line = refused(tmp_path / "run", "world.generate=false", f"world.root={tmp_path / 'world'}",
                   "+data.train.0.longer_sid=3")
    assert "data.train.0: megadepth dataset: unknown field(s) ['longer_sid']" in line
