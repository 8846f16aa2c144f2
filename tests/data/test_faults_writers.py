"""Faults of the data writers, tried as a user tries them: `python -m data.synthetic`, train.py's automatic
world (data/synthetic/ensure.py) and `python -m data.inhouse prepare`. Each case asserts exit code 2, one line
on stderr naming the input, no traceback, that no file written before changed and that the failed run left
nothing of its own. The table:

- data.synthetic: an --out holding LoFTR's real MegaDepth index (not overwritten; --overwrite is explicit; its
  own worlds, finished or killed half-way, are made again), train.py's world.root on such a folder, a full
  disk in each layout (a real tmpfs: once a segfault in h5py) and while its own world is made again, --size
  out of range or malformed, 100000x100000 in a process of 2 GiB, train.py's world.size out of range;
- prepare: an --out holding files it did not make (again into its own, into another's with --overwrite), SfM
  that registers nothing (no colmap/ left), a full disk during structure from motion (pycolmap aborts the
  process: it runs in a child), --camera-mode single on photos of several sizes, photos stored turned with an
  EXIF orientation (K and the correspondences in the frame the loader returns), and a --model made on the
  turned pixels.
"""

import pickle
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, render_scene
from tests.helpers import assert_unchanged, refusal, run_here, small_disk, snapshot, track_errors
from utils.images import read_grayscale

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
    return run_here(["-m", "data.synthetic", "--scenes", "3", "--cameras", "3", "--textures", "photos", *args], cwd)


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
    interrupted = tmp_path / "interrupted"  # killed half-way: world.started, no world.json; still its own
    interrupted.mkdir()
    (interrupted / "world.started").write_text("")
    (interrupted / "scene_info").mkdir()
    assert synthetic("--out", str(interrupted), "--size", "64x48").returncode == 0
    assert (interrupted / "world.json").is_file() and not (interrupted / "world.started").exists()


def test_train_refuses_to_generate_a_world_over_real_data(tmp_path):
    from tests.train_helpers import small

    root = tmp_path / "megadepth"
    real_megadepth_index(root)
    before, listed = snapshot(root), files_in(root)
    run = run_here(["train.py", *small(root, tmp_path / "run", "world.generate=true", "world.scenes=3",
                                       "world.test_scenes=1", "world.cameras=3", "world.size=[64,48]"),
                    f"hydra.run.dir={tmp_path / 'run'}"], ROOT)
    refusal(run, str(root), "world.json")
    assert_unchanged(before)
    assert files_in(root) == listed


@pytest.mark.parametrize("layout", ["flat", "megadepth", "scannet"])
def test_synthetic_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, layout):
    # a real process: the segfault this case once ended in (h5py closing a file it could not flush) would end
    # the test session with it
    disk = tmp_path / "disk"
    with small_disk(disk, 96 * 1024):
        out = disk / "world"
        run = subprocess.run([sys.executable, "-m", "data.synthetic", "--out", str(out), "--scenes", "3", "--cameras",
                              "4", "--size", "160x120", "--textures", "procedural", "--layout", layout], cwd=ROOT,
                             capture_output=True,
                             text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=120)
        line = refusal(without_progress(run), str(out), "No space left on device")
        assert "--out" in line
        assert not out.exists()  # nothing of this run left: no half world


@pytest.mark.parametrize("size", ["0x48", "64x-8", "4x4", "4097x480", "640x", "640x480x3", "axb"])
def test_synthetic_refuses_an_image_size_out_of_range(tmp_path, size):
    run = synthetic("--out", str(tmp_path / "w"), "--size", size)
    refusal(run, "--size", size)
    assert not (tmp_path / "w").exists()


def test_synthetic_refuses_a_huge_size_before_allocating(tmp_path):
    """100000x100000 (rendering would need ~2.6 TB) in a process of 2 GiB of address space: refused in one
    line, not a MemoryError's traceback."""
    def two_gib():
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    run = subprocess.run([sys.executable, "-m", "data.synthetic", "--out", str(tmp_path / "w"), "--size",
                          "100000x100000"], cwd=ROOT, capture_output=True, text=True, preexec_fn=two_gib,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=120)
    refusal(run, "--size 100000x100000", "4096")
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------------------- data.inhouse prepare

def prepare(*args: str, cwd: Path = ROOT):
    return run_here(["-m", "data.inhouse", "prepare", "--threads", "1", *args], cwd)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Ten rendered 320x240 photos of one room, one camera (f = 256 px), as PNGs in a folder, and the scene."""
    pytest.importorskip("pycolmap")
    scene = render_scene(WorldConfig(num_scenes=1, cameras_per_scene=10, image_size=(320, 240),
                                     focal_range=(1.0, 1.0), seed=3), 0)
    folder = tmp_path_factory.mktemp("rendered") / "photos"
    folder.mkdir()
    for k, image in enumerate(scene.images):
        cv2.imwrite(str(folder / f"{k:02d}.png"), image)
    return folder, scene


def test_prepare_refuses_a_folder_it_did_not_make(rendered, tmp_path):
    photos, _ = rendered
    out = tmp_path / "data"
    (out / "scene_info").mkdir(parents=True)
    (out / "scene_info" / "inhouse.npz").write_bytes(b"a dataset prepared by hand")
    (out / "scenes.txt").write_text("scene_info/inhouse.npz\n")
    before, listed = snapshot(out), files_in(out)
    run = prepare("--images", str(photos), "--out", str(out))
    refusal(run, str(out), "prepare.json", "--overwrite")
    assert_unchanged(before)
    assert files_in(out) == listed


def test_prepare_that_fails_after_sfm_leaves_no_scratch_folder(tmp_path):
    pytest.importorskip("pycolmap")
    photos = tmp_path / "unrelated"
    photos.mkdir()
    for seed in range(3):  # three different textures: SfM registers nothing
        cv2.imwrite(str(photos / f"{seed}.png"), make_texture(240, 320, seed=seed + 10))
    run = prepare("--images", str(photos), "--out", str(tmp_path / "out"))
    refusal(without_progress(run), "registered 0 of 3 images", str(photos))
    assert not (tmp_path / "out").exists()  # no colmap/ database, no sparse/


def test_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(rendered, tmp_path):
    photos, _ = rendered
    disk = tmp_path / "disk"
    with small_disk(disk, 300 * 1024):  # the SIFT features of the first photos fill it: COLMAP's database fails
        out = disk / "out"
        run = prepare("--images", str(photos), "--out", str(out))
        refusal(without_progress(run), str(out), "full")
        assert not out.exists()


def test_prepare_single_camera_refuses_photos_of_several_sizes(rendered, tmp_path):
    photos, scene = rendered
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in sorted(photos.iterdir())[:4]:
        mixed.joinpath(path.name).write_bytes(path.read_bytes())
    cv2.imwrite(str(mixed / "small.png"), cv2.resize(scene.images[5], (160, 120)))
    run = prepare("--images", str(mixed), "--out", str(tmp_path / "out"), "--camera-mode", "single")
    refusal(without_progress(run), "--camera-mode single", "320x240", "160x120", "small.png")
    assert not (tmp_path / "out").exists()  # refused before COLMAP: no colmap/ folder


FOCAL_35MM = 28  # mm, a phone's wide camera


def write_rotated_jpeg(path: Path, image: np.ndarray, orientation: int = 6) -> None:
    """`image` (H, W) stored as a phone stores a photo taken upright: the sensor's pixels, rotated 90 degrees
    counter-clockwise, with EXIF orientation 6 (rotate 90 degrees clockwise to display)."""
    pil = pytest.importorskip("PIL.Image")
    exif = pil.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0xA405] = FOCAL_35MM  # FocalLengthIn35mmFilm: COLMAP's focal-length prior
    pil.fromarray(np.ascontiguousarray(np.rot90(image, 1))).save(path, quality=95, exif=exif)


def test_prepare_reads_photos_with_exif_orientation_in_the_loaders_frame(rendered, tmp_path):
    """Photos stored rotated with EXIF orientation 6: K and the correspondences are in the frame the loader
    returns (EXIF applied: 320x240, upright), where the renderer's truth is."""
    _, scene = rendered
    photos = tmp_path / "phone"
    photos.mkdir()
    for k, image in enumerate(scene.images):
        write_rotated_jpeg(photos / f"{k:02d}.jpg", image)
    assert read_grayscale(photos / "00.jpg").shape == (240, 320)  # what the loaders see
    run = prepare("--images", str(photos), "--out", str(tmp_path / "out"), "--camera-mode", "single")
    assert run.returncode == 0, run.stderr[-3000:]
    info = pickle.loads((tmp_path / "out" / "scene_info" / "inhouse.npz").read_bytes())
    ids = [int(Path(path).stem) for path in info["image_paths"]]
    assert len(ids) >= 5
    for k, i in enumerate(ids):
        assert np.allclose(info["intrinsics"][k], scene.intrinsics[i], rtol=0.01, atol=0.5)  # cx 159.5, cy 119.5
        assert read_grayscale(tmp_path / "out" / info["image_paths"][k]).shape == (240, 320)
    seen, errors = track_errors(scene, info, ids)
    assert min(seen) > 0.9
    assert len(errors) > 100 and np.median(errors) < 1.0
    # the upright copies SfM read keep the photos' EXIF but the orientation: COLMAP's focal-length prior
    pil = pytest.importorskip("PIL.Image")
    with pil.open(tmp_path / "out" / "colmap" / "upright" / "00.jpg") as copy:
        exif = copy.getexif()
        assert copy.size == (320, 240) and exif.get(0xA405) == FOCAL_35MM and exif.get(0x0112, 1) == 1


def test_prepare_refuses_a_model_made_in_another_frame_than_its_photos(rendered, tmp_path):
    """--model made by COLMAP on the pixels as a phone stores them (COLMAP ignores EXIF) with the photos that
    carry the orientation tag: the model's cameras are 240x320, the loaders' photos 320x240."""
    _, scene = rendered
    stored, phone = tmp_path / "stored", tmp_path / "phone"
    stored.mkdir()
    phone.mkdir()
    for k, image in enumerate(scene.images):
        cv2.imwrite(str(stored / f"{k:02d}.jpg"), np.rot90(image, 1), [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_rotated_jpeg(phone / f"{k:02d}.jpg", image)
    made = prepare("--images", str(stored), "--out", str(tmp_path / "colmap"), "--camera-mode", "single")
    assert made.returncode == 0, made.stderr[-2000:]
    run = prepare("--images", str(phone), "--out", str(tmp_path / "out"), "--model",
                  str(tmp_path / "colmap" / "sparse" / "0"))
    refusal(without_progress(run), "240x320", "320x240", "EXIF")
    assert not (tmp_path / "out").exists()


def test_prepare_writes_again_into_its_own_folder_and_into_others_only_when_asked(rendered, tmp_path):
    photos, _ = rendered
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run = prepare("--images", str(photos), "--out", str(out), "--overwrite")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "prepare.json").is_file() and (out / "notes.txt").read_text() == "mine"
    run = prepare("--images", str(photos), "--out", str(out))  # its own now: no --overwrite needed
    assert run.returncode == 0, run.stderr[-2000:]


def test_train_refuses_a_world_size_out_of_range(tmp_path):
    from tests.train_helpers import small

    root = tmp_path / "w"
    run = run_here(["train.py", *small(root, tmp_path / "run", "world.generate=true", "world.scenes=3",
                                       "world.test_scenes=1", "world.cameras=3", "world.size=[0,48]"),
                    f"hydra.run.dir={tmp_path / 'run'}"], ROOT)
    refusal(run, str(root), "world.size 0x48")
    assert not root.exists()


def test_a_world_regenerated_on_a_full_disk_stays_its_own(tmp_path):
    """Regenerating its own world until the disk is full: one line, the files this run added removed, and the
    folder still the generator's (world.started): the next run needs no --overwrite."""
    disk = tmp_path / "disk"
    with small_disk(disk, 160 * 1024):
        out = disk / "world"
        assert synthetic("--out", str(out), "--size", "32x24").returncode == 0
        listed = files_in(out)
        run = synthetic("--out", str(out), "--size", "160x120", "--cameras", "6")
        refusal(without_progress(run), str(out), "No space left on device")
        assert (out / "world.started").is_file() and not (out / "world.json").exists()
        assert set(files_in(out)) <= set(listed) | {out / "world.started"}  # nothing new but the mark
        assert synthetic("--out", str(out), "--size", "32x24").returncode == 0
