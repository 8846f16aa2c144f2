"""Evaluation pairs listed in SuperGlue's text format, with their ground-truth relative pose.

One pair per line, whitespace-separated (SuperGlue's `match_pairs.py --eval` reads this; its
`assets/*_pairs_with_gt.txt` are examples):

    name0 name1 rot0 rot1 K0[9] K1[9] T_0to1[16]        (38 tokens)

`name0`, `name1` are image paths relative to an image root; K0, K1 the 3x3 intrinsics of the images as stored
on disk, row-major; T_0to1 the 4x4 camera-0 -> camera-1 transform, row-major. rot0, rot1 in {0, 1, 2, 3} are
EXIF rotations: SuperGlue turns image i by `np.rot90(image, rot_i)` (rot_i x 90 degrees counter-clockwise as
displayed) before matching and rotates K_i and the pose with it. Here too: the EvalPair shows the rotated
images, and its K0, K1, T_0to1 are those of the rotated frames, so the ground truth stays exact.
Blank lines and lines starting with '#' are skipped.

Pairs to match without ground truth (match.py --pairs) are the same lines cut to their first two names
(`read_name_pairs`); `folder_images` and `paired_names` pair the images of a folder (match.py --images).
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geometry.poses import relative_pose
from utils.images import read_grayscale
from utils.values import check_number

from .errors import loading_pair
from .io import IMAGE_SUFFIXES
from .megadepth import load_scene_info
from .pairs import EvalPair

NUM_TOKENS = 38
FORMAT = "name0 name1 rot0 rot1 K0(9 values) K1(9) T_0to1(16)"


@dataclass
class PairListConfig:
    pairs_file: str  # text file in SuperGlue's pairs-with-ground-truth format
    image_root: str  # folder the image names of the pairs file are relative to
    max_pairs: int | None = None  # the first max_pairs pairs only (None: all)


@dataclass
class PairRecord:
    """One line of a pairs file. K0, K1: (3, 3) intrinsics of the stored images (pixels); T_0to1: (4, 4)
    camera-0 -> camera-1 coordinates; rot0, rot1: quarter turns applied to the images before matching."""

    name0: str
    name1: str
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray
    rot0: int = 0
    rot1: int = 0


def check_image_name(name: str) -> None:
    """ValueError unless `name` can be a pairs file's image name: not empty, no whitespace (the format cannot
    hold it), a path inside the image root."""
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"image name {name!r} is empty or contains whitespace")
    # a list from elsewhere must not read any file of the machine (/etc/..., ../../home/...)
    if Path(name).is_absolute() or os.path.normpath(name).split(os.sep)[0] == "..":
        raise ValueError(f"image name {name!r} lies outside the image root: names are paths relative to it, "
                         f"without a leading / or a .. that climbs out of it")


def check_record(record: PairRecord) -> None:
    """ValueError saying what is wrong with a record: non-finite or malformed K, a T_0to1 that is not rigid,
    a rotation outside 0..3, an image name containing whitespace (the format cannot hold it) or naming a file
    outside the image root."""
    for name in (record.name0, record.name1):
        check_image_name(name)
    for key in ("rot0", "rot1"):
        if getattr(record, key) not in (0, 1, 2, 3):
            raise ValueError(f"{key} = {getattr(record, key)} must be 0, 1, 2 or 3 (quarter turns)")
    for key in ("K0", "K1"):
        K = np.asarray(getattr(record, key))
        if K.shape != (3, 3) or not np.isfinite(K).all() or not np.allclose(K[2], [0, 0, 1]) or K[0, 0] <= 0 \
                or K[1, 1] <= 0:
            raise ValueError(f"{key} must be a finite 3x3 intrinsics matrix with last row [0 0 1] and positive "
                             f"focal lengths, got {K.tolist()}")
    T = np.asarray(record.T_0to1)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"T_0to1 must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    # 1e-3: published files round poses to 5-6 digits (ScanNet-1500 stores 5 decimals)
    if not (np.allclose(R @ R.T, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0 and np.allclose(T[3], [0, 0, 0, 1])):
        raise ValueError("T_0to1 is not a rigid transform (rotation + translation, last row [0 0 0 1])")


def parse_line(line: str) -> PairRecord:
    """The record of one pairs-file line; ValueError saying what is wrong with it."""
    tokens = line.split()
    if len(tokens) != NUM_TOKENS:
        hint = " (a pairs file without ground truth cannot be evaluated)" if len(tokens) in (2, 4) else ""
        raise ValueError(f"expected {NUM_TOKENS} values ({FORMAT}), got {len(tokens)}{hint}")
    try:
        rot0, rot1 = int(tokens[2]), int(tokens[3])
    except ValueError:
        raise ValueError(f"rotations {tokens[2]!r} {tokens[3]!r} must be integers 0..3") from None
    try:
        values = np.array([float(token) for token in tokens[4:]])
    except ValueError as error:
        raise ValueError(f"K0, K1, T_0to1 must be numbers: {error}") from None
    record = PairRecord(tokens[0], tokens[1], values[:9].reshape(3, 3), values[9:18].reshape(3, 3),
                        values[18:].reshape(4, 4), rot0, rot1)
    check_record(record)
    return record


def read_pair_list(path: str | Path) -> list[PairRecord]:
    """Every pair of a pairs file, in file order; errors name the file and the line number (from 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            records.append(parse_line(line))
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    return records


def read_name_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The (name0, name1) image pairs of a pairs file without ground truth, in file order: the first two names
    of a line, any further columns (SuperGlue's rotations and poses) ignored; blank lines and '#' comments
    skipped. Errors name the file and the line number (from 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}" if not path.exists() else
                                f"pairs file {path} is not a file")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read it as text ({error})") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        names = line.split()[:2]
        if not names or names[0].startswith("#"):
            continue
        try:
            if len(names) < 2:
                raise ValueError(f"expected two image names, got one ({names[0]!r})")
            for name in names:
                check_image_name(name)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
        pairs.append((names[0], names[1]))
    return pairs


def folder_images(folder: str | Path) -> list[str]:
    """The images under `folder`, subfolders included (data.io.IMAGE_SUFFIXES, any case), as '/'-separated
    paths relative to it, sorted."""
    folder = Path(folder)
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def paired_names(names: list[str], following: int | None = None) -> list[tuple[str, str]]:
    """Pairs of `names` in their order: every unordered pair once (following None: exhaustive), or each name
    with the next `following` ones (sequential, as video frames are paired)."""
    last = len(names) if following is None else following
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, min(i + 1 + last, len(names)))]


def write_pair_list(path: str | Path, records: list[PairRecord]) -> None:
    """Write `records` in the pairs format; numbers are written in full precision (they read back exactly)."""
    lines = []
    for index, record in enumerate(records):
        try:
            check_record(record)
        except ValueError as error:
            raise ValueError(f"record {index} ({record.name0}, {record.name1}): {error}") from None
        numbers = np.concatenate([np.ravel(record.K0), np.ravel(record.K1), np.ravel(record.T_0to1)])
        lines.append(" ".join([record.name0, record.name1, str(record.rot0), str(record.rot1),
                               *(repr(float(v)) for v in numbers)]))
    Path(path).write_text("".join(f"{line}\n" for line in lines))


def scene_info_records(path: str | Path, min_overlap: float = 0.0, max_overlap: float = 1.0,
                       trusted: bool = False) -> list[PairRecord]:
    """The pairs of a MegaDepth scene-info file (data/megadepth.py) with overlap in [min, max], as records:
    names are the scene-info image paths (relative to the MegaDepth root), T_0to1 = pose1 @ pose0^-1 from the
    world-to-camera poses. Errors name the file and the pair. trusted: unpickle any object (files you trust)."""
    info = load_scene_info(path, trusted)
    records = []
    for (i0, i1), overlap, *_ in info["pair_infos"]:
        if not min_overlap <= overlap <= max_overlap:
            continue
        try:
            names = [info["image_paths"][i] for i in (i0, i1)]
            if any(name is None for name in names):
                raise ValueError("an image of the pair has no path")
            pose0, pose1 = (np.asarray(info["poses"][i], np.float64).reshape(4, 4) for i in (i0, i1))
            K0, K1 = (np.asarray(info["intrinsics"][i], np.float64).reshape(3, 3) for i in (i0, i1))
            record = PairRecord(str(names[0]), str(names[1]), K0, K1, relative_pose(pose0, pose1))
            check_record(record)
        except (IndexError, ValueError, np.linalg.LinAlgError) as error:
            raise ValueError(f"{path}: pair ({i0}, {i1}): {error}") from None
        records.append(record)
    return records


@dataclass(frozen=True)
class ViewRecord:
    """One image of a scene and its ground truth: `name` relative to the image root, K (3, 3) of the stored image,
    `pose` (4, 4) world-to-camera."""

    name: str
    K: np.ndarray
    pose: np.ndarray


def scene_info_views(path: str | Path, trusted: bool = False) -> tuple[list[ViewRecord], list[tuple[str, str]]]:
    """Every image that the pairs of a MegaDepth scene-info file use (the ones whose ground truth the file
    vouches for), once each, in order of first use, and the pairs as (name0, name1): one read of the file. Errors
    name the file and the image. trusted: unpickle any object (files you trust)."""
    info = load_scene_info(path, trusted)
    views: dict[int, ViewRecord] = {}
    for (i0, i1), *_ in info["pair_infos"]:
        for index in (i0, i1):
            if index in views:
                continue
            try:
                name = info["image_paths"][index]
                if name is None:
                    raise ValueError("no image path")
                K = np.asarray(info["intrinsics"][index], np.float64).reshape(3, 3)
                pose = np.asarray(info["poses"][index], np.float64).reshape(4, 4)
                check_record(PairRecord(str(name), str(name), K, K, pose))  # K's and a rigid pose's checks
            except (IndexError, TypeError, ValueError) as error:
                raise ValueError(f"{path}: image {index}: {error}") from None
            views[index] = ViewRecord(str(name), K, pose)
    pairs = [(views[i0].name, views[i1].name) for (i0, i1), *_ in info["pair_infos"]]
    return list(views.values()), pairs


def quarter_turn_pixels(rot: int, width: int, height: int) -> np.ndarray:
    """(3, 3) map from pixels (x, y, 1) of a (height, width) image to pixels of `np.rot90(image, rot)`."""
    step = np.eye(3)
    for _ in range(rot % 4):
        # one np.rot90 turn: new[r', c'] = old[c', width - 1 - r'], so (x, y) -> (y, width - 1 - x)
        step = np.array([[0.0, 1, 0], [-1, 0, width - 1], [0, 0, 1]]) @ step
        width, height = height, width
    return step


def quarter_turn_camera(rot: int) -> np.ndarray:
    """(4, 4) rotation of camera coordinates about the optical axis that goes with `np.rot90(image, rot)`:
    (X, Y, Z) -> (Y, -X, Z) per turn, so that the rotated K' = A K R^T projects like A K (A: the pixel map)."""
    turn = np.eye(4)
    turn[:2, :2] = [[0, 1], [-1, 0]]
    return np.linalg.matrix_power(turn, rot % 4)


def rotate_view(image: np.ndarray, K: np.ndarray, rot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image (H, W) turned by rot quarter turns, its intrinsics (3, 3) and the (4, 4) camera rotation
    (old camera coordinates -> new); exact: K' R X projects where A K X lands, A the pixel map."""
    if rot % 4 == 0:
        return image, K, np.eye(4)
    height, width = image.shape
    R = quarter_turn_camera(rot)
    K_rotated = quarter_turn_pixels(rot, width, height) @ K @ R[:3, :3].T
    return np.ascontiguousarray(np.rot90(image, rot)), K_rotated, R


def record_pair(record: PairRecord, image_root: str | Path, group: str = "") -> EvalPair:
    """The EvalPair of a record: images read from image_root / name as uint8 grayscale at their stored size,
    then turned by rot0, rot1 with K0, K1 and T_0to1 rotated alike (unchanged when the rotations are 0)."""
    image_root = Path(image_root)
    image0, K0, R0 = rotate_view(read_grayscale(image_root / record.name0), np.asarray(record.K0, float), record.rot0)
    image1, K1, R1 = rotate_view(read_grayscale(image_root / record.name1), np.asarray(record.K1, float), record.rot1)
    T_0to1 = R1 @ np.asarray(record.T_0to1, float) @ R0.T  # new camera 0 -> old 0 -> old 1 -> new 1
    return EvalPair(name=f"{record.name0} {record.name1}", image0=image0, image1=image1, K0=K0, K1=K1,
                    T_0to1=T_0to1, group=group)


def check_config(config: PairListConfig) -> None:
    """FileNotFoundError / ValueError naming the config key that is wrong."""
    if not Path(config.pairs_file).is_file():
        raise FileNotFoundError(f"pairs file {config.pairs_file} not found: set `pairs_file` to a text file in "
                                f"SuperGlue's format ({FORMAT})")
    if not Path(config.image_root).is_dir():
        raise FileNotFoundError(f"image root {config.image_root} does not exist: set `image_root` to the folder "
                                f"the image names of {config.pairs_file} are relative to")
    check_number("max_pairs", config.max_pairs, 1, integer=True, optional=True)


def pair_list_records(config: PairListConfig) -> list[PairRecord]:
    """The records of the pairs file, the first `max_pairs` of them when it is set."""
    check_config(config)
    return read_pair_list(config.pairs_file)[: config.max_pairs]


def pair_list_pairs(config: PairListConfig) -> Iterator[EvalPair]:
    """EvalPairs of the pairs file in file order; a pair that cannot be loaded raises BadPairError naming it."""
    for index, record in enumerate(pair_list_records(config)):
        with loading_pair(f"{config.pairs_file}: pair {index} ({record.name0}, {record.name1})"):
            pair = record_pair(record, config.image_root)
        yield pair
