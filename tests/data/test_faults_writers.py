"""Faults of the data writers, tried as a user tries them: `python -m data.synthetic`, train.py's automatic
world (data/synthetic/ensure.py) and `python -m data.inhouse prepare`. Each case asserts exit code 2, one line
on stderr naming the input, no traceback, that no file written before changed and that the failed run left
nothing of its own. The table:

- data.synthetic: an --out holding LoFTR's real MegaDepth index (not overwritten; --overwrite is explicit),
  train.py's world.root on such a folder, a full disk (a real tmpfs: once a segfault in h5py), --size out of
  range or malformed;
- prepare: an --out holding files it did not make, a full disk during structure from motion (pycolmap aborts
  the process: it runs in a child), --camera-mode single on photos of several sizes, photos stored rotated
  with an EXIF orientation (K and the correspondences in the frame the loader returns).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import assert_unchanged, refusal, run_here, small_disk, snapshot

ROOT = Path(__file__).resolve().parents[2]


def files_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*"))


def without_progress(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """`run` with the progress it reported on stderr before failing (tqdm's bar segments, prepare's stage
    lines) left out, for `refusal` to find the one line that says why it stopped (a line glued to a bar would
    go with it)."""
    progress = ("rendering scenes", "prepare: ")
    kept = [line for line in run.stderr.splitlines() if not line.strip().startswith(progress)]
    return subprocess.CompletedProcess(run.args, run.returncode, run.stdout, "\n".join(kept))


def synthetic(*args: str, cwd: Path = ROOT):
    return run_here(["-m", "data.synthetic", "--scenes", "3", "--cameras", "3", "--textures", "procedural", *args], cwd)


# ----------------------------------------------------------------------------------------------- data.synthetic

def real_megadepth_index(root: Path) -> None:
    """The files of LoFTR's data/megadepth/index that the megadepth layout also writes (stand-in bytes)."""
    lists = root / "index" / "trainvaltest_list"
    lists.mkdir(parents=True)
    (lists / "train_list.txt").write_text("0000_0.1_0.3\n0001_0.1_0.3\n")
    (lists / "val_list.txt").write_text("0015_0.1_0.3\n")
    official = root / "index" / "megadepth_test_1500_scene_info"
    official.mkdir(parents=True)
    for stem in ("0015_0.1_0.3", "0022_0.1_0.3"):
        (official / f"{stem}.npz").write_bytes(b"LoFTR's official MegaDepth-1500 pairs " + stem.encode())


def test_synthetic_refuses_a_folder_of_real_data(tmp_path):
    root = tmp_path / "megadepth"
    real_megadepth_index(root)
    before, listed = snapshot(root), files_in(root)
    run = synthetic("--out", str(root), "--layout", "megadepth", "--size", "64x48")
    refusal(run, str(root), "world.json", "--overwrite")
    assert_unchanged(before)
    assert files_in(root) == listed


def test_synthetic_regenerates_its_own_world_and_overwrites_only_when_asked(tmp_path):
    root = tmp_path / "w"
    assert synthetic("--out", str(root), "--size", "64x48").returncode == 0
    (root / "notes.txt").write_text("mine")
    assert synthetic("--out", str(root), "--size", "64x48", "--seed", "1").returncode == 0  # its own: made again
    assert (root / "notes.txt").read_text() == "mine" and '"seed": 1' in (root / "world.json").read_text()
    foreign = tmp_path / "megadepth"
    real_megadepth_index(foreign)
    run = synthetic("--out", str(foreign), "--layout", "megadepth", "--size", "64x48", "--overwrite")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (foreign / "world.json").is_file()


def test_train_refuses_to_generate_a_world_over_real_data(tmp_path):
    from tests.test_train import small

    root = tmp_path / "megadepth"
    real_megadepth_index(root)
    before, listed = snapshot(root), files_in(root)
    run = run_here(["train.py", *small(root, tmp_path / "run", "world.generate=true", "world.scenes=3",
                                       "world.test_scenes=1", "world.cameras=3", "world.size=[64,48]")], ROOT)
    refusal(run, str(root), "world.json")
    assert_unchanged(before)
    assert files_in(root) == listed


def test_synthetic_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    # a real process: the segfault this case once ended in (h5py closing a file it could not flush) would end
    # the test session with it
    disk = tmp_path / "disk"
    with small_disk(disk, 96 * 1024):
        out = disk / "world"
        run = subprocess.run([sys.executable, "-m", "data.synthetic", "--out", str(out), "--scenes", "3", "--cameras",
                              "4", "--size", "160x120", "--textures", "procedural"], cwd=ROOT, capture_output=True,
                             text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=120)
        line = refusal(without_progress(run), str(out), "No space left on device")
        assert "--out" in line
        assert not out.exists()  # nothing of this run left: no half world


@pytest.mark.parametrize("size", ["0x48", "64x-8", "4x4", "100000x100000", "640x", "640x480x3", "axb"])
def test_synthetic_refuses_an_image_size_out_of_range(tmp_path, size):
    run = synthetic("--out", str(tmp_path / "w"), "--size", size)
    refusal(run, "--size", size)
    assert not (tmp_path / "w").exists()
