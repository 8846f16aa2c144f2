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
    assert "data.train.inhouse.root, data.train.inhouse.scene_info.0, init_checkpoint: not set" in line


def test_a_data_folder_that_does_not_exist_names_the_entry(tmp_path):
    line = refused(tmp_path / "run", "experiment=loftr_megadepth", f"data.root={tmp_path / 'nowhere'}")
    assert f"data.train.megadepth: MegaDepth root {tmp_path / 'nowhere' / 'train'} does not exist" in line
    line = refused(tmp_path / "run", "experiment=loftr_scannet", f"data.root={tmp_path / 'nowhere'}")
    assert f"data.train.scannet: index file not found: {tmp_path / 'nowhere' / 'index' / 'intrinsics.npz'}" in line


def test_a_wrong_field_of_a_data_entry_names_it(tmp_path):
    (tmp_path / "world").mkdir()  # beside the run folder: a run folder inside its data is refused
    line = refused(tmp_path / "run", "world.generate=false", f"world.root={tmp_path / 'world'}",
                   "data.train.synthetic.longer_sid=3")
    assert "data.train.synthetic: megadepth dataset: unknown field(s) ['longer_sid']" in line


def test_an_override_of_an_entry_the_data_config_lacks_names_it_and_the_entries(tmp_path):
    """A misspelt entry name (data/synthetic.yaml's entry is `synthetic`) adds an entry without a type."""
    (tmp_path / "world").mkdir()
    line = refused(tmp_path / "run", "world.generate=false", f"world.root={tmp_path / 'world'}",
                   "data.train.synthtic.longer_side=160")
    assert "data.train.synthtic: no such entry in data.train (synthetic)" in line


def test_a_run_folder_inside_a_data_entry_is_refused_naming_the_entry(tmp_path):
    """configs/train.yaml's run-folder check reads every entry's root (data.train.*.root), by its name."""
    photos = tmp_path / "photos"
    photos.mkdir()
    line = refused(photos / "run", "~experiment", "data=homography", f"data.train.homography.root={photos}",
                   f"data.val.homography.root={tmp_path}", "world.generate=false", f"world.root={tmp_path / 'w'}")
    assert f"lies in data.train.homography.root {photos}" in line
