"""Small outside files that declare huge or malformed contents, tried as a user tries them: each case runs a
command (evaluate.py predictions=, train.py, match.py, evaluate.py checkpoint=, `python -m data.inhouse prepare`)
and asserts exit code 2, one line on stderr naming the file (and the dataset or key), no traceback, and that no
file written before changed. Memory cases run with the address space bounded (`address_space_limited`): a
reader that allocated what the file declares would fail there with a MemoryError, so passing proves the bound,
not that the machine has memory. The table, by file:

- predictions.h5 (evaluate.py predictions=FILE): 40 M rows declared through a fill value, an external and a
  soft link, scalar, byte-string, variable-length and compound datasets, NaN, inf and complex entries, a
  negative matching time, one that is text;
- depth maps of the validation split of a generated world (train.py): a MegaDepth .h5 declaring 60000x60000
  through a fill value, of strings, or an external link; a ScanNet PNG header declaring 60000x60000, an 8-bit
  PNG; and a depth .h5 or PNG larger than its image, refused from its metadata;
- index files (train.py): a ScanNet index archive with a member whose .npy header declares 80 GB, or that
  deflates from 1 GiB; a MegaDepth scene-info pickle whose one opcode declares 100 GB;
- checkpoints: a stored config listing 200000 layers (match.py --checkpoint and evaluate.py checkpoint=), a
  wrongly typed, unknown or absurdly large stored value, a section that is a number, widths that do not go
  together, a 50 G-parameter model within every bound (refused unbuilt: its weights are not in the file); a
  complex-NaN and a complex weight (train.py ckpt_path= and init_checkpoint=, match.py --checkpoint, evaluate.py
  checkpoint=); a weight expanded from 4 bytes to 40 GB and an archive member deflated from 1.5 GB (train.py
  init_checkpoint=, match.py --checkpoint);
- text files: match.py --ground-truth /dev/zero and a 1 GB sparse file, prepare --labels /dev/zero and a
  1 GB sparse file; /dev/zero as predictions=, --checkpoint, checkpoint= and init_checkpoint=.
"""

import io
import os
import resource
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from data.io import read_depth_h5
from data.scannet import read_depth_png
from data.untrusted import load_index
from tests.faults_helpers import MEGADEPTH_VAL, evaluate_command, first_val_files, train
from tests.helpers import assert_unchanged, refusal, run_here, snapshot
from tests.train_helpers import ROOT, small

pytestmark = pytest.mark.usefixtures("_no_progress_bars")  # a bar's line is not the refusal's

MATCH = str(ROOT / "match.py")
EVALUATE = str(ROOT / "evaluate.py")


def mapped_bytes() -> int:
    """The address space this process maps now (VmSize)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


@contextmanager
def address_space_limited(headroom: int = 1 << 30) -> Iterator[None]:
    """The process may map at most `headroom` bytes more than it does now, for the block (RLIMIT_AS, then
    restored): an allocation past it fails with a MemoryError, in seconds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped_bytes() + headroom
    if hard != resource.RLIM_INFINITY and limit > hard:
        pytest.skip("the hard address-space limit is below the bound")
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ----------------------------------------------------------------------------------- predictions.h5 (evaluate.py)

@pytest.fixture(scope="module")
def stored_run(photo_folder, tmp_path_factory) -> Path:
    """predictions.h5 of a SIFT run on the one-photo homographies benchmark (one pair)."""
    out_dir = tmp_path_factory.mktemp("stored") / "run"
    run = run_here(evaluate_command(photo_folder, out_dir), ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return out_dir / "predictions.h5"


def replace_dataset(group: h5py.Group, name: str, **create) -> None:
    del group[name]
    group.create_dataset(name, **create)


def nan_at(group: h5py.Group, name: str, value) -> None:
    data = group[name][()]
    data.flat[0] = value
    replace_dataset(group, name, data=data)


SHAPES = {"keypoints0": (2,), "keypoints1": (2,), "confidence": ()}  # a pair's datasets and their shapes past the rows
# what is done to the pair's group, and what the refusal names besides the file and the dataset
BAD_PREDICTIONS = {
    "40 M rows through a fill value": (lambda g, folder: [replace_dataset(
        g, name, shape=(40_000_000, *shape), dtype="f8", fillvalue=1.0) for name, shape in SHAPES.items()],
        "keypoints0", "40000000"),
    "an external link": (
        lambda g, folder: g.__delitem__("keypoints0") or g.__setitem__("keypoints0", h5py.ExternalLink(
            str(folder / "other.h5"), "/keypoints0")),
        "keypoints0", "link"),
    "a soft link": (lambda g, folder: g.__delitem__("keypoints1") or g.__setitem__("keypoints1", h5py.SoftLink(
        f"{g.name}/keypoints0")), "keypoints1", "link"),
    "a scalar": (lambda g, folder: replace_dataset(g, "confidence", data=3.0), "confidence", "shape"),
    "byte strings": (lambda g, folder: replace_dataset(g, "keypoints0", data=np.array([b"a", b"b"])), "keypoints0",
                     "|S1"),
    "variable-length rows": (lambda g, folder: replace_dataset(
        g, "keypoints0", shape=(2,), dtype=h5py.vlen_dtype(np.float64)), "keypoints0", "object"),
    "a compound": (lambda g, folder: replace_dataset(
        g, "keypoints0", shape=(2,), dtype=np.dtype([("x", "f8"), ("y", "f8")])), "keypoints0", "x"),
    "NaN": (lambda g, folder: nan_at(g, "keypoints0", np.nan), "keypoints0", "NaN"),
    "inf": (lambda g, folder: nan_at(g, "confidence", np.inf), "confidence", "inf"),
    "complex": (lambda g, folder: replace_dataset(g, "keypoints1", data=g["keypoints1"][()] * (1 + 1j)), "keypoints1",
                "complex"),
    "a negative time": (lambda g, folder: g.attrs.__setitem__("runtime_s", -1.0), "runtime_s", "-1"),
    "a time that is text": (lambda g, folder: g.attrs.__setitem__("runtime_s", "fast"), "runtime_s", "'fast'"),
}


@pytest.mark.parametrize("case", BAD_PREDICTIONS)
def test_evaluate_refuses_a_bad_predictions_file_naming_the_dataset(stored_run, photo_folder, tmp_path, case):
    damage, *named = BAD_PREDICTIONS[case]
    path = tmp_path / "predictions.h5"
    shutil.copy(stored_run, path)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["keypoints0"] = np.zeros((2, 2))
    with h5py.File(path, "a") as file:
        (group,) = file.values()
        damage(group, tmp_path)
    assert path.stat().st_size < 1 << 20  # a small file: what it declares is what must not be allocated
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "results.csv").write_text("name,group\nearlier,run\n")
    before = snapshot(out_dir, path)
    with address_space_limited():
        run = run_here(evaluate_command(photo_folder, out_dir, f"predictions={path}"), ROOT)
    refusal(run, str(path), *named)
    assert_unchanged(before)


def test_the_stored_run_scores_again(stored_run, photo_folder, tmp_path):
    """The predictions the cases above damage are read whole when undamaged."""
    run = run_here(evaluate_command(photo_folder, tmp_path / "run", f"predictions={stored_run}"), ROOT)
    assert run.returncode == 0, run.stderr[-3000:]


# --------------------------------------------------------------------------------------- depth .h5 (train.py)

def declared_depth(path: Path, **create) -> None:
    """A MegaDepth depth map at `path`: its dataset `depth` made by h5py's create_dataset(**create)."""
    path.unlink(missing_ok=True)
    with h5py.File(path, "w") as file:
        file.create_dataset("depth", **create)


def linked_depth(path: Path) -> None:
    """A MegaDepth depth map at `path` whose dataset `depth` is an external link to another file's."""
    declared_depth(path.with_name("elsewhere.h5"), data=np.ones((120, 160), np.float32))
    path.unlink()
    with h5py.File(path, "w") as file:
        file["depth"] = h5py.ExternalLink(str(path.with_name("elsewhere.h5")), "/depth")


def declared_png(path: Path, width: int, height: int, bits: int = 16) -> None:
    """A PNG at `path` of a header alone, declaring width x height grey pixels of `bits` bits (60 bytes)."""
    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


# the world, how the first validation pair's depth map is replaced, and what the refusal names besides it
BAD_DEPTHS = {
    "megadepth 60000x60000 through a fill value": (
        "megadepth", lambda path: declared_depth(path, shape=(60000, 60000), dtype="f4", fillvalue=1.0),
        "60000x60000"),
    "megadepth strings": ("megadepth", lambda path: declared_depth(path, data=np.array([[b"a", b"b"]])), "|S1"),
    "megadepth external link": ("megadepth", lambda path: linked_depth(path), "no dataset 'depth' stored"),
    "scannet 60000x60000 in a PNG header": ("scannet", lambda path: declared_png(path, 60000, 60000), "60000x60000"),
    "scannet 8-bit PNG": ("scannet", lambda path: declared_png(path, 640, 480, bits=8), "8-bit"),
}


@pytest.mark.parametrize("case", BAD_DEPTHS)
def test_a_validation_depth_map_declaring_too_much_stops_training_in_setup(worlds, tmp_path, case):
    layout, replace, *named = BAD_DEPTHS[case]
    world = tmp_path / layout
    shutil.copytree(worlds[layout], world, symlinks=True)  # megadepth's test/ is a link to train/
    bad = world / "test" / first_val_files(worlds)[f"{layout} depth"]
    replace(bad)
    assert bad.stat().st_size < 1 << 20
    before = snapshot(world / "index")
    run_dir = tmp_path / "run"
    with address_space_limited():
        run = train(run_dir, f"loftr_{layout}", world)
    refusal(run, f"data.val.{layout}: ", str(bad), "depth", *named)
    assert_unchanged(before)
    assert not (run_dir / "checkpoints").exists()


def test_a_depth_map_of_another_shape_than_its_image_is_refused_unread(tmp_path):
    """A depth map within depth_pad_size but not of its image's shape: refused from its metadata when loaded."""
    path = tmp_path / "depth.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("depth", shape=(1000, 1000), dtype="f4", fillvalue=1.0)
    with address_space_limited(), pytest.raises(ValueError, match=r"depth.h5.*1000x1000.*160x120"):
        read_depth_h5(path, shape=(120, 160))
    declared_png(tmp_path / "depth.png", 30000, 30000)  # under OpenCV's own limit of 2^30 pixels: 1.8 GB decoded
    with address_space_limited(), pytest.raises(ValueError, match=r"depth.png declares 30000x30000.*160x120"):
        read_depth_png(tmp_path / "depth.png", (120, 160))


# ------------------------------------------------------------------------------------ index files (train.py)

NPY_HEADER = {"descr": "<f8", "fortran_order": False}


def npy_bytes(shape: tuple[int, ...], data: bytes) -> bytes:
    """A .npy file's bytes: a header declaring float64 of `shape`, then `data`."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {**NPY_HEADER, "shape": shape})
    return stream.getvalue() + data


def forged_member(path: Path) -> None:
    """One more member in the np.savez archive at `path`: a header declaring 1e10 float64 (80 GB), 16 bytes."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra.npy", npy_bytes((10**10,), bytes(16)))


def deflated_member(path: Path) -> None:
    """One more member in the np.savez archive at `path`: 1 GiB of float64 zeros, deflated to a MB."""
    with zipfile.ZipFile(path, "a", compresslevel=1) as archive:
        info = zipfile.ZipInfo("extra.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(npy_bytes((1 << 27,), b""))
            zeros = bytes(16 << 20)
            for _ in range(64):
                member.write(zeros)


def counted_pickle(path: Path) -> None:
    """A pickle at `path` whose one opcode (BINBYTES8) declares 1e11 bytes and holds 3."""
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 10**11) + b"abc")


# the world, the index file replaced and how, and what the refusal names besides the file
BAD_INDEX_FILES = {
    "scannet member declaring 80 GB": ("scannet", forged_member, "80000000000 bytes"),
    "scannet member deflated from 1 GiB": ("scannet", deflated_member, "64x"),
    "megadepth scene-info pickle declaring 100 GB": ("megadepth", counted_pickle, "declares more bytes"),
}


@pytest.mark.parametrize("case", BAD_INDEX_FILES)
def test_an_index_file_declaring_more_than_it_holds_stops_training_unallocated(worlds, tmp_path, case):
    layout, forge, named = BAD_INDEX_FILES[case]
    folder = tmp_path / "index"
    if layout == "scannet":
        shutil.copytree(worlds["scannet"] / "index" / "scene_data" / "train", folder)
        bad, where = folder / "scene0000_00.npz", f"data.train.scannet.index_dir={folder}"
    else:
        shutil.copytree(worlds["megadepth"] / MEGADEPTH_VAL.parent, folder)
        bad, where = folder / MEGADEPTH_VAL.name, f"data.val.megadepth.scene_info_dir={folder}"
    forge(bad)
    assert bad.stat().st_size < 16 << 20
    before = snapshot(folder)
    run_dir = tmp_path / "run"
    with address_space_limited():
        run = train(run_dir, f"loftr_{layout}", worlds[layout], where)
    refusal(run, str(bad), named)
    assert_unchanged(before)
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize("pose", ["sparse", "fifo"])
def test_a_training_pose_that_is_no_small_text_file_stops_training_in_setup(worlds, tmp_path, pose):
    """A ScanNet training pose (4x4 numbers) replaced by a 1 GB file, or a FIFO (np.loadtxt would wait on it
    for ever): one line naming it before the first step, nothing read past the bound."""
    world = tmp_path / "scannet"
    shutil.copytree(worlds["scannet"], world, symlinks=True)
    scene, _, frame0, _ = np.load(world / "index" / "scene_data" / "train" / "scene0000_00.npz")["name"][0]
    bad = world / "train" / f"scene{scene:04d}_00" / "pose" / f"{frame0}.txt"
    bad.unlink()
    if pose == "sparse":
        sparse_file(bad, 1 << 30)
    else:
        os.mkfifo(bad)
    run_dir = tmp_path / "run"
    with address_space_limited(256 << 20):
        run = train(run_dir, "loftr_scannet", world)
    line = refusal(run, str(bad))
    assert ("larger than" if pose == "sparse" else "not a regular file") in line
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_an_index_that_is_no_regular_file_is_refused_unread(tmp_path, special):
    """An index file given as a device or a FIFO: read to its end, it would never end."""
    path = Path(special) if special == "/dev/zero" else tmp_path / "scene.npz"
    if special == "fifo":
        os.mkfifo(path)
    with address_space_limited(256 << 20), pytest.raises(ValueError, match=f"{path} is not a regular file"):
        load_index(path)


# ------------------------------------------------------------------------------------------------- checkpoints

def with_stored_model(trained: Path, path: Path, change) -> Path:
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    change(checkpoint["hyper_parameters"]["training"]["model"])
    torch.save(checkpoint, path)
    return path


def set_key(*keys_and_value):
    *keys, last, value = keys_and_value

    def change(model: dict) -> None:
        for key in keys:
            model = model[key]
        model[last] = value

    return change


def huge_within_bounds(model: dict) -> None:
    """64 attention layers of 4096 channels: every value within the bounds, 50 G parameters in all."""
    model["backbone"]["block_dims"] = [32, 48, 4096]
    model["coarse"].update(d_model=4096, layer_names=["self", "cross"] * 32)


# how the stored model config is changed, and what the refusal names besides the file
BAD_STORED_CONFIGS = {
    "200000 layers": (set_key("coarse", "layer_names", ["self", "cross"] * 100_000), "coarse.layer_names",
                      "200000", "64"),
    "a wrongly typed width": (set_key("coarse", "d_model", "abc"), "coarse.d_model", "'abc'", "an int"),
    "an unknown key": (set_key("coarse", "d_mdel", 3), "coarse.d_mdel", "unknown"),
    "an absurd width": (set_key("backbone", "initial_dim", 10**9), "backbone.initial_dim", "1000000000", "4096"),
    "a section that is no section": (set_key("fine", 7), "fine", "7"),
    "a huge model within the bounds": (huge_within_bounds, "does not fit", "4096"),
    "widths that do not go together": (set_key("coarse", "d_model", 96), "stored model config", "96"),
}


def checkpoint_command(command: str, world: Path, path: Path, tmp_path: Path) -> list[str]:
    if command == "match":
        images = sorted(world.glob("*/images/*.jpg"))[:2]
        return [MATCH, *map(str, images), "--checkpoint", str(path), "--out", str(tmp_path / "m.npz"),
                "--device", "cpu"]
    return [EVALUATE, "benchmark=synthetic", f"benchmark.root={world}", "matcher=loftr", f"checkpoint={path}",
            f"out_dir={tmp_path / 'eval'}", "max_pairs=1", "plot_pairs=0"]


@pytest.mark.parametrize("command", ["match", "evaluate"])
@pytest.mark.parametrize("case", BAD_STORED_CONFIGS)
def test_a_bad_stored_model_config_is_refused_before_the_model_is_built(world, trained, tmp_path, command, case):
    change, *named = BAD_STORED_CONFIGS[case]
    path = with_stored_model(trained, tmp_path / "bad.ckpt", change)
    before = snapshot(path)
    with address_space_limited():
        run = run_here(checkpoint_command(command, world, path, tmp_path), tmp_path)
    refusal(run, str(path), *named)
    assert_unchanged(before)
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "eval" / "results.csv").exists()


def complex_weight(trained: Path, path: Path, value: complex) -> tuple[Path, str]:
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    key = sorted(checkpoint["state_dict"])[3]
    checkpoint["state_dict"][key] = torch.full_like(checkpoint["state_dict"][key], value, dtype=torch.complex64)
    torch.save(checkpoint, path)
    return path, key


@pytest.mark.parametrize(("value", "named"), [(complex(float("nan"), 0.0), "NaN"), (1 + 2j, "complex")],
                         ids=["complex NaN", "complex"])
@pytest.mark.parametrize("flag", ["ckpt_path", "init_checkpoint", "--checkpoint", "checkpoint"])
def test_a_complex_weight_is_refused_naming_the_key(world, trained, tmp_path, flag, value, named):
    path, key = complex_weight(trained, tmp_path / "complex.ckpt", value)
    before = snapshot(path)
    if flag in ("--checkpoint", "checkpoint"):  # match.py's, evaluate.py's
        run = run_here(checkpoint_command("match" if flag == "--checkpoint" else "evaluate", world, path, tmp_path),
                       tmp_path)
    else:
        run = run_here([str(ROOT / "train.py"), *small(world, tmp_path / "run", f"{flag}={path}")], tmp_path)
    refusal(run, str(path), key, named)
    assert_unchanged(before)
    assert not (tmp_path / "run" / "checkpoints").exists()


def expanded_weight(trained: Path, path: Path) -> tuple[Path, str]:
    """The trained checkpoint with one weight replaced by a stride-0 view declaring 1e10 floats over 4 bytes."""
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    key = sorted(checkpoint["state_dict"])[3]
    checkpoint["state_dict"][key] = torch.zeros(1).expand(100_000, 100_000)
    torch.save(checkpoint, path)
    return path, key


def compressed_member(trained: Path, path: Path, size: int = 1536 << 20) -> tuple[Path, str]:
    """The trained checkpoint's archive with its first weight's data replaced by `size` zero bytes, deflated
    (a few MB): torch.load allocates the declared size before reading it."""
    with zipfile.ZipFile(trained) as source, zipfile.ZipFile(path, "w", compresslevel=1) as target:
        members = source.infolist()
        victim = next(member.filename for member in members if "/data/" in member.filename)
        for member in members:
            if member.filename != victim:
                target.writestr(member, source.read(member.filename))
                continue
            deflated = zipfile.ZipInfo(member.filename, member.date_time)
            deflated.compress_type = zipfile.ZIP_DEFLATED
            with target.open(deflated, "w", force_zip64=True) as handle:
                zeros = bytes(16 << 20)
                for _ in range(size // len(zeros)):
                    handle.write(zeros)
    return path, victim


@pytest.fixture(scope="module")
def declaring_more(trained, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """{kind: (checkpoint, what the refusal names)}, made once: deflating 1.5 GB takes seconds."""
    folder = tmp_path_factory.mktemp("declaring_more")
    return {"expanded view": expanded_weight(trained, folder / "expanded.ckpt"),
            "compressed member": compressed_member(trained, folder / "compressed.ckpt")}


@pytest.mark.parametrize("kind", ["expanded view", "compressed member"])
@pytest.mark.parametrize("flag", ["init_checkpoint", "--checkpoint"])
def test_a_checkpoint_declaring_more_than_it_holds_is_refused_unallocated(world, declaring_more, tmp_path, flag,
                                                                           kind):
    """A few MB that declare GB: a weight expanded from 4 bytes to 1e10 floats (40 GB), an archive member
    deflated from 1.5 GB of zeros (torch.save writes members uncompressed)."""
    path, named = declaring_more[kind]
    assert path.stat().st_size < 64 << 20
    before = snapshot(path)
    with address_space_limited():
        if flag == "--checkpoint":
            run = run_here(checkpoint_command("match", world, path, tmp_path), tmp_path)
        else:
            run = run_here([str(ROOT / "train.py"), *small(world, tmp_path / "run", f"{flag}={path}")], tmp_path)
    refusal(run, str(path), named, "expanded view" if kind == "expanded view" else "uncompressed")
    assert_unchanged(before)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "m.npz").exists()


# ------------------------------------------------------------------------------------------------- text files

def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` zero bytes that takes no disk."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


@pytest.mark.parametrize("truth", ["/dev/zero", "sparse"])
def test_match_refuses_a_ground_truth_that_is_no_small_regular_file(photos, truth):
    path = "/dev/zero" if truth == "/dev/zero" else str(sparse_file(photos / "huge.txt", 1 << 30))
    before = snapshot(photos)
    with address_space_limited(256 << 20):
        run = run_here([MATCH, "a.png", "b.png", "--random-weights", "--device", "cpu", "--out", "m.npz",
                        "--ground-truth", path], photos)
    line = refusal(run, f"--ground-truth {path}")
    assert ("not a regular file" if truth == "/dev/zero" else "larger than") in line
    assert_unchanged(before)
    assert not (photos / "m.npz").exists()


@pytest.mark.parametrize("flag", ["predictions", "--checkpoint", "checkpoint", "init_checkpoint"])
def test_a_device_given_as_a_file_is_one_line(world, photo_folder, tmp_path, flag):
    """/dev/zero as predictions.h5 or a checkpoint: never read (it has no end)."""
    with address_space_limited(256 << 20):
        if flag == "predictions":
            run = run_here(evaluate_command(photo_folder, tmp_path / "run", "predictions=/dev/zero"), ROOT)
        elif flag == "init_checkpoint":
            run = run_here([str(ROOT / "train.py"), *small(world, tmp_path / "run", f"{flag}=/dev/zero")], tmp_path)
        else:
            run = run_here(checkpoint_command("match" if flag == "--checkpoint" else "evaluate", world,
                                              Path("/dev/zero"), tmp_path), tmp_path)
    refusal(run, "/dev/zero", "not a regular file")


@pytest.mark.parametrize("labels", ["/dev/zero", "sparse"])
def test_prepare_refuses_labels_that_are_no_small_regular_file(two_photos, tmp_path, labels):
    path = "/dev/zero" if labels == "/dev/zero" else str(sparse_file(tmp_path / "labels.csv", 1 << 30))
    before = snapshot(two_photos)
    with address_space_limited(256 << 20):
        run = run_here(["-m", "data.inhouse", "prepare", "--threads", "1", "--images", str(two_photos),
                        "--out", str(tmp_path / "out"), "--labels", path], ROOT)
    line = refusal(run, path)
    assert ("not a regular file" if labels == "/dev/zero" else "larger than") in line
    assert_unchanged(before)
    assert not (tmp_path / "out").exists()
    assert os.path.exists(path)
