"""A folder of photos -> a training-ready dataset: structure from motion (pycolmap), pairs by co-visibility,
and for each pair the correspondences its shared 3D tracks give (or the ones a user labelled).

Sparse layout (no depth), read by `data.inhouse.dataset.SparsePairs`:

    OUT/SCENE/images/NAME                 the registered photos, copied
    OUT/scene_info/SCENE.npz              pickled dict, MegaDepth's scene-info keys: image_paths, depth_paths
                                          (None: no depth), intrinsics (3x3), poses (4x4 world-to-camera),
                                          pair_infos ((i0, i1), overlap, zeros(4)); and `correspondences`, one
                                          (N, 4) float32 array x0, y0, x1, y1 per pair (original pixels)
    OUT/scenes.txt                        scene_info/SCENE.npz: a split file evaluate.py reads (benchmark=synthetic)
    OUT/sparse/0, 1, ...                  the COLMAP models, largest first (SfM runs only); OUT/report.txt
    OUT/colmap/                           SfM's database and log; upright/: photos turned by EXIF, upright
    OUT/prepare.json                      what made the folder: prepare writes only into a new or empty folder
                                          or one holding this file, unless told to overwrite

With COLMAP's dense depth maps (`depth_maps`) the MegaDepth layout of `data.colmap` is written instead.

Pixel convention: COLMAP puts (0, 0) at the top-left CORNER of the image, this project at the centre of the
top-left pixel (data/batch.py); keypoints and principal points are shifted by -0.5 px on the way in.

One frame: the loaders read photos turned as their EXIF orientation says (OpenCV applies it), COLMAP ignores
the tag. SfM therefore runs on upright copies of the photos that the tag turns (OUT/colmap/upright/), so that
K, the poses and the correspondences are in the pixels the loaders and the evaluation see.

A run that fails (bad input found late, SfM that registers too little, a full disk) removes what it wrote.
"""

import io
import json
import pickle
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from utils.files import check_no_output_on_input, check_own_folder, removed_on_failure
from utils.images import read_grayscale

from ..colmap import COLMAP_TO_OURS, PINHOLE_MODELS, ColmapConfig, camera_matrix, convert_to_megadepth, covisibility
from ..io import IMAGE_SUFFIXES, write_bytes
from ..megadepth import load_scene_info, matrix_array
from .labels import LabelFileError, PairLabels, check_inside, read_labels

# the photos structure from motion reads: pycolmap 4.2.1 cannot decode WebP (Bitmap.read returns nothing)
SFM_IMAGE_SUFFIXES = tuple(suffix for suffix in IMAGE_SUFFIXES if suffix != ".webp")

CAMERA_MODES = ("auto", "single", "per-image")
MARKER = "prepare.json"  # the file by which prepare knows an output folder it wrote


class PrepareError(ValueError):
    """Input that cannot make a dataset (too few photos, no overlap, bad model); the message says why."""


@dataclass
class PrepareConfig:
    images: str  # folder of photos (subfolders included; names are paths relative to it)
    out: str
    model: str | None = None  # an existing COLMAP sparse model: import it instead of running SfM
    depth_maps: str | None = None  # COLMAP dense depth maps (stereo/depth_maps): write the MegaDepth layout
    labels: str | None = None  # labelled correspondences (data/inhouse/labels.py): replace the tracks' pairs
    scene: str = "inhouse"
    camera_model: str = "SIMPLE_PINHOLE"  # or PINHOLE; undistort photos from lenses with distortion first
    camera_mode: str = "auto"  # one camera for all photos ("single"), one each ("per-image"), or COLMAP's guess
    camera_params: str = ""  # known intrinsics in COLMAP's order for the model (e.g. "f,cx,cy"), or estimated
    min_shared_points: int = 30  # pairs sharing fewer 3D points are dropped
    min_overlap: float = 0.1  # co-visibility range of the pairs kept (LoFTR trains on 0.1-0.7)
    max_overlap: float = 0.9
    min_model_size: int = 3  # photos a separate SfM model needs to be kept (COLMAP's default 10 drops small groups)
    max_image_size: int = 1600  # SIFT runs on photos downscaled to this longer side (COLMAP's default 3200)
    num_threads: int = -1  # -1: all cores
    seed: int = 0  # RANSAC and mapper seed
    overwrite: bool = False  # write into a non-empty `out` that prepare did not make (no prepare.json)

    def __post_init__(self):
        if self.camera_model not in PINHOLE_MODELS:
            raise PrepareError(f"camera model {self.camera_model!r}: choose one of {PINHOLE_MODELS} (the loaders "
                               f"have no distortion model; undistort the photos first)")
        if self.camera_mode not in CAMERA_MODES:
            raise PrepareError(f"camera mode {self.camera_mode!r}: choose one of {CAMERA_MODES}")


@dataclass
class Report:
    """What prepare did, for the short printed report."""

    images_found: int = 0
    registered: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    pairs_kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> pairs
    overlaps: list[float] = field(default_factory=list)  # of the kept pairs
    correspondences: list[int] = field(default_factory=list)  # per kept pair
    labelled_pairs: int = 0
    notes: list[str] = field(default_factory=list)
    layout: str = "sparse"
    scene_info: Path | None = None

    def format(self) -> str:
        lines = [f"images registered: {len(self.registered)} of {self.images_found}"]
        if self.unregistered:
            shown = ", ".join(self.unregistered[:8]) + (" ..." if len(self.unregistered) > 8 else "")
            lines.append(f"  not registered: {shown}")
        lines.append(f"pairs kept: {self.pairs_kept} ({self.layout} layout)"
                     + (f", {self.labelled_pairs} with labelled correspondences" if self.labelled_pairs else ""))
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"  dropped {count}: {reason}")
        lines += [f"note: {note}" for note in self.notes]
        if self.correspondences:
            lines.append(f"correspondences per pair: median {int(np.median(self.correspondences))}, "
                         f"min {min(self.correspondences)}, max {max(self.correspondences)}")
        if self.overlaps:
            counts, edges = np.histogram(self.overlaps, bins=10, range=(0.0, 1.0))
            lines.append("overlap histogram (co-visible 3D points over the fewer of the two images):")
            scale = max(1, counts.max() / 40)
            for count, low, high in zip(counts, edges[:-1], edges[1:]):
                lines.append(f"  {low:.1f}-{high:.1f} {count:5d} {'#' * int(round(count / scale))}")
        if self.scene_info is not None:
            lines.append(f"scene info: {self.scene_info}")
        return "\n".join(lines)


def find_images(folder: Path) -> list[str]:
    """Image names under `folder` (relative paths, sorted)."""
    if not folder.is_dir():
        raise PrepareError(f"image folder not found: {folder}")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in SFM_IMAGE_SUFFIXES)


@contextmanager
def stage(label: str) -> Iterator[None]:
    """A line on stderr when a long step starts and one with its duration when it ends: pycolmap's calls
    report no progress of their own."""
    tqdm.write(f"prepare: {label} ...", file=sys.stderr)  # tqdm.write: above any bar a caller shows
    start = time.perf_counter()
    yield
    tqdm.write(f"prepare: {label}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)


@dataclass
class Photo:
    """A photo as the loaders read it: its size (width, height) and whether its EXIF orientation turns or
    flips it (then COLMAP, which ignores the tag, would see other pixels)."""

    size: tuple[int, int]
    turned: bool


def read_photos(folder: Path, names: list[str]) -> dict[str, Photo]:
    """Each photo's size in the loaders' frame and whether EXIF turns it; PrepareError naming one that does
    not decode."""
    photos = {}
    for name in tqdm(names, desc="prepare: reading the photos", unit="photo", dynamic_ncols=True, leave=False):
        try:
            shown = read_grayscale(folder / name)
            stored = read_grayscale(folder / name, apply_orientation=False)
        except ValueError as error:
            raise PrepareError(f"{error}: remove it from {folder} or replace it") from None
        turned = shown.shape != stored.shape or not np.array_equal(shown, stored)
        photos[name] = Photo(shown.shape[::-1], turned)
    return photos


def check_one_size(folder: Path, photos: dict[str, Photo]) -> None:
    """PrepareError naming the sizes when the photos have more than one: COLMAP's single camera has one image
    size and fails deep in its log otherwise."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for name, photo in photos.items():
        by_size.setdefault(photo.size, []).append(name)
    if len(by_size) < 2:
        return
    shown = "; ".join(f"{w}x{h}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                      for (w, h), names in sorted(by_size.items(), key=lambda item: -len(item[1])))
    raise PrepareError(f"--camera-mode single: the photos in {folder} have {len(by_size)} sizes ({shown}), one "
                       f"camera has one: use --camera-mode per-image or auto, or resize the photos to one size")


def upright_photos(folder: Path, photos: dict[str, Photo], upright: Path) -> Path:
    """The folder SfM reads: `folder` itself when EXIF turns none of the photos; otherwise `upright`, with
    upright copies (as the loaders read them) of the turned photos and links to the others, under the same
    names. The copies keep the rest of their EXIF: COLMAP takes its focal-length prior from it."""
    if not any(photo.turned for photo in photos.values()):
        return folder
    for name, photo in photos.items():
        target = upright / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if photo.turned:
            write_bytes(target, upright_copy(folder / name))
        else:
            target.symlink_to((folder / name).resolve())
    return upright


def upright_copy(path: Path) -> bytes:
    """The photo at `path` turned as its EXIF orientation says (the turn OpenCV's reader applies), in its own
    format, its EXIF kept without the orientation tag; built in memory, for data.io.write_bytes."""
    with Image.open(path) as photo:
        turned = ImageOps.exif_transpose(photo)  # drops the orientation tag from the EXIF it keeps
        options = {"quality": 100} if photo.format == "JPEG" else {}
        buffer = io.BytesIO()
        turned.save(buffer, format=photo.format, exif=turned.getexif(), **options)
    return buffer.getvalue()


def check_model_frames(model, folder: Path) -> None:
    """PrepareError naming the first photo whose camera in the COLMAP `model` has another size than the photo
    as the loaders read it (EXIF orientation applied): COLMAP, which ignores the tag, made the model on the
    pixels as stored, another frame than the loaders'. Photos missing from `folder` are found later."""
    for image in sorted(model.images.values(), key=lambda image: image.name):
        camera, path = model.cameras[image.camera_id], folder / image.name
        if not path.is_file():
            continue
        try:
            height, width = read_grayscale(path).shape
        except ValueError as error:
            raise PrepareError(str(error)) from None
        if (width, height) != (camera.width, camera.height):
            raise PrepareError(f"{path} is {width}x{height} px as the loaders read it (EXIF orientation applied), "
                               f"its camera in the COLMAP model {camera.width}x{camera.height}: the model was made "
                               f"on other pixels (COLMAP ignores EXIF); run prepare without --model, or give the "
                               f"photos the model was made from")


def run_sfm(config: PrepareConfig, names: list[str], work: Path, photos: Path) -> list:
    """SIFT extraction, exhaustive matching and incremental mapping on the CPU of the `photos` folder, in a
    child process (data/inhouse/sfm.py says why): the models COLMAP kept, largest first (several when the
    photos fall into groups that do not overlap; none when nothing registered). PrepareError with COLMAP's
    reason when it fails (a full disk: SQLite's "database or disk is full")."""
    import pycolmap

    work.mkdir(parents=True, exist_ok=True)
    database, sparse = work / "database.db", work / "sparse"
    database.unlink(missing_ok=True)
    shutil.rmtree(sparse, ignore_errors=True)
    sparse.mkdir()
    job = {"database": str(database), "images": str(photos), "sparse": str(sparse), "names": names,
           "camera_model": config.camera_model, "camera_params": config.camera_params,
           "camera_mode": config.camera_mode, "max_image_size": config.max_image_size,
           "num_threads": config.num_threads, "min_model_size": config.min_model_size, "seed": config.seed}
    # -P: the script's folder (labels.py, dataset.py, ...) not first on the child's import path
    code, log = _run_child([sys.executable, "-P", str(Path(__file__).with_name("sfm.py"))], json.dumps(job))
    if code != 0:
        full = [text for text in DISK_FULL if any(text in line for line in log)]
        if full or shutil.disk_usage(work).free < 16 * 2**20:  # COLMAP does not always say so: it can
            # fail opening the database that SQLite could not grow
            raise PrepareError(f"structure from motion stopped, the disk of --out {config.out} is full (COLMAP: "
                               f"{full[0] if full else _colmap_reason(log, code)}): free space there or choose "
                               f"another --out")
        raise PrepareError(f"structure from motion (COLMAP) failed on the photos in {config.images}: "
                           f"{_colmap_reason(log, code)}")
    (work / "colmap.log").write_text("".join(log))
    models = [pycolmap.Reconstruction(str(folder)) for folder in sorted(sparse.iterdir()) if folder.is_dir()]
    return sorted(models, key=lambda model: -model.num_reg_images())


def _run_child(command: list[str], stdin: str) -> tuple[int, list[str]]:
    """Run `command` with `stdin`; its stage lines ("prepare: ...") are shown as they come, the rest of its
    stderr (COLMAP's log) is returned with its exit code. Ctrl-C ends it too."""
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, errors="replace")  # a photo's name in another encoding in the log
    log = []
    try:
        child.stdin.write(stdin)
        child.stdin.close()
        for line in child.stderr:
            if line.startswith("prepare: "):
                tqdm.write(line.rstrip("\n"), file=sys.stderr)
            else:
                log.append(line)
        return child.wait(), log
    except BaseException:
        child.kill()
        child.wait()
        raise


# what COLMAP's log says when the disk is full: SQLite's error, or the system's
DISK_FULL = ("database or disk is full", "No space left on device")


def _colmap_reason(log: list[str], code: int) -> str:
    """The line of COLMAP's log that says why it stopped (an exception's what(), a failed check, an error), or
    the exit code."""
    for marker in ("what():", "Check failed", "Error", "error"):
        found = [line.strip() for line in log if marker in line]
        if found:
            return found[-1].split("what():")[-1].strip()
    return f"exit code {code}" if code > 0 else f"killed by signal {-code}"


def track_observations(image) -> dict[int, tuple[float, float]]:
    """3D point id -> where the image observes it (this project's pixels); the first of repeated ones."""
    observed = {}
    for point in image.points2D:
        if point.has_point3D() and point.point3D_id not in observed:
            observed[point.point3D_id] = (point.xy[0] + COLMAP_TO_OURS, point.xy[1] + COLMAP_TO_OURS)
    return observed


@dataclass
class View:
    """A registered photo: intrinsics K (this project's pixels), world-to-camera pose (4, 4) in its model's
    frame, size (width, height), and its track observations keyed by (model, 3D point id)."""

    name: str
    K: np.ndarray
    pose: np.ndarray
    size: tuple[int, int]
    tracks: dict[tuple[int, int], tuple[float, float]]
    model: int


def registered_views(models: list) -> list[View]:
    """The photos of every model, sorted by name; a photo in two models (COLMAP lets them share a few) is
    kept in the larger. Poses of different models are in different frames: pairs stay within a model."""
    views = {}
    for index, model in enumerate(models):
        for image in model.images.values():
            if image.name in views:
                continue
            camera = model.cameras[image.camera_id]
            if camera.model.name not in PINHOLE_MODELS:
                raise PrepareError(f"camera {image.camera_id} of {image.name} is {camera.model.name}: undistort the "
                                   f"images first (colmap image_undistorter) so that the cameras are "
                                   f"{' or '.join(PINHOLE_MODELS)}")
            pose = np.eye(4)
            pose[:3] = image.cam_from_world().matrix()  # world -> camera, as MegaDepth stores poses
            tracks = {(index, point): xy for point, xy in track_observations(image).items()}
            size = (camera.width, camera.height)
            views[image.name] = View(image.name, camera_matrix(camera), pose, size, tracks, index)
    return [views[name] for name in sorted(views)]


def check_outputs(config: PrepareConfig) -> None:
    """PrepareError naming both when a file or folder prepare writes would land on an input: the photos, the
    labels, the COLMAP model or depth maps."""
    out = Path(config.out)
    written = [out / config.scene, out / "scene_info" / f"{config.scene}.npz", out / "scenes.txt", out / "report.txt"]
    if config.model is None:  # SfM runs
        written += [out / "colmap", out / "sparse"]
    try:
        check_no_output_on_input({"--images": config.images, "--labels": config.labels, "--model": config.model,
                                  "--depth-maps": config.depth_maps}, [("--out", path) for path in written])
    except ValueError as error:
        raise PrepareError(str(error)) from None


def check_not_all_copies(folder: Path, names: list[str]) -> None:
    """PrepareError when every photo is a copy of one (the same bytes): they overlap fully, but from one
    viewpoint, and SfM needs photos taken from different positions. Read only when the file sizes agree."""
    paths = [folder / name for name in names]
    if len({path.stat().st_size for path in paths}) > 1:
        return
    first = paths[0].read_bytes()
    if all(path.read_bytes() == first for path in paths[1:]):
        raise PrepareError(f"the {len(names)} photos in {folder} are identical (copies of one photo): structure from "
                           f"motion needs photos taken from different positions (a baseline)")


def read_checked_labels(path: str, images: Path, names: list[str]) -> dict[tuple[str, str], PairLabels]:
    """The label file at `path` (labels.py), checked against the photos before SfM runs: LabelFileError naming
    the line of a pair whose photo is not among `names` (relative to `images`) or of a point outside its photo."""
    labels = read_labels(path)
    found, sizes = set(names), {}
    for pair, pair_labels in labels.items():
        missing = [name for name in pair if name not in found]
        if missing:
            raise LabelFileError(f"{path} line {pair_labels.lines[0]}: image {missing[0]} is not a photo of "
                                 f"{images}")
        for name in pair:
            if name not in sizes:
                try:
                    sizes[name] = read_grayscale(images / name).shape[::-1]  # (width, height)
                except ValueError as error:
                    raise PrepareError(f"{path} line {pair_labels.lines[0]}: {error}") from None
        check_inside(path, pair, pair_labels, (sizes[pair[0]], sizes[pair[1]]))
    return labels


def prepare(config: PrepareConfig) -> Report:
    """Build the dataset `config` describes; returns the report. PrepareError says why input is unusable,
    utils.files.ForeignFolderError that `out` holds files prepare did not make (unless `config.overwrite`);
    either before anything is written. A failure later (OSError: a full disk) removes what the run wrote."""
    images, out = Path(config.images), Path(config.out)
    check_outputs(config)
    if not config.overwrite:
        check_own_folder(out, [MARKER], "prepare")
    names = find_images(images)
    report = Report(images_found=len(names))
    if config.model is None and len(names) < 2:
        raise PrepareError(f"found {len(names)} image(s) in {images} ({', '.join(SFM_IMAGE_SUFFIXES)}): structure from "
                           f"motion needs at least 2 photos that overlap")
    if config.model is None:
        check_not_all_copies(images, names)
    labels = read_checked_labels(config.labels, images, names) if config.labels is not None else None
    photos = read_photos(images, names) if config.model is None else None
    if config.model is None and config.camera_mode == "single":
        check_one_size(images, photos)
    with removed_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text(json.dumps({"images": str(images.resolve()), "scene": config.scene}) + "\n")
        _prepare_into(config, names, report, labels, photos)
    return report


def _prepare_into(config: PrepareConfig, names: list[str], report: Report,
                  labels: dict[tuple[str, str], PairLabels] | None, photos: dict[str, Photo] | None) -> None:
    import pycolmap

    images, out = Path(config.images), Path(config.out)
    if config.model is not None:
        if not Path(config.model).is_dir():
            raise PrepareError(f"COLMAP model folder not found: {config.model}")
        try:
            models = [pycolmap.Reconstruction(str(config.model))]
        except Exception as error:
            raise PrepareError(f"cannot read the COLMAP model in {config.model}: {error}") from None
        check_model_frames(models[0], images)
        model_path = Path(config.model)
    else:
        models = run_sfm(config, names, out / "colmap", upright_photos(images, photos, out / "colmap" / "upright"))
        model_path = out / "sparse" / "0"  # the largest; the others in sparse/1, ...
        for index, model in enumerate(models):
            (out / "sparse" / str(index)).mkdir(parents=True, exist_ok=True)
            model.write(str(out / "sparse" / str(index)))
    registered = registered_views(models)
    report.registered = [view.name for view in registered]
    report.unregistered = sorted(set(names) - set(report.registered))
    if config.model is not None:
        report.images_found = max(len(names), len(registered))
    if len(registered) < 2:
        why = ("the photos may not overlap, overlap too little, or be taken from one spot (turning the camera gives "
               "no baseline): SfM needs pairs with enough SIFT matches that agree on a two-view geometry (COLMAP's "
               "default: 15 inliers) to start and grow a model")
        raise PrepareError(f"structure from motion registered {len(registered)} of {report.images_found} images in "
                           f"{images}: {why}")
    if len(models) > 1:
        sizes = ", ".join(str(model.num_reg_images()) for model in models)
        report.notes.append(f"SfM made {len(models)} separate models ({sizes} photos): groups of photos that do "
                            f"not overlap each other; pairs are made within each"
                            + (", and dense depth uses the largest only" if config.depth_maps else ""))

    if config.depth_maps is not None:
        report.layout = "MegaDepth (dense depth)"
        colmap = ColmapConfig(model=str(model_path), images=str(images), depth_maps=config.depth_maps,
                              min_overlap=config.min_overlap, max_overlap=config.max_overlap,
                              min_shared_points=config.min_shared_points)
        with stage("dense layout: depth maps and pairs"):
            report.scene_info = convert_to_megadepth(colmap, out, config.scene)
        info = load_scene_info(report.scene_info)
        report.pairs_kept = len(info["pair_infos"])
        report.overlaps = [float(overlap) for _, overlap, _ in info["pair_infos"]]
        _classify_drops(report, [set(view.tracks) for view in registered if view.model == 0], config)
    else:
        report.scene_info = _write_sparse(config, registered, report, labels)
    if report.pairs_kept == 0:
        raise PrepareError(f"{len(registered)} images registered but no pair kept: "
                           + "; ".join(f"{count} {reason}" for reason, count in sorted(report.dropped.items())))
    # the scene as an evaluation split (evaluate.py benchmark=synthetic benchmark.split_file=scenes.txt)
    (out / "scenes.txt").write_text(f"{report.scene_info.relative_to(out)}\n")
    (out / "report.txt").write_text(report.format() + "\n")


def _classify_drops(report: Report, observed: list[set[int]], config: PrepareConfig) -> list[tuple[int, int, float]]:
    """Count the dropped pairs by reason; returns the kept (i0, i1, overlap)."""
    kept = []
    for i0, i1, shared, overlap in covisibility(observed):
        if shared < config.min_shared_points:
            report.dropped[f"share fewer than {config.min_shared_points} 3D points (min_shared_points)"] += 1
        elif overlap < config.min_overlap:
            report.dropped[f"overlap below {config.min_overlap} (min_overlap)"] += 1
        elif overlap > config.max_overlap:
            report.dropped[f"overlap above {config.max_overlap} (max_overlap)"] += 1
        else:
            kept.append((i0, i1, overlap))
    return kept


def _write_sparse(config: PrepareConfig, registered: list[View], report: Report,
                  labels: dict[tuple[str, str], PairLabels] | None) -> Path:
    images, out, scene = Path(config.images), Path(config.out), config.scene
    kept = _classify_drops(report, [set(view.tracks) for view in registered], config)
    correspondences = {}
    for i0, i1, _ in kept:
        tracks0, tracks1 = registered[i0].tracks, registered[i1].tracks
        shared = sorted(set(tracks0) & set(tracks1))  # 3D points are per model: pairs within one model only
        correspondences[i0, i1] = np.array([tracks0[p] + tracks1[p] for p in shared], np.float32)
    overlaps = {(i0, i1): overlap for i0, i1, overlap in kept}
    if labels is not None:
        _use_labels(labels, registered, correspondences, overlaps, report)

    image_paths = []
    for view in tqdm(registered, desc="prepare: copying the registered photos", unit="photo", dynamic_ncols=True):
        image_paths.append(f"{scene}/images/{view.name}")
        target = out / image_paths[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / view.name, target)
    order = sorted(correspondences)
    info = {"image_paths": np.array(image_paths, dtype=object),
            "depth_paths": np.array([None] * len(image_paths), dtype=object),
            "intrinsics": matrix_array([view.K for view in registered]),
            "poses": matrix_array([view.pose for view in registered]),
            "pair_infos": [(np.array(pair), overlaps[pair], np.zeros(4)) for pair in order],
            "correspondences": [correspondences[pair] for pair in order]}
    report.pairs_kept = len(order)
    report.overlaps = [overlaps[pair] for pair in order]
    report.correspondences = [len(correspondences[pair]) for pair in order]
    (out / "scene_info").mkdir(parents=True, exist_ok=True)
    path = out / "scene_info" / f"{scene}.npz"
    with open(path, "wb") as file:
        pickle.dump(info, file)  # LoFTR's scene-info files are pickles named .npz
    return path


def _use_labels(labels: dict[tuple[str, str], PairLabels], registered: list[View], correspondences: dict,
                overlaps: dict, report: Report) -> None:
    """Labelled pairs replace the tracks' correspondences (kept whatever their overlap); pairs with an
    unregistered photo, or photos in different models (no common frame for their poses), are dropped."""
    index = {view.name: k for k, view in enumerate(registered)}
    for (name0, name1), pair_labels in labels.items():
        missing = [name for name in (name0, name1) if name not in index]
        if missing:
            report.dropped[f"labelled, but SfM did not register {' or '.join(missing)}"] += 1
            continue
        i0, i1 = index[name0], index[name1]
        if registered[i0].model != registered[i1].model:
            report.dropped["labelled, but its photos are in different SfM models (no common pose frame)"] += 1
            continue
        points = pair_labels.array()
        if i0 > i1:  # pairs are stored (lower index, higher index)
            i0, i1, points = i1, i0, points[:, [2, 3, 0, 1]]
        correspondences[i0, i1] = points.astype(np.float32)
        if (i0, i1) not in overlaps:
            tracks0, tracks1 = registered[i0].tracks, registered[i1].tracks
            overlaps[i0, i1] = len(set(tracks0) & set(tracks1)) / max(1, min(len(tracks0), len(tracks1)))
        report.labelled_pairs += 1
