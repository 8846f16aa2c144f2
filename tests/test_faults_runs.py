"""Faults of run folders and outputs, tried as a user tries them: each case runs a command (train.py,
evaluate.py, match.py, scripts/collect_runs.py, scripts/compare_runs.py) and asserts exit code 2, one line on
stderr naming the input, no traceback, and that no file written before changed. The table, by section:

- run folders (one rule for every entry point, utils/run_folder.py): evaluate.py into a training run's folder
  and train.py into an evaluation's, evaluate.py into the benchmark's data (nothing written there, not even
  Hydra's record), a run folder that is a file (train.py and evaluate.py), a second train.py run into the
  folder of one going on (refused; the folder is the first's alone, and resuming it once killed works), a
  sweep or an evaluation into a folder in use, a refused run releasing its folder;
- outputs onto special files: match.py --out or --plot onto a FIFO or a character device (left as they
  were), written_atomically onto a FIFO, a device or a folder;
- real full disks (a small tmpfs; skipped where mounting is not permitted): the second checkpoint of a run
  (torch's "unexpected pos" read as the full disk it is), evaluate.py (Hydra's own record failing first),
  match.py (one pair, and many pairs into an HDF5 file: those written kept), collect_runs.py --csv,
  compare_runs.py --plot;
- the scripts' inputs: collect_runs.py --csv onto a run's summary.json or overrides.yaml, runs with identical
  overrides (a row each), malformed run folders in collect_runs.py and compare_runs.py, compare_runs.py --plot
  onto a FIFO, a folder or below a file;
- a filesystem without locks: the run goes on, unguarded, with a warning.
"""

import errno
import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_modules.checkpoint_io import write_error
from tests.faults_helpers import FAST, earlier_run, evaluate_command, files_in, write_photo_folder
from tests.helpers import assert_unchanged, refusal, run_here, small_disk, snapshot
from tests.match_helpers import VIEW, share_on_the_warp, stored, write_views
from tests.train_helpers import ROOT, small
from utils.files import NotARegularFileError, written_atomically
from utils.run_folder import LOCK, claim, claimed_folders, release_all

pytestmark = pytest.mark.usefixtures("_no_progress_bars")  # a bar's line is not the refusal's

TRAIN = str(ROOT / "train.py")
EVALUATE = str(ROOT / "evaluate.py")
MATCH = str(ROOT / "match.py")
COLLECT = str(ROOT / "scripts" / "collect_runs.py")
COMPARE = str(ROOT / "scripts" / "compare_runs.py")


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


# ---------------------------------------------------------------------------------------------------- run folders

def test_evaluate_refuses_a_training_run_folder(tmp_path):
    """out_dir=<a train.py run>: its summary.json and .hydra/ would be replaced; nothing there changes."""
    run_dir = earlier_run(tmp_path / "run")
    root = write_photo_folder(tmp_path / "photos")
    before = snapshot(run_dir)
    run = run_here(evaluate_command(root, run_dir), ROOT)
    refusal(run, f"out_dir {run_dir}", "train.py", "checkpoints")
    assert_unchanged(before)
    assert files_in(run_dir) == sorted(before)  # and nothing new: no .hydra/hydra.yaml, no evaluate.log


def test_several_matchers_refuse_a_training_run_in_a_matchers_folder(tmp_path):
    """`matcher=[sift,asift] out_dir=D` writes each matcher's run into D/NAME: a train.py run there is refused
    before any matcher runs, and nothing in D changes."""
    base = tmp_path / "compare"
    run_dir = earlier_run(base / "asift")
    root = write_photo_folder(tmp_path / "photos")
    before = snapshot(base)
    run = run_here([*evaluate_command(root, base), "matcher=[sift,asift]"], ROOT)
    refusal(run, f"out_dir {run_dir}", "train.py", "checkpoints")
    assert_unchanged(before)
    assert not (base / "sift").exists()


def test_train_refuses_an_evaluation_run_folder(world, tmp_path):
    """hydra.run.dir=<an evaluate.py run>: its summary.json and .hydra/ would be replaced."""
    folder = evaluation_run(tmp_path / "sift", "sift")
    before = snapshot(folder)
    run = run_here([TRAIN, f"hydra.run.dir={folder}", *small(world, None, "trainer.max_steps=1")], tmp_path)
    refusal(run, f"hydra.run.dir {folder}", "evaluate.py run", "results.csv", "overwrite_run_dir=true")
    assert_unchanged(before)
    assert files_in(folder) == sorted(before)


@pytest.mark.parametrize("inside", ["", "runs/today"])
def test_evaluate_writes_nothing_into_the_benchmark_it_refuses(tmp_path, inside):
    """out_dir in the benchmark's data: refused before Hydra writes .hydra/*.yaml and evaluate.log there."""
    root = write_photo_folder(tmp_path / "photos")
    before = snapshot(root)
    run = run_here(evaluate_command(root, root / inside), ROOT)
    refusal(run, "out_dir", f"benchmark.root {root}")
    assert_unchanged(before)
    assert sorted(root.rglob("*")) == [root / "one.png"]


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_a_run_folder_that_is_a_file_is_one_line(world, tmp_path, script):
    path = tmp_path / "notes.txt"
    path.write_text("a file, not a folder\n")
    before = snapshot(tmp_path)
    if script == "train.py":
        run = run_here([TRAIN, f"hydra.run.dir={path}", *small(world, None, "trainer.max_steps=1")], tmp_path)
        named = "hydra.run.dir"
    else:
        run = run_here(evaluate_command(write_photo_folder(tmp_path / "photos"), path), ROOT)
        named = "out_dir"
    refusal(run, f"{named} {path}", "is a file")
    assert_unchanged(before)


def test_two_runs_at_once_into_one_folder(world, tmp_path):
    """A train.py run (seed 1) into a hydra.run.dir, and a second one (seed 2) started into it while the first
    goes on: the second is refused in one line naming the first's process, before writing anything (Hydra's
    record, logs, checkpoints), so the folder is the first's alone. Once the first has ended (here killed: its lock file
    stays, unlocked), resuming it in the same folder works. The first trains until killed, so the second,
    run in this process, meets it whatever the machine's speed."""
    folder = tmp_path / "run"
    first = subprocess.Popen([sys.executable, TRAIN, f"hydra.run.dir={folder}", "seed=1",
                              *small(world, None, "trainer.max_steps=100000", "trainer.max_epochs=1000",
                                     "data.val.synthetic=null", "callbacks.checkpoint.every_n_train_steps=1")],
                             cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (folder / "checkpoints" / "last.ckpt").is_file():  # the first holds the folder and trains
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.1)
        second = run_here([TRAIN, f"hydra.run.dir={folder}", "seed=2",
                           *small(world, None, "trainer.max_steps=2", "data.val.synthetic=null")], tmp_path)
    finally:
        first.kill()
        first.communicate(timeout=60)
    refusal(second, str(folder), f"in use by another run (process {first.pid})")
    overrides = (folder / ".hydra" / "overrides.yaml").read_text()
    assert "seed=1" in overrides and "seed=2" not in overrides
    step = step_of(folder / "checkpoints" / "last.ckpt")
    resumed = run_here([TRAIN, f"hydra.run.dir={folder}", "seed=1", f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}",
                        *small(world, None, f"trainer.max_steps={step + 1}", "data.val.synthetic=null")], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert step_of(folder / "checkpoints" / "last.ckpt") == step + 1
    assert not (folder / LOCK).exists()


# ------------------------------------------------------------------------------------------- outputs onto special files

def special_file(path: Path, kind: str) -> Path:
    """A FIFO, or a character device like /dev/null (mknod: root only, else the test is skipped)."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device file needs root")
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("flag", ["--out", "--plot"])
def test_match_refuses_an_output_onto_a_special_file(photos, kind, flag):
    """match.py --out or --plot onto a FIFO or a character device (as root, --out /dev/null would replace the
    system's): refused before matching, naming it; it stays what it was."""
    target = special_file(photos / "target.png", kind)
    outputs = ["--out", str(target)] if flag == "--out" else ["--out", "m.npz", "--plot", str(target)]
    run = run_here([MATCH, "a.png", "b.png", *FAST, *outputs], photos)
    refusal(run, f"{flag} {target}", "not a regular file")
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISCHR)(target.lstat().st_mode)
    assert not (photos / "m.npz").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_written_atomically_replaces_only_regular_files(tmp_path, kind):
    target = tmp_path / "target"
    target.mkdir() if kind == "folder" else special_file(target, kind)
    with pytest.raises(NotARegularFileError, match=f"{target} is a .*, not a regular file"), \
            written_atomically(target) as temporary:
        temporary.write_text("never")
    assert [path.name for path in tmp_path.iterdir()] == ["target"]


# ------------------------------------------------------------------------------------------------ real full disks

CHECKPOINT_BYTES = 7_000_000  # the tiny LoFTR's last.ckpt with its optimizer state (6.9 MB)


def test_a_real_full_disk_during_the_second_checkpoint(world, tmp_path):
    """The run folder on a tmpfs with room for one checkpoint: the second one fills it inside torch.save
    (which reports "unexpected pos", not ENOSPC). One line naming the folder, exit code 2, last.ckpt still the
    first one, whole, and no partial file beside it."""
    run_dir = tmp_path / "disk" / "run"
    with small_disk(tmp_path / "disk", int(1.5 * CHECKPOINT_BYTES)):
        run = run_here([TRAIN, *small(world, run_dir, "trainer.max_steps=3", "data.val.synthetic=null",
                                      "callbacks.checkpoint.every_n_train_steps=1")], tmp_path)
        refusal(run, str(run_dir / "checkpoints"), "disk is full")
        assert step_of(run_dir / "checkpoints" / "last.ckpt") == 1
        assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]


def test_a_short_checkpoint_write_on_a_full_disk_is_a_full_disk(tmp_path):
    """torch's "unexpected pos" without the OSError behind it: a full disk when the folder has no space left,
    else the error itself."""
    error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert write_error(error, tmp_path) is error  # room left: not a full disk
    with small_disk(tmp_path / "disk", 64 * 1024) as disk:
        with pytest.raises(OSError), open(disk / "filler", "wb") as file:
            file.write(bytes(128 * 1024))
        assert write_error(error, disk).errno == errno.ENOSPC


def filled(disk: Path) -> Path:
    """`disk` with every byte taken by a filler file."""
    with pytest.raises(OSError) as full, open(disk / "filler", "wb") as file:
        while True:
            file.write(bytes(1 << 16))
    assert full.value.errno == errno.ENOSPC
    return disk


def test_collect_runs_csv_on_a_real_full_disk(tmp_path):
    """The disk holding --csv is full: one line naming the file and the full disk; the earlier table whole,
    no partial file."""
    sweep = training_sweep(tmp_path / "sweep")
    with small_disk(tmp_path / "disk", 64 * 1024) as disk:
        (disk / "table.csv").write_text("run,step\nearlier,1\n")
        before = snapshot(disk / "table.csv")
        filled(disk)
        run = run_here([COLLECT, str(sweep), "--csv", str(disk / "table.csv")], tmp_path)
        refusal(run, f"--csv {disk / 'table.csv'}", "the disk is full")
        assert_unchanged(before)
        assert sorted(path.name for path in disk.iterdir()) == ["filler", "table.csv"]


def test_compare_runs_plot_on_a_real_full_disk(tmp_path):
    runs = [evaluation_run(tmp_path / name, name) for name in ("sift", "xfeat")]
    with small_disk(tmp_path / "disk", 64 * 1024) as disk:
        (disk / "compare.png").write_bytes(b"the earlier plot")
        before = snapshot(disk / "compare.png")
        filled(disk)
        run = run_here([COMPARE, *map(str, runs), "--plot", str(disk / "compare.png")], tmp_path)
        refusal(run, f"--plot {disk / 'compare.png'}", "the disk is full")
        assert_unchanged(before)
        assert sorted(path.name for path in disk.iterdir()) == ["compare.png", "filler"]


# ------------------------------------------------------------------------------------------------ the scripts' inputs

def training_sweep(folder: Path, overrides: tuple[str, ...] = ("seed=1", "seed=2")) -> Path:
    """A sweep folder as train.py -m leaves it: a run per override, each with summary.json and .hydra/."""
    for k, override in enumerate(overrides):
        (folder / str(k) / ".hydra").mkdir(parents=True)
        (folder / str(k) / ".hydra" / "overrides.yaml").write_text(f"- {override}\n- logger=csv\n")
        (folder / str(k) / "summary.json").write_text(json.dumps(
            {"experiment": "synthetic", "global_step": 10 + k, "validation": {"val/auc@20": 20.0 + k}}))
    return folder


def evaluation_run(folder: Path, matcher: str) -> Path:
    """An evaluate.py run folder of two pairs of the synthetic benchmark: summary.json and results.csv."""
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "title": f"synthetic / {matcher} / opencv RANSAC 0.5 px", "kind": "pose",
        "overall": {"auc@5": 10.0, "auc@10": 20.0, "auc@20": 30.0, "mAA": 20.0, "pairs": 2}}))
    (folder / "results.csv").write_text("name,pose_error_deg\na,1.5\nb,\n")
    return folder


@pytest.mark.parametrize("name", ["summary.json", ".hydra/overrides.yaml"])
def test_collect_runs_never_writes_onto_what_it_reads(tmp_path, name):
    sweep = training_sweep(tmp_path / "sweep")
    before = snapshot(sweep)
    run = run_here([COLLECT, str(sweep), "--csv", str(sweep / "0" / name)], tmp_path)
    refusal(run, f"--csv {sweep / '0' / name}", "would overwrite")
    assert_unchanged(before)
    assert files_in(sweep) == sorted(before)


def test_collect_runs_keeps_a_row_per_run_with_identical_overrides(tmp_path):
    """Two runs of the same overrides (a repeated sweep, seeds left alone): a row each, told apart by folder."""
    sweep = training_sweep(tmp_path / "sweep", ("seed=1", "seed=1"))
    run = run_here([COLLECT, str(sweep), "--csv", str(tmp_path / "table.csv")], tmp_path)
    assert run.returncode == 0, run.stderr
    rows = (tmp_path / "table.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [["seed=1 (0)", "10"], ["seed=1 (1)", "11"]]
    assert "seed=1 (0)" in run.stdout and "seed=1 (1)" in run.stdout


# what a run's file holds, and the file (under the run's folder) the refusal names
MALFORMED_TRAINING_RUNS = {
    "summary not JSON": ("summary.json", "{not json", "summary.json"),
    "summary a list": ("summary.json", "[1, 2]", "summary.json"),
    "validation a list": ("summary.json", '{"validation": [1, 2]}', "summary.json"),
    "final evaluation not a table": ("summary.json", '{"final_evaluation": {"sift": 3}}', "summary.json"),
    "summary not text": ("summary.json", b"\xff\xfe\x00", "summary.json"),
    "overrides not YAML": (".hydra/overrides.yaml", "- [unclosed", "overrides.yaml"),
    "overrides not a list": (".hydra/overrides.yaml", "seed: 1", "overrides.yaml"),
}


@pytest.mark.parametrize("case", MALFORMED_TRAINING_RUNS)
def test_collect_runs_refuses_a_malformed_run(tmp_path, case):
    name, content, named = MALFORMED_TRAINING_RUNS[case]
    sweep = training_sweep(tmp_path / "sweep")
    path = sweep / "1" / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    run = run_here([COLLECT, str(sweep), "--csv", str(tmp_path / "table.csv")], tmp_path)
    refusal(run, str(sweep / "1" / Path(name).parent / named))
    assert not (tmp_path / "table.csv").exists()


# what a run's file holds, and what the refusal names
MALFORMED_EVALUATION_RUNS = {
    "summary not JSON": ("summary.json", "{not json", "summary.json"),
    "summary a list": ("summary.json", "[1, 2]", "summary.json"),
    "title not text": ("summary.json", '{"title": 3, "kind": "pose", "overall": {}}', "title"),
    "unknown kind": ("summary.json", '{"title": "a / b", "kind": "depth", "overall": {}}', "kind"),
    "overall not a table": ("summary.json", '{"title": "a / b", "kind": "pose", "overall": [1]}', "overall"),
    "results without the error column": ("results.csv", "name,matches\na,3\n", "pose_error_deg"),
    "results row too short": ("results.csv", "name,group,pose_error_deg\na\n", "results.csv"),
    "results not text": ("results.csv", b"\xff\xfe\x00", "results.csv"),
}


@pytest.mark.parametrize("case", MALFORMED_EVALUATION_RUNS)
def test_compare_runs_refuses_a_malformed_run(tmp_path, case):
    name, content, named = MALFORMED_EVALUATION_RUNS[case]
    runs = [evaluation_run(tmp_path / matcher, matcher) for matcher in ("sift", "xfeat")]
    path = runs[1] / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    run = run_here([COMPARE, *map(str, runs), "--plot", str(tmp_path / "compare.png")], tmp_path)
    refusal(run, str(runs[1]), named)
    assert not (tmp_path / "compare.png").exists()


@pytest.mark.parametrize("target", ["fifo", "folder", "file in place of a folder"])
def test_compare_runs_plot_onto_what_is_no_file_is_one_line(tmp_path, target):
    runs = [evaluation_run(tmp_path / matcher, matcher) for matcher in ("sift", "xfeat")]
    plot = tmp_path / "compare.png"
    if target == "fifo":
        os.mkfifo(plot)
    elif target == "folder":
        plot.mkdir()
    else:
        (tmp_path / "plots").write_text("a file")
        plot = tmp_path / "plots" / "compare.png"
    run = run_here([COMPARE, *map(str, runs), "--plot", str(plot)], tmp_path)
    refusal(run, f"--plot {plot}")


def test_a_refused_run_releases_its_folder_at_once(world, tmp_path):
    """A run that claimed its folder, then stopped on bad input (exit code 2), leaves it free for the next
    run, also when both run in one process (as the tests run them)."""
    folder = tmp_path / "run"
    run = run_here([TRAIN, f"hydra.run.dir={folder}", *small(world, None, "data.batch_size=5")], tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    assert not (folder / LOCK).exists()  # removed while still locked, as the run ended
    assert not claimed_folders()


def test_evaluate_on_a_real_full_disk_is_one_line(tmp_path):
    """out_dir on a full disk, with an earlier run's results there: one line naming the folder, those
    results whole, no partial file."""
    root = write_photo_folder(tmp_path / "photos")
    with small_disk(tmp_path / "disk", 256 * 1024) as disk:
        out_dir = disk / "run"
        out_dir.mkdir()
        (out_dir / "results.csv").write_text("name,group\nearlier,run\n")
        (out_dir / "summary.json").write_text('{"title": "earlier run"}\n')
        before = snapshot(out_dir)
        filled(disk)
        run = run_here(evaluate_command(root, out_dir), ROOT)
        refusal(run, str(out_dir), "the disk is full")
        assert_unchanged(before)
        assert {path.name for path in out_dir.iterdir()} == {"results.csv", "summary.json"}


def test_evaluate_again_on_a_real_full_disk_keeps_the_earlier_record(tmp_path):
    """An evaluate.py run into its own earlier run's folder, the disk now full: Hydra's record of the earlier
    run (.hydra/*.yaml, which Hydra truncates before it writes) is whole afterwards, as are its results."""
    root = write_photo_folder(tmp_path / "photos")
    with small_disk(tmp_path / "disk", 512 * 1024) as disk:
        out_dir = disk / "run"
        earlier = run_here(evaluate_command(root, out_dir), ROOT)
        assert earlier.returncode == 0, earlier.stderr[-2000:]
        before = snapshot(out_dir)
        assert (out_dir / ".hydra" / "config.yaml") in before
        filled(disk)
        run = run_here(evaluate_command(root, out_dir, "ransac_seed=1"), ROOT)
        refusal(run, str(out_dir), "the disk is full")
        assert_unchanged(before)


def test_a_refused_run_into_an_earlier_runs_folder_keeps_its_record(tmp_path):
    """A bad value found after Hydra wrote its record (evaluate.py ransac_threshold=inf into its earlier run's
    folder): the earlier .hydra/ is put back, so it still describes the results beside it."""
    root = write_photo_folder(tmp_path / "photos")
    out_dir = tmp_path / "run"
    assert run_here(evaluate_command(root, out_dir), ROOT).returncode == 0
    before = snapshot(out_dir)
    refusal(run_here(evaluate_command(root, out_dir, "ransac_threshold=inf"), ROOT), "ransac_threshold")
    assert_unchanged({path: data for path, data in before.items() if path.suffix != ".log"})


@pytest.mark.parametrize("script", ["train.py -m", "evaluate.py"])
def test_a_folder_in_use_is_refused_before_anything_is_written(world, tmp_path, script):
    """Another run holds the folder (here this process, through another open file: flock tells them apart):
    a sweep into it, or an evaluation, is one line saying so, and the folder is left as it was."""
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / LOCK).write_text("4242\n")
    before = snapshot(folder)
    with open(folder / LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if script == "evaluate.py":
            run = run_here(evaluate_command(write_photo_folder(tmp_path / "photos"), folder), ROOT)
        else:
            run = run_here([TRAIN, "-m", f"hydra.sweep.dir={folder}", "seed=1,2",
                            *small(world, None, "trainer.max_steps=1")], tmp_path)
    refusal(run, str(folder), "in use by another run (process 4242)")
    assert_unchanged(before)
    assert files_in(folder) == sorted(before)


def test_match_on_a_real_full_disk_is_one_line(photos, tmp_path):
    """--out and --plot on a full disk, earlier ones there: one line naming the folder; both whole."""
    with small_disk(tmp_path / "disk", 64 * 1024) as disk:
        (disk / "m.npz").write_bytes(b"the earlier matches")
        (disk / "m.png").write_bytes(b"the earlier picture")
        before = snapshot(disk)
        filled(disk)
        run = run_here([MATCH, "a.png", "b.png", *FAST, "--out", str(disk / "m.npz"), "--plot", str(disk / "m.png")],
                       photos)
        refusal(run, str(disk), "the disk is full")
        assert_unchanged(before)
        assert sorted(path.name for path in disk.iterdir()) == ["filler", "m.npz", "m.png"]


def test_match_many_pairs_on_a_real_full_disk_keeps_the_pairs_written(tmp_path):
    """--pairs into an HDF5 file on a disk with room for a few pairs: one line saying the disk is full, the
    pairs written before it whole and right, and the same command, once there is room, goes on. HDF5 crashed
    the process (exit -11) closing a file a full disk had cut short, so this runs in a process of its own."""
    import match

    pairs = write_views(tmp_path, 6)
    (tmp_path / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    with small_disk(tmp_path / "disk", 2 << 20) as disk:
        out = disk / "m.h5"
        command = [sys.executable, MATCH, "--pairs", "pairs.txt", "--image-root", ".", "--matcher", "sift",
                   "--resize", "0", "--out", str(out)]
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(bytes(free - match.FREE_SPACE_MARGIN - (24 << 10)))  # a few pairs' room
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        refusal(run, str(out), "the disk is full", "matched before it are kept")
        kept = stored(out)
        assert 0 < len(kept) < len(pairs) and list(kept) == pairs[:len(kept)]
        assert all(share_on_the_warp(matches, VIEW) > 0.9 for matches in kept.values())
        (disk / "filler").unlink()
        again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        assert f"matched {len(pairs) - len(kept)} pairs, {len(kept)} already in {out}" in again.stdout
        assert sorted(stored(out)) == sorted(pairs)


def test_a_filesystem_without_locks_runs_unguarded_with_a_warning(tmp_path, monkeypatch, capsys):
    """flock failing with ENOLCK (a network mount without a lock service) must not stop every run there."""
    def no_locks(file, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    try:
        claim(tmp_path / "run", "hydra.run.dir")
        assert claimed_folders() == [tmp_path / "run"]
    finally:
        release_all()
    assert capsys.readouterr().err.startswith(f"warning: cannot lock {tmp_path / 'run' / LOCK}")


def test_predictions_on_a_real_full_disk_is_one_line(tmp_path):
    """The disk fills while predictions.h5 is written, after Hydra's record fit (32 kB left): one line naming
    the folder, exit code 2, no partial file; HDF5 crashed closing a file it could not flush (exit -11), so
    this runs in a process of its own."""
    root = write_photo_folder(tmp_path / "photos")
    with small_disk(tmp_path / "disk", 256 * 1024) as disk:
        (disk / "filler").write_bytes(bytes(224 * 1024))
        out_dir = disk / "run"
        run = subprocess.run([sys.executable, *evaluate_command(root, out_dir, "stress=rotation")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env=dict(os.environ, TQDM_DISABLE="1"))
        refusal(run, str(out_dir), "the disk is full")
        assert not list(out_dir.glob("*predictions.h5"))
