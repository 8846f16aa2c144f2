"""Bad input and faults, tried as a user tries them: each case runs a command (train.py, evaluate.py,
match.py, `python -m data.inhouse prepare`) and asserts exit code 2, one line on stderr naming the input,
no traceback, and that no file written before changed. The table, by section:

- checkpoints and run folders: a kill -9 or a full disk while a checkpoint is written ($TMPDIR on another
  filesystem), a run folder of an earlier run, every bad `ckpt_path=` / `init_checkpoint=` / `--checkpoint`
  (pickled code that must not run, truncated, random bytes, NaN weights, weights only, another model),
  wrongly typed or unknown config values;
- data files: pickled code in scene-info and index files (the command must not run), a missing or corrupt
  file in any split found before the first training step, wrongly typed dataset fields;
- outputs and options of match.py, evaluate.py and prepare: an output on an input, images too large, bad
  stress and harness options, a full disk while writing results, copies of one photo, bad labels.
"""

import builtins
import errno
import io
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train as train_script
from data.datamodule import DataConfig, PairDataModule
from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.synthetic.texture import make_texture
from data.untrusted import load_index
from lightning_modules.run_folder import used_run_folder
from models.loftr import LoFTR
from tests.faults_helpers import FAST, MEGADEPTH_VAL, earlier_run, evaluate_command, files_in, first_val_files, train
from tests.helpers import assert_unchanged, refusal, run_here, snapshot
from tests.match_helpers import write_image
from tests.train_helpers import ROOT, config_of, small

pytestmark = pytest.mark.usefixtures("_no_progress_bars")  # a bar's line is not the refusal's

# --------------------------------------------------------------------------- checkpoints and run folders (train.py)

# Started by Python before train.py (as sitecustomize): SIGKILL the process the moment it opens a file in a
# checkpoints/ folder for writing for the N-th time (N = KILL_AT_CHECKPOINT_WRITE), with the file just
# created or truncated, as a write starts; SIMULATE_EXDEV: renames between folders fail as across filesystems.
KILLER = """
import builtins, errno, os, signal

_open, _opened = builtins.open, [0]


def _watched_open(file, mode="r", *args, **kwargs):
    path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
    if "w" in mode and f"{os.sep}checkpoints{os.sep}" in path:
        _opened[0] += 1
        if _opened[0] == int(os.environ["KILL_AT_CHECKPOINT_WRITE"]):
            _open(file, mode, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
    return _open(file, mode, *args, **kwargs)


builtins.open = _watched_open
if os.environ.get("SIMULATE_EXDEV"):
    _rename = os.rename

    def _rename_within_one_folder(source, target, *args, **kwargs):
        if os.path.dirname(os.path.abspath(source)) != os.path.dirname(os.path.abspath(target)):
            raise OSError(errno.EXDEV, "Invalid cross-device link", source)
        return _rename(source, target, *args, **kwargs)

    os.rename = _rename_within_one_folder
"""


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def other_filesystem_tmpdir(tmp_path: Path) -> dict[str, str]:
    """$TMPDIR on another filesystem than `tmp_path`: /dev/shm where it is one, else a simulated one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return {"TMPDIR": str(shm)}
    return {"SIMULATE_EXDEV": "1"}


def across_filesystems(rename):
    """`rename` failing as across filesystems whenever its two paths lie in different folders."""
    def rename_within_one_folder(source, target, *args, **kwargs):
        if os.path.dirname(os.path.abspath(source)) != os.path.dirname(os.path.abspath(target)):
            raise OSError(errno.EXDEV, "Invalid cross-device link", source)
        return rename(source, target, *args, **kwargs)

    return rename_within_one_folder


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(world, tmp_path):
    """kill -9 as the second last.ckpt is being written, $TMPDIR on another filesystem: last.ckpt still
    holds step 1, whole, and the run resumes from it."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILLER)
    run_dir = tmp_path / "run"
    overrides = small(world, run_dir, "trainer.max_steps=3", "callbacks.checkpoint.every_n_train_steps=1",
                      "data.val.synthetic=null")
    env = dict(os.environ, PYTHONPATH=f"{hooks}{os.pathsep}{ROOT}", KILL_AT_CHECKPOINT_WRITE="2", OMP_NUM_THREADS="1",
               **other_filesystem_tmpdir(tmp_path))
    killed = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert step_of(last) == 1
    resumed = train_script.train(config_of([*overrides, f"ckpt_path={last}"]))
    assert resumed["global_step"] == step_of(last) == 3


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous_one(world, tmp_path, monkeypatch):
    """The disk fills as the second last.ckpt starts, $TMPDIR on another filesystem: one line naming the
    folder, exit code 2, last.ckpt still the first one, no partial file left beside it."""
    real_open, opened = open, []

    def filling_open(file, mode="r", *args, **kwargs):
        path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
        if "w" in mode and f"{os.sep}checkpoints{os.sep}" in path:
            opened.append(path)
            if len(opened) == 2:
                real_open(file, mode, *args, **kwargs).close()  # created or truncated, then no space
                raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_open(file, mode, *args, **kwargs)

    run_dir = tmp_path / "run"
    other = other_filesystem_tmpdir(tmp_path)
    if "TMPDIR" in other:
        monkeypatch.setattr(tempfile, "tempdir", other["TMPDIR"])
    else:
        monkeypatch.setattr(os, "rename", across_filesystems(os.rename))
    monkeypatch.setattr("builtins.open", filling_open)
    run = run_here([str(ROOT / "train.py"), *small(world, run_dir, "trainer.max_steps=3", "data.val.synthetic=null",
                                                   "callbacks.checkpoint.every_n_train_steps=1")], tmp_path)
    monkeypatch.undo()
    refusal(run, f"{run_dir / 'checkpoints'}", "disk is full")
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == 1
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]


def test_a_full_disk_at_the_summary_is_one_line_and_keeps_the_checkpoints(world, tmp_path, monkeypatch):
    """The disk fills as summary.json is written at the end: one line naming it, the earlier summary and the
    trained checkpoint whole."""
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    (run_dir / "summary.json").write_text('{"earlier": true}\n')
    before = snapshot(run_dir / "summary.json")
    real_open = open

    def filling_open(file, mode="r", *args, **kwargs):
        if "w" in mode and os.fspath(file).endswith("summary.json"):
            real_open(file, mode, *args, **kwargs).close()
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", filling_open)
    monkeypatch.setattr(io, "open", filling_open)
    run = run_here([str(ROOT / "train.py"), *small(world, run_dir, "trainer.max_steps=1", "data.val.synthetic=null")],
                   tmp_path)
    monkeypatch.undo()
    refusal(run, str(run_dir / "summary.json"), "No space left on device")
    assert_unchanged(before)
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == 1


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_a_run_folder_of_an_earlier_run_is_refused(world, tmp_path, sweep):
    folder = earlier_run(tmp_path / "earlier" / ("0" if sweep else ""))
    before = snapshot(tmp_path / "earlier")
    where = ["-m", f"hydra.sweep.dir={tmp_path / 'earlier'}", "seed=1,2"] if sweep else [f"hydra.run.dir={folder}"]
    run = run_here([str(ROOT / "train.py"), *where, *small(world, None, "trainer.max_steps=1")], tmp_path)
    refusal(run, str(tmp_path / "earlier"), "ckpt_path=", "overwrite_run_dir=true")
    assert_unchanged(before)


def test_resuming_or_overwriting_a_run_folder_is_allowed(tmp_path):
    folder = earlier_run(tmp_path / "run")
    assert used_run_folder(folder, None, overwrite=False) is not None
    assert used_run_folder(folder, str(folder / "checkpoints" / "last.ckpt"), overwrite=False) is None
    assert used_run_folder(folder, str(tmp_path / "elsewhere" / "checkpoints" / "last.ckpt"), False) is not None
    assert used_run_folder(folder, None, overwrite=True) is None
    assert used_run_folder(tmp_path / "new", None, overwrite=False) is None


def bad_checkpoint(kind: str, trained: Path, folder: Path) -> tuple[Path, list[str]]:
    """A checkpoint file that must be refused, and what the refusal must name besides the file."""
    path, checkpoint = folder / f"{kind}.ckpt", torch.load(trained, map_location="cpu", weights_only=True)
    if kind == "pickled_code":
        torch.save({**checkpoint, "callbacks": ShellCommand(f"touch {folder / 'MARKER'}")}, path)
        return path, ["posix.system"]
    if kind == "truncated":
        path.write_bytes(trained.read_bytes()[: trained.stat().st_size // 2])
        return path, ["truncated or corrupt"]
    if kind == "random_bytes":
        # bytes that torch.load fails on in several ways (an unpickling error, an index error, ...): all of them
        # are "not a PyTorch checkpoint"; seeded so that every run tries the same ones
        path.write_bytes(random.Random(0).randbytes(4096))
        return path, ["not a PyTorch checkpoint"]
    if kind == "nan_weights":
        key = sorted(checkpoint["state_dict"])[3]
        checkpoint["state_dict"][key] = torch.full_like(checkpoint["state_dict"][key], float("nan"))
        torch.save(checkpoint, path)
        return path, [key, "NaN"]
    if kind == "pickle_not_torch":
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
        return path, []
    raise ValueError(kind)


KINDS = ["pickled_code", "truncated", "random_bytes", "nan_weights", "pickle_not_torch"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flag", ["ckpt_path", "init_checkpoint"])
def test_a_bad_checkpoint_is_one_line_naming_it(world, trained, tmp_path, kind, flag):
    path, named = bad_checkpoint(kind, trained, tmp_path)
    run = run_here([str(ROOT / "train.py"), *small(world, tmp_path / "run", f"{flag}={path}")], tmp_path)
    refusal(run, str(path), *named)
    assert not (tmp_path / "MARKER").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("command", ["match", "evaluate"])
def test_match_and_evaluate_refuse_nan_weights_naming_the_key(world, trained, tmp_path, command):
    path, named = bad_checkpoint("nan_weights", trained, tmp_path)
    if command == "match":
        images = sorted(world.glob("*/images/*.jpg"))[:2]
        args = ["match.py", *map(str, images), "--checkpoint", str(path), "--out", str(tmp_path / "m.npz")]
    else:
        args = ["evaluate.py", "benchmark=synthetic", f"benchmark.root={world}", "matcher=loftr",
                f"checkpoint={path}", f"out_dir={tmp_path / 'eval'}"]
    run = run_here([str(ROOT / args[0]), *args[1:]], tmp_path)
    refusal(run, str(path), *named)


def test_resuming_from_weights_only_or_another_model_is_one_line(world, trained, tmp_path):
    weights_only = tmp_path / "weights.ckpt"
    torch.save(torch.load(trained, map_location="cpu", weights_only=True)["state_dict"], weights_only)
    run = run_here([str(ROOT / "train.py"), *small(world, tmp_path / "a", f"ckpt_path={weights_only}")], tmp_path)
    refusal(run, str(weights_only), f"init_checkpoint={weights_only}")
    run = run_here([str(ROOT / "train.py"), *small(world, tmp_path / "b", f"ckpt_path={trained}",
                                                    "model.coarse.layer_names=[self,cross]")], tmp_path)
    refusal(run, str(trained), "another model", "unexpected")


@pytest.mark.parametrize(("script", "override", "named"), [
    ("train.py", "trainer.max_steps=abc", ["trainer.max_steps='abc'", "an int"]),
    ("train.py", "trainer.precision=bf17", ["trainer.precision='bf17'", "'bf16-mixed'"]),
    ("train.py", "callbacks.checkpoint.every_n_train_steps=abc", ["callbacks.checkpoint.every_n_train_steps=abc",
                                                                 "Integer"]),
    ("train.py", "model.coarse.d_model=abc", ["model.coarse.d_model=abc", "Integer"]),
    ("train.py", "model.coarse.d_mdel=3", ["model.coarse.d_mdel", "not in 'TransformerConfig'"]),
    ("train.py", "experiment=nope", ["experiment/nope", "loftr_megadepth"]),
    ("evaluate.py", "matcher=nope", ["matcher/nope", "sift"]),
    ("evaluate.py", "max_pairs=abc", ["max_pairs", "'abc'"]),
])
def test_a_wrongly_typed_or_unknown_value_is_one_line_naming_the_key(world, tmp_path, script, override, named):
    where = small(world, tmp_path / "run", "trainer.max_steps=1") if script == "train.py" else \
        [f"out_dir={tmp_path / 'out'}"]
    run = run_here([str(ROOT / script), *where, override], tmp_path)
    refusal(run, *named)
    assert not (tmp_path / "run" / "checkpoints").exists()

# ------------------------------------------------------------------------------------------------------- data files

SHARED = ROOT.parent / "shared" / "data"


class ShellCommand:
    """Unpickled by plain pickle, this runs `command` in a shell: what a hostile scene-info file holds."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def evaluate(run_dir: Path, *overrides: str):
    return run_here([str(ROOT / "evaluate.py"), "matcher=sift", "max_pairs=2", "plot_pairs=0", *overrides,
                     f"out_dir={run_dir}"], run_dir.parent)


def assert_stopped_before_training(run_dir: Path) -> None:
    written = {path.name for path in run_dir.iterdir()} if run_dir.is_dir() else set()
    assert written <= {".hydra", "train.log"}, written


# --- pickled code -------------------------------------------------------------------------------------------

def hostile_scene_info(source: Path, target: Path, marker: Path) -> Path:
    """`source`'s scene-info dict, its image paths replaced by an object that touches `marker` when unpickled."""
    info = pickle.loads(source.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pickle.dumps({**info, "image_paths": ShellCommand(f"touch {marker}")}))
    return target


def hostile_index(source: Path, target: Path, marker: Path) -> Path:
    """`source`'s np.savez archive with one more array: an object array holding the shell command."""
    with np.load(source) as archive:
        arrays = dict(archive.items())
    command = np.empty(1, dtype=object)
    command[0] = ShellCommand(f"touch {marker}")
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, **arrays, extra=command)
    return target


def megadepth_val(worlds, tmp_path, marker):
    folder = tmp_path / "hostile"
    hostile = hostile_scene_info(worlds["megadepth"] / MEGADEPTH_VAL, folder / MEGADEPTH_VAL.name, marker)
    return hostile, lambda run_dir: train(run_dir, "loftr_megadepth", worlds["megadepth"],
                                          f"data.val.megadepth.scene_info_dir={folder}")


def scannet_train(worlds, tmp_path, marker):
    index = worlds["scannet"] / "index" / "scene_data" / "train"
    folder = tmp_path / "hostile"
    hostile = hostile_index(index / "scene0000_00.npz", folder / "scene0000_00.npz", marker)
    return hostile, lambda run_dir: train(run_dir, "loftr_scannet", worlds["scannet"],
                                          f"data.train.scannet.index_dir={folder}")


def megadepth1500(worlds, tmp_path, marker):
    folder = tmp_path / "hostile"
    shutil.copytree(worlds["megadepth"] / "index" / "megadepth_test_1500_scene_info", folder)
    hostile = folder / "0015_0.1_0.3.npz"
    hostile_scene_info(hostile, hostile, marker)
    return hostile, lambda run_dir: evaluate(run_dir, "benchmark=megadepth1500",
                                             f"benchmark.root={worlds['megadepth'] / 'test'}",
                                             f"benchmark.scene_info_dir={folder}")


def scannet1500(worlds, tmp_path, marker):
    folder = tmp_path / "hostile"
    shutil.copytree(worlds["scannet"] / "index" / "scannet_test_1500", folder)
    hostile = hostile_index(folder / "test.npz", folder / "test.npz", marker)
    return hostile, lambda run_dir: evaluate(run_dir, "benchmark=scannet1500",
                                             f"benchmark.root={worlds['scannet'] / 'test'}",
                                             f"benchmark.index_dir={folder}")


@pytest.mark.parametrize("case", [megadepth_val, scannet_train, megadepth1500, scannet1500])
def test_pickled_code_in_an_index_file_is_refused_unrun(worlds, tmp_path, case):
    marker = tmp_path / "MARKER"
    hostile, command = case(worlds, tmp_path, marker)
    before = snapshot(worlds["megadepth"], worlds["scannet"], hostile)
    run_dir = tmp_path / "run"
    run = command(run_dir)
    assert not marker.exists(), "the pickled shell command ran"
    refusal(run, str(hostile), "refuses to unpickle posix.system", "trust_index=true")
    assert_unchanged(before)


def test_a_trusted_index_is_unpickled_in_full(worlds, tmp_path):
    """A scene-info file that holds an object beyond plain containers and numpy arrays (an OrderedDict) is
    refused by default and read with trust_index=true."""
    from collections import OrderedDict

    info = pickle.loads((worlds["megadepth"] / MEGADEPTH_VAL).read_bytes())
    path = tmp_path / "ordered.npz"
    path.write_bytes(pickle.dumps(OrderedDict(info)))
    config = dict(root=str(worlds["megadepth"] / "test"), scene_info=(str(path),), longer_side=160, depth_pad_size=160)
    with pytest.raises(ValueError, match=r"ordered.npz: refuses to unpickle collections.OrderedDict"):
        MegaDepthPairs(MegaDepthConfig(**config))
    assert len(MegaDepthPairs(MegaDepthConfig(**config, trust_index=True))) == len(info["pair_infos"])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_our_own_scene_info_files_read_under_every_pickle_protocol(worlds, tmp_path, protocol):
    info = pickle.loads((worlds["megadepth"] / MEGADEPTH_VAL).read_bytes())
    path = tmp_path / "scene.npz"
    path.write_bytes(pickle.dumps(info, protocol=protocol))
    read = load_index(path)
    assert pickle.dumps(read) == pickle.dumps(info)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize("name", ["megadepth_sample/sample.npz",
                                  "loftr_test_indices/megadepth_test_1500_scene_info/0015_0.1_0.3.npz",
                                  "loftr_test_indices/scannet_test_1500/test.npz",
                                  "loftr_test_indices/scannet_test_1500/intrinsics.npz"])
def test_the_official_index_files_read_as_numpy_reads_them(name):
    path = SHARED / name
    expected = np.load(path, allow_pickle=True)
    expected = dict(expected.items()) if hasattr(expected, "files") else expected
    read = load_index(path)
    assert sorted(read) == sorted(expected)
    for key in expected:  # object arrays of arrays: equal when their pickles are
        assert pickle.dumps(read[key]) == pickle.dumps(expected[key]), key


# --- files of every split, checked in setup ------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
@pytest.mark.parametrize("file", ["megadepth image", "megadepth depth", "scannet image", "scannet depth"])
def test_a_bad_validation_file_stops_training_before_its_first_step(worlds, tmp_path, file, damage):
    layout = file.split()[0]
    world = tmp_path / layout
    shutil.copytree(worlds[layout], world, symlinks=True)  # megadepth's test/ is a link to train/
    bad = world / "test" / first_val_files(worlds)[file]
    if damage == "missing":
        bad.unlink()
    else:
        bad.write_bytes(b"not what the loader reads")
    run_dir = tmp_path / "run"
    run = train(run_dir, f"loftr_{layout}", world)
    refusal(run, f"data.val.{layout}: ", str(bad))
    assert_stopped_before_training(run_dir)


def test_bad_files_of_homography_and_inhouse_entries_are_named_in_setup(worlds, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0.png"), make_texture(120, 160, seed=0))
    (photos / "1.png").write_bytes(b"not an image")
    module = PairDataModule(DataConfig(val={"photos": {"type": "homography", "root": str(photos)}}, num_workers=0))
    with pytest.raises(ValueError, match=rf"data.val.photos: .*{photos / '1.png'}"):
        module.setup()
    # an inhouse scene (prepare's layout: a scene-info file with correspondences) whose image is missing
    source = worlds["megadepth"] / MEGADEPTH_VAL
    info = pickle.loads(source.read_bytes())
    info["correspondences"] = [np.tile([10.0, 10.0, 12.0, 11.0], (8, 1)) for _ in info["pair_infos"]]
    (tmp_path / "site.npz").write_bytes(pickle.dumps(info))
    images = tmp_path / "inhouse"
    shutil.copytree(worlds["megadepth"] / "train", images, symlinks=True)
    (i0, _), *_ = info["pair_infos"][0]
    (images / info["image_paths"][i0]).unlink()
    entry = {"type": "inhouse", "root": str(images), "scene_info": [str(tmp_path / "site.npz")]}
    missing = images / info["image_paths"][i0]
    with pytest.raises(FileNotFoundError, match=rf"data.test.site: inhouse scene site: .*{missing}"):
        PairDataModule(DataConfig(test={"site": entry}, num_workers=0)).setup()


def test_skip_bad_pairs_leaves_training_files_to_the_loader(worlds, tmp_path):
    world = tmp_path / "megadepth"
    shutil.copytree(worlds["megadepth"], world, symlinks=True)
    info = pickle.loads((world / "index" / "scene_info_0.1_0.7" / "0000_0.1_0.7.npz").read_bytes())
    (world / "train" / info["image_paths"][info["pair_infos"][0][0][0]]).unlink()
    entry = {"type": "megadepth", "root": str(world / "train"),
             "scene_info": [str(world / "index" / "scene_info_0.1_0.7" / "0000_0.1_0.7.npz")]}
    PairDataModule(DataConfig(train={"world": entry}, skip_bad_pairs=True, num_workers=0)).setup()  # skipped when read
    with pytest.raises(FileNotFoundError, match="data.train.world: "):
        PairDataModule(DataConfig(train={"world": entry}, num_workers=0)).setup()


# --- field types ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout, override, named", [
    ("megadepth", "data.train.megadepth.longer_side=abc",
     "data.train.megadepth: megadepth dataset: longer_side='abc' is not an int"),
    ("megadepth", "data.val.megadepth.min_overlap=high",
     "data.val.megadepth: megadepth dataset: min_overlap='high' is not a float"),
    ("megadepth", "data.train.megadepth.crop_size=[64,abc]", "crop_size=(64, 'abc') is not a tuple[int, int] or None"),
    ("megadepth", "data.train.megadepth.longer_side=true", "longer_side=True is not an int"),
    ("megadepth", "data.val.megadepth.trust_index=maybe",
     "data.val.megadepth: megadepth dataset: trust_index='maybe' is not a bool"),
    ("scannet", "data.train.scannet.image_size=160",
     "data.train.scannet: scannet dataset: image_size=160 is not a tuple"),
])
def test_a_wrongly_typed_field_names_the_key_and_the_type(worlds, tmp_path, layout, override, named):
    run_dir = tmp_path / "run"
    refusal(train(run_dir, f"loftr_{layout}", worlds[layout], override), named)
    assert_stopped_before_training(run_dir)

# --------------------------------------------------------- outputs and options of match.py, evaluate.py and prepare

MATCH = str(ROOT / "match.py")


@pytest.fixture
def no_model_run(monkeypatch):
    """LoFTR's forward fails the test instead of allocating what a refused input would need."""
    def forward(*args, **kwargs):
        raise AssertionError("the model ran on an input that should have been refused")

    monkeypatch.setattr(LoFTR, "forward", forward)


# ----------------------------------------------------------------------------------------------- match.py


# the arguments after a.png b.png, and what the refusal names; CKPT: a real checkpoint file
OUTPUT_ON_INPUT = {
    "--out is image1": (["--out", "b.png"], "--out", "image1"),
    "--plot is image0": (["--out", "m.npz", "--plot", "a.png"], "--plot", "image0"),
    "--overlay is image1": (["--out", "m.npz", "--overlay", "b.png"], "--overlay", "image1"),
    "--panorama is image0": (["--out", "m.npz", "--panorama", "./a.png"], "--panorama", "image0"),
    "--out is image1 by another path": (["--out", "sub/../b.png"], "--out", "image1"),
    "--plot is image0 through a link": (["--out", "m.npz", "--plot", "link.png"], "--plot", "image0"),
    "--out is --ground-truth": (["--out", "truth.txt", "--plot", "m.png", "--ground-truth", "truth.txt"],
                                "--out", "--ground-truth"),
    "--out is --checkpoint": (["--out", "CKPT", "--checkpoint", "CKPT"], "--out", "--checkpoint"),
    "--plot and --overlay are one file": (["--out", "m.npz", "--plot", "x.png", "--overlay", "x.png"],
                                          "--plot", "--overlay"),
    "--out and --panorama are one file": (["--out", "x.png", "--panorama", "x.png"], "--out", "--panorama"),
}


@pytest.mark.parametrize("case", OUTPUT_ON_INPUT)
def test_match_refuses_an_output_on_an_input(photos, request, case):
    args, *named = OUTPUT_ON_INPUT[case]
    if "CKPT" in args:
        checkpoint = photos / "model.ckpt"
        checkpoint.symlink_to(request.getfixturevalue("official_checkpoint"))
        args = [str(checkpoint) if arg == "CKPT" else arg for arg in args]
    (photos / "sub").mkdir()
    before = snapshot(photos)
    random = [] if "--checkpoint" in args else FAST[:1]
    run = run_here([MATCH, "a.png", "b.png", *random, *FAST[1:], *args], photos)
    refusal(run, *named)
    assert_unchanged(before)
    assert files_in(photos) == sorted(before)  # and nothing new


@pytest.fixture(scope="module")
def huge_photo(tmp_path_factory) -> Path:
    """A 9000x9000 black PNG (a few hundred kB)."""
    return write_image(tmp_path_factory.mktemp("huge") / "huge.png", np.zeros((9000, 9000), np.uint8))


def test_match_refuses_images_too_large_for_coarse_matching(huge_photo, no_model_run):
    """(9000/8)^4 = 1.6e12 coarse-cell pairs: terabytes for the dual-softmax, refused before the model runs."""
    run = run_here([MATCH, "huge.png", "huge.png", *FAST, "--out", "m.npz"], huge_photo.parent)
    refusal(run, "image0 huge.png", "9000x9000", "--resize")
    assert not (huge_photo.parent / "m.npz").exists()


def test_match_refuses_a_resize_too_large_for_coarse_matching(photos, no_model_run):
    run = run_here([MATCH, "a.png", "b.png", *FAST[:1], "--resize", "12000", *FAST[3:], "--out", "m.npz"], photos)
    refusal(run, "image0 a.png", "160x120", "--resize 12000")


# ----------------------------------------------------------------------------------------------- evaluate.py


# the overrides, and what the refusal names
EVALUATE_REFUSALS = {
    "angles not numbers": (["stress=rotation", "stress_config.angles=[abc]"], "stress_config.angles", "finite"),
    "angles not a list": (["stress=rotation", "stress_config.angles=45"], "stress_config.angles", "list"),
    "angle not finite": (["stress=rotation", "stress_config.angles=[nan]"], "stress_config.angles", "finite"),
    "no angles": (["stress=rotation", "stress_config.angles=[]"], "stress_config.angles", "at least one"),
    "tilt below 1": (["stress=tilt", "stress_config.tilts=[0.5]"], "stress_config.tilts", ">= 1"),
    "no tilts": (["stress=tilt", "stress_config.tilts=[]"], "stress_config.tilts", "at least one"),
    "seed not a number": (["stress=tilt", "stress_config.seed=abc"], "stress_config.seed", "whole number"),
    "max_pairs negative": (["max_pairs=-1"], "max_pairs", ">= 1"),
    "max_pairs not a number": (["max_pairs=all"], "max_pairs", ">= 1"),
    "images too large for LoFTR": (["matcher=loftr", "benchmark.resize.longer_side=9000"], "9000x",
                                   "too large", "benchmark.resize"),
}


@pytest.mark.parametrize("case", EVALUATE_REFUSALS)
def test_evaluate_refuses_bad_options_naming_the_key(photo_folder, tmp_path, no_model_run, case):
    overrides, *named = EVALUATE_REFUSALS[case]
    run = run_here(evaluate_command(photo_folder, tmp_path / "run", *overrides), ROOT)
    refusal(run, *named)
    assert not (tmp_path / "run" / "results.csv").exists()


class FullDisk:
    """A file open for writing that takes `room` more bytes, then fails as a full disk does."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.file.close()


@pytest.fixture
def disk_full_at(monkeypatch):
    """disk_full_at(NAME): the disk fills 16 bytes into any file whose name contains NAME (its temporary
    files too), however it is opened (open, Path.write_text, PIL)."""
    def fill_at(name: str) -> None:
        real_open = io.open

        def open_(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and name in Path(file).name and set(mode) & set("wax+"):
                return FullDisk(handle, room=16)
            return handle

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)

    return fill_at


@pytest.mark.parametrize("target", ["results.csv", "summary.json", "cumulative_errors.png", "001.png"])
def test_evaluate_on_a_full_disk_names_the_folder_and_keeps_earlier_results(photo_folder, tmp_path, disk_full_at,
                                                                             target):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "results.csv").write_text("name,group\nearlier,run\n")
    (out_dir / "summary.json").write_text('{"title": "earlier run"}\n')
    before = snapshot(out_dir)
    disk_full_at(target)
    run = run_here(evaluate_command(photo_folder, out_dir, "plot_pairs=1"), ROOT)
    refusal(run, f"cannot write the results to {out_dir}", "the disk is full")
    assert_unchanged(before)
    assert not [path for path in files_in(out_dir) if target in path.name and path not in before]  # no half file


# ----------------------------------------------------------------------------------------------- data.inhouse

def prepare(*args: str):
    return run_here(["-m", "data.inhouse", "prepare", "--threads", "1", *args], ROOT)


def test_prepare_says_copies_of_one_photo_have_no_baseline(tmp_path):
    folder = tmp_path / "copies"
    folder.mkdir()
    image = make_texture(240, 320, seed=5)
    for name in ("a.png", "b.png", "c.png"):
        write_image(folder / name, image)
    run = prepare("--images", str(folder), "--out", str(tmp_path / "out"))
    refusal(run, str(folder), "3 photos", "identical", "baseline")
    assert not (tmp_path / "out").exists()  # refused before SfM


# labels.csv's text, and what the refusal names besides the file
BAD_LABELS = {
    "malformed line": ("a.png,b.png,1,2,3\n", "labels.csv line 1", "expected 6 fields"),
    "photo not in the folder": ("a.png,b.png,1,2,3,4\na.png,c.png,1,2,3,4\n", "labels.csv line 2", "c.png"),
    "point outside its photo": ("a.png,b.png,1,2,3,4\nb.png,a.png,1,2,330,4\n", "labels.csv line 2", "outside"),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_prepare_checks_the_labels_before_sfm(two_photos, tmp_path, case):
    text, *named = BAD_LABELS[case]
    (tmp_path / "labels.csv").write_text(text)
    run = prepare("--images", str(two_photos), "--out", str(tmp_path / "out"), "--labels", str(tmp_path / "labels.csv"))
    refusal(run, *named)
    assert not (tmp_path / "out").exists()  # refused before SfM


# --out and --labels (relative to the test's folder, which holds photos/ and ready/inhouse/images/), and what
# the refusal names
PREPARE_OUTPUT_ON_INPUT = {
    "--out is --images": (["--images", "photos", "--out", "photos"], "--out", "--images photos"),
    "--out inside --images": (["--images", "photos", "--out", "photos/prepared"], "--out", "--images photos"),
    "photo copies onto --images": (["--images", "ready/inhouse/images", "--out", "ready"], "--out", "--images"),
    "report onto --labels": (["--images", "photos", "--out", "ready", "--labels", "ready/report.txt"], "--out",
                             "--labels ready/report.txt"),
}


@pytest.mark.parametrize("case", PREPARE_OUTPUT_ON_INPUT)
def test_prepare_refuses_an_output_on_an_input(two_photos, case):
    args, *named = PREPARE_OUTPUT_ON_INPUT[case]
    folder = two_photos.parent
    (folder / "ready" / "inhouse" / "images").mkdir(parents=True)
    for photo in two_photos.iterdir():
        (folder / "ready" / "inhouse" / "images" / photo.name).write_bytes(photo.read_bytes())
    (folder / "ready" / "report.txt").write_text("a.png,b.png,1,2,3,4\n")
    before = snapshot(folder)
    run = run_here(["-m", "data.inhouse", "prepare", "--threads", "1", *args], folder)
    refusal(run, *named)
    assert_unchanged(before)
    assert files_in(folder) == sorted(before)
