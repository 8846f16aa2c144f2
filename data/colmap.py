"""In-house data from a COLMAP reconstruction, converted to MegaDepth's layout so one loader serves it.

The sparse model (cameras, images, points3D; binary or text) is read with pycolmap. Pairs are chosen by
co-visibility: the share of 3D points two images both observe, over the fewer points of the two (the
overlap score of MegaDepth's scene-info files). Depth comes from COLMAP's dense depth maps.
"""

import pickle
import shutil
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from .io import write_depth_h5
from .megadepth import matrix_array

# Camera models without distortion: other models must be undistorted first (colmap image_undistorter).
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
COLMAP_TO_OURS = -0.5  # COLMAP's pixel centres sit at +0.5 (its docs, "Cameras"); ours at integers (data/batch.py)


def camera_matrix(camera) -> np.ndarray:
    """A COLMAP camera's K in this project's pixel convention: the principal point moved by COLMAP_TO_OURS."""
    K = np.array(camera.calibration_matrix(), np.float64)
    K[:2, 2] += COLMAP_TO_OURS
    return K


@dataclass
class ColmapConfig:
    model: str  # sparse model folder: cameras, images, points3D (.bin or .txt)
    images: str  # folder of the (undistorted) images, named as in the model
    depth_maps: str  # COLMAP dense depth maps folder (stereo/depth_maps)
    depth_suffix: str = ".geometric.bin"  # or ".photometric.bin"
    min_overlap: float = 0.1  # co-visibility range of the pairs kept (LoFTR trains on 0.1-0.7)
    max_overlap: float = 0.9
    min_shared_points: int = 30


def read_colmap_array(path: str | Path) -> np.ndarray:
    """A COLMAP dense map (`width&height&channels&` then float32 in column-major order) as (H, W[, C])."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COLMAP depth map not found: {path}")
    with open(path, "rb") as file:
        header = b""
        while header.count(b"&") < 3:
            byte = file.read(1)
            if not byte:
                raise ValueError(f"{path} is not a COLMAP dense map (no width&height&channels& header)")
            header += byte
        width, height, channels = (int(v) for v in header.decode().split("&")[:3])
        data = np.fromfile(file, np.float32)
    if data.size != width * height * channels:
        raise ValueError(f"{path}: header says {width}x{height}x{channels}, the file holds {data.size} values")
    return data.reshape((width, height, channels), order="F").transpose(1, 0, 2).squeeze(-1 if channels == 1 else ())


def write_colmap_array(path: str | Path, array: np.ndarray) -> None:
    """Write (H, W) float32 in COLMAP's dense map format (the inverse of `read_colmap_array`)."""
    array = np.asarray(array, np.float32)
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    with open(path, "wb") as file:
        file.write(f"{width}&{height}&{channels}&".encode())
        array.reshape(height, width, channels).transpose(1, 0, 2).reshape(-1, order="F").tofile(file)


def covisibility(observed: list[set[int]]) -> list[tuple[int, int, int, float]]:
    """Every image pair (i0, i1) with the 3D points both observe and their overlap: shared points over the
    fewer points of the two (0 when either observes none)."""
    pairs = []
    for i0, i1 in combinations(range(len(observed)), 2):
        shared = len(observed[i0] & observed[i1])
        fewer = min(len(observed[i0]), len(observed[i1]))
        pairs.append((i0, i1, shared, shared / fewer if fewer else 0.0))
    return pairs


def covisible_pairs(observed: list[set[int]], config: ColmapConfig) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Pairs (i0, i1) with their co-visibility overlap, in MegaDepth's pair_infos form."""
    return [(np.array([i0, i1]), overlap, np.zeros(4)) for i0, i1, shared, overlap in covisibility(observed)
            if shared >= config.min_shared_points and config.min_overlap <= overlap <= config.max_overlap]


def convert_to_megadepth(config: ColmapConfig, out_root: str | Path, scene: str) -> Path:
    """Write the reconstruction as OUT_ROOT/SCENE/{images,depths} and OUT_ROOT/scene_info/SCENE.npz;
    returns the scene-info path. Images are copied, depth maps converted to `.h5`."""
    import pycolmap

    model = Path(config.model)
    if not model.is_dir():
        raise FileNotFoundError(f"COLMAP model folder not found: {model}")
    try:
        reconstruction = pycolmap.Reconstruction(str(model))
    except Exception as error:
        raise ValueError(f"cannot read the COLMAP model in {model}: {error}") from None
    out_root = Path(out_root)
    (out_root / "scene_info").mkdir(parents=True, exist_ok=True)
    image_paths, depth_paths, intrinsics, poses, observed = [], [], [], [], []
    for image in sorted(reconstruction.images.values(), key=lambda im: im.name):
        camera = reconstruction.cameras[image.camera_id]
        if camera.model.name not in PINHOLE_MODELS:
            raise ValueError(f"camera {image.camera_id} of {image.name} is {camera.model.name}: undistort the images "
                             f"first (colmap image_undistorter) so that the cameras are {' or '.join(PINHOLE_MODELS)}")
        source = Path(config.images) / image.name
        if not source.is_file():
            raise FileNotFoundError(f"image {image.name} of the model not found: {source}")
        depth = read_colmap_array(Path(config.depth_maps) / f"{image.name}{config.depth_suffix}")
        if depth.shape != (camera.height, camera.width):
            raise ValueError(f"depth map of {image.name} is {depth.shape[1]}x{depth.shape[0]}, its camera "
                             f"{camera.width}x{camera.height}")
        image_paths.append(f"{scene}/images/{image.name}")
        depth_paths.append(f"{scene}/depths/{Path(image.name).with_suffix('.h5')}")
        (out_root / image_paths[-1]).parent.mkdir(parents=True, exist_ok=True)
        (out_root / depth_paths[-1]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out_root / image_paths[-1])
        write_depth_h5(out_root / depth_paths[-1], np.where(np.isfinite(depth) & (depth > 0), depth, 0))
        intrinsics.append(camera_matrix(camera))
        pose = np.eye(4)
        pose[:3] = image.cam_from_world().matrix()  # world -> camera, as MegaDepth stores poses
        poses.append(pose)
        observed.append({p.point3D_id for p in image.points2D if p.has_point3D()})
    if not image_paths:
        raise ValueError(f"the COLMAP model in {model} has no registered images")
    info = {"image_paths": np.array(image_paths, dtype=object), "depth_paths": np.array(depth_paths, dtype=object),
            "intrinsics": matrix_array(intrinsics), "poses": matrix_array(poses),
            "pair_infos": covisible_pairs(observed, config)}
    path = out_root / "scene_info" / f"{scene}.npz"
    with open(path, "wb") as file:
        pickle.dump(info, file)  # LoFTR's scene-info files are pickles named .npz
    return path
