"""A synthetic world in the on-disk formats of LoFTR's datasets: exact depth and poses, no download.

Each scene is a textured box-shaped room with textured pillars in it (occlusions), ray-cast from cameras
placed inside the room, so every image comes with its exact depth map, intrinsics and pose. Pairs are
chosen by their true overlap. The output is what LoFTR's preprocessing leaves, so the real loaders read it.

This module renders scenes and writes the flat MegaDepth layout (`data.megadepth.MegaDepthPairs`):
    ROOT/scene_info/SCENE.npz                     pickled dict: image_paths, depth_paths, intrinsics, poses
                                                  (world-to-camera), pair_infos ((i0, i1), overlap, central_matches)
    ROOT/SCENE/images/K.jpg, ROOT/SCENE/depths/K.h5   (dataset `depth`, metres, 0 = unknown)
data/synthetic/trees.py writes LoFTR's real `data/megadepth` and `data/scannet` trees from the same scenes.
"""

import pickle
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from geometry.poses import relative_pose
from geometry.warp import warp_depth

from ..io import write_depth_h5, write_image
from ..megadepth import matrix_array
from .texture import make_texture, photo_texture

TEXTURES = ("procedural", "photos", "mixed")
# Image sides the generator accepts, in pixels. At least one coarse cell of LoFTR (1/8 resolution; the models
# refuse smaller images: models/inputs.py). At most 4096: rendering holds about 260 bytes a pixel (measured at
# 1600x1200), 4.4 GB at 4096x4096, and LoFTR's datasets are smaller (MegaDepth: 1600 px on the longer side).
MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 4096


@dataclass
class WorldConfig:
    num_scenes: int = 2
    cameras_per_scene: int = 12
    image_size: tuple[int, int] = (640, 480)  # (width, height)
    focal: float = 0.8  # focal length as a share of the image width (a ~64 degree horizontal field of view)
    focal_range: tuple[float, float] = (0.8, 1.25)  # per-camera factor on the focal length (zoom variety)
    room_size: tuple[float, float, float] = (8.0, 3.0, 8.0)  # x, y (down), z in metres
    num_pillars: int = 3
    texture_px_per_m: float = 96.0  # texture resolution on the walls
    max_roll_deg: float = 20.0  # camera roll: in-plane rotations between the views
    min_overlap: float = 0.1  # pairs kept by true overlap (LoFTR trains on [0.1, 0.7])
    textures: str = "mixed"  # "procedural", "photos" (scikit-image's samples) or "mixed": each face draws one
    max_overlap: float = 0.9
    seed: int = 0

    def __post_init__(self):
        check_image_size(self.image_size)


def check_image_size(size: tuple[int, int], name: str = "image size") -> None:
    """ValueError naming `size` (width, height) as `name` unless both sides are whole numbers of pixels in
    [MIN_IMAGE_SIDE, MAX_IMAGE_SIDE]."""
    width, height = size
    if not all(isinstance(side, int | np.integer) and MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE for side in size):
        raise ValueError(f"{name} {width}x{height}: each side must be {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} px "
                         f"(one coarse cell of LoFTR at least; rendering needs ~260 bytes a pixel)")


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation: roll about z (optical axis), then pitch about x, then yaw about y."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


class Scene:
    """Axis-aligned boxes: the room (seen from inside) and pillars (seen from outside), each face textured."""

    def __init__(self, config: WorldConfig, rng: np.random.Generator):
        self.config = config
        half = np.array(config.room_size) / 2
        self.room = (-half, half)
        self.pillars = []
        for _ in range(config.num_pillars):
            centre = rng.uniform(-half * 0.6, half * 0.6)
            size = rng.uniform([0.3, 0, 0.3], [1.0, 0, 1.0])
            lo, hi = centre - size / 2, centre + size / 2
            lo[1], hi[1] = -half[1], half[1]  # floor to ceiling
            self.pillars.append((lo, hi))
        if config.textures not in TEXTURES:
            raise ValueError(f"textures={config.textures!r} is not one of {TEXTURES}")
        # one texture spans the whole room, so no surface repeats a pattern that would match as itself
        self.texture_size = int(np.ceil(max(config.room_size) * config.texture_px_per_m))
        self.textures = {}
        for box in range(1 + config.num_pillars):
            for axis in range(3):
                for side in range(2):
                    seed = int(rng.integers(1 << 30))
                    photo = config.textures == "photos" or (config.textures == "mixed" and rng.random() < 0.5)
                    self.textures[box, axis, side] = (
                        photo_texture(self.texture_size, seed) if photo
                        else make_texture(self.texture_size, self.texture_size, seed,
                                          num_shapes=60 * (self.texture_size // 256) ** 2))  # 60 per 256 px square

    def intersect(self, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First surface along rays origin + t direction (direction (..., 3), world frame): the distance t in
        units of `direction`, and the axis and box of the face hit."""
        safe = np.where(np.abs(direction) < 1e-12, 1e-12, direction)
        lo, hi = self.room  # leaving the room: the nearest exit plane along each axis
        exit_t = np.maximum((lo - origin) / safe, (hi - origin) / safe)
        depth = exit_t.min(-1)
        face_axis = exit_t.argmin(-1)
        face_box = np.zeros(depth.shape, int)
        for box, (plo, phi) in enumerate(self.pillars, start=1):  # entering a pillar (slab test)
            t0, t1 = (plo - origin) / safe, (phi - origin) / safe
            enter, leave = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
            hit = (enter <= leave) & (enter > 1e-6) & (enter < depth)
            depth = np.where(hit, enter, depth)
            face_axis = np.where(hit, np.minimum(t0, t1).argmax(-1), face_axis)
            face_box = np.where(hit, box, face_box)
        return depth, face_axis, face_box

    def render(self, K: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray-cast the image (H, W) uint8 and its depth (H, W) float32 (z in the camera frame, metres)."""
        width, height = self.config.image_size
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        rays_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1: t is the depth
        direction = rays_cam @ cam_to_world[:3, :3].T
        origin = cam_to_world[:3, 3]
        depth, face_axis, face_box = self.intersect(origin, direction)

        points = origin + direction * depth[..., None]
        side = (np.take_along_axis(direction, face_axis[..., None], -1)[..., 0] > 0).astype(int)
        image = np.zeros(depth.shape, np.float32)
        scale = self.config.texture_px_per_m
        for (box, axis, face_side), texture in self.textures.items():
            on_face = (face_box == box) & (face_axis == axis) & (side == face_side)
            if not on_face.any():
                continue
            a, b = [k for k in range(3) if k != axis]
            map_x = ((points[..., a] - self.room[0][a]) * scale).astype(np.float32)  # room corner at texel 0
            map_y = ((points[..., b] - self.room[0][b]) * scale).astype(np.float32)
            sampled = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            image[on_face] = sampled[on_face]
        return np.clip(image, 0, 255).astype(np.uint8), depth.astype(np.float32)


def _camera(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A camera-to-world pose inside the room, outside the pillars, looking roughly horizontally."""
    half = np.array(scene.config.room_size) / 2
    while True:
        position = rng.uniform(-half * 0.8, half * 0.8)
        position[1] = rng.uniform(-0.3, 0.3) * half[1]
        if not any(np.all(position > lo - 0.3) and np.all(position < hi + 0.3) for lo, hi in scene.pillars):
            break
    pose = np.eye(4)
    pose[:3, :3] = _rotation(rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(-10, 10)),
                             np.radians(rng.uniform(-1, 1) * scene.config.max_roll_deg))
    pose[:3, 3] = position
    return pose


def true_overlap(depth0, depth1, K0, K1, w2c0, w2c1, step: int = 8) -> float:
    """Share of image-0 pixels (on a grid) visible and unoccluded in image 1."""
    height, width = depth0.shape
    y, x = np.mgrid[0:height:step, 0:width:step]
    points = torch.from_numpy(np.stack([x.ravel(), y.ravel()], -1)[None].astype(np.float64))
    def as_t(a):
        return torch.from_numpy(np.asarray(a, np.float64))[None]
    valid, _ = warp_depth(points, as_t(depth0), as_t(depth1), as_t(K0), as_t(K1), as_t(relative_pose(w2c0, w2c1)))
    return float(valid.double().mean())


@dataclass
class RenderedScene:
    """A scene's views: images (H, W) uint8, depths (H, W) float32 metres, intrinsics (3, 3), world-to-camera
    poses (4, 4), and the pairs (i0, i1, true overlap) within the configured overlap range."""

    name: str
    images: list[np.ndarray]
    depths: list[np.ndarray]
    intrinsics: list[np.ndarray]
    poses: list[np.ndarray]
    pairs: list[tuple[int, int, float]]


def render_scene(config: WorldConfig, index: int, shared_focal: bool = False) -> RenderedScene:
    """Scene `index` of the world, seeded by (config.seed, index); `shared_focal`: one focal length for all
    cameras of the scene (ScanNet's single-camera layout) instead of one per camera."""
    rng = np.random.default_rng([config.seed, index])
    scene = Scene(config, rng)  # drawn first from the rng, so the scene is known from the seed alone
    width, height = config.image_size
    focal_factor = rng.uniform(*config.focal_range) if shared_focal else None
    rendered = RenderedScene(f"scene{index:04d}", [], [], [], [], [])
    for _ in range(config.cameras_per_scene):
        cam_to_world = _camera(scene, rng)
        f = config.focal * width * (focal_factor if shared_focal else rng.uniform(*config.focal_range))
        K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
        image, depth = scene.render(K, cam_to_world)
        rendered.images.append(image)
        rendered.depths.append(depth)
        rendered.intrinsics.append(K)
        rendered.poses.append(np.linalg.inv(cam_to_world))
    depths, Ks, poses = rendered.depths, rendered.intrinsics, rendered.poses
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of points per pair: threads only spin, and stall a busy machine
    try:
        rendered.pairs = _overlapping_pairs(config, depths, Ks, poses)
    finally:
        torch.set_num_threads(threads)
    return rendered


def _overlapping_pairs(config: WorldConfig, depths, Ks, poses) -> list[tuple[int, int, float]]:
    pairs = []
    for i0 in range(len(poses)):
        for i1 in range(i0 + 1, len(poses)):
            overlap = true_overlap(depths[i0], depths[i1], Ks[i0], Ks[i1], poses[i0], poses[i1])
            if config.min_overlap <= overlap <= config.max_overlap:
                pairs.append((i0, i1, overlap))
    return pairs


def write_jpeg(path: Path, image: np.ndarray) -> None:
    write_image(path, image, (cv2.IMWRITE_JPEG_QUALITY, 95))


def scene_info(image_paths: list[str], depth_paths: list[str], intrinsics: list[np.ndarray],
               poses: list[np.ndarray], pairs: list[tuple[int, int, float]]) -> dict:
    """A scene-info dict as LoFTR's files hold it: paths relative to the dataset root, intrinsics (3, 3),
    world-to-camera poses (4, 4), pair_infos ((i0, i1), overlap, central matches: unused, zeros)."""
    return {"image_paths": np.array(image_paths, dtype=object), "depth_paths": np.array(depth_paths, dtype=object),
            "intrinsics": matrix_array(intrinsics), "poses": matrix_array(poses),
            "pair_infos": [(np.array([i0, i1]), overlap, np.zeros(4)) for i0, i1, overlap in pairs]}


def write_scene_info(path: Path, info: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(info, file)  # LoFTR's scene-info files are pickles named .npz
    return path


def write_views(root: Path, scene: RenderedScene, image_paths: list[str], depth_paths: list[str]) -> None:
    """The scene's images (JPEG) and depth maps (.h5, dataset `depth`, metres) at the paths, relative to root."""
    for image, depth, image_path, depth_path in zip(scene.images, scene.depths, image_paths, depth_paths):
        (root / image_path).parent.mkdir(parents=True, exist_ok=True)
        (root / depth_path).parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(root / image_path, image)
        write_depth_h5(root / depth_path, depth)


def write_megadepth(root: Path, scene: RenderedScene) -> Path:
    """Write `scene` in the flat MegaDepth layout under `root`; returns its scene-info file."""
    image_paths = [f"{scene.name}/images/{k}.jpg" for k in range(len(scene.images))]
    depth_paths = [f"{scene.name}/depths/{k}.h5" for k in range(len(scene.images))]
    write_views(root, scene, image_paths, depth_paths)
    info = scene_info(image_paths, depth_paths, scene.intrinsics, scene.poses, scene.pairs)
    return write_scene_info(root / "scene_info" / f"{scene.name}.npz", info)


def each_scene(count: int, progress: bool) -> Iterator[int]:
    """0 .. count - 1, with progress on stderr when `progress`: a tqdm bar, or a line per scene without tqdm.
    Loop over it in `contextlib.closing`: a loop stopped by an error then ends the bar's line before the error
    is printed."""
    if not progress:
        yield from range(count)
        return
    try:
        from tqdm import tqdm
    except ImportError:
        for index in range(count):
            yield index
            print(f"scene {index + 1}/{count} rendered", file=sys.stderr, flush=True)
        return
    yield from tqdm(range(count), desc="rendering scenes", unit="scene", file=sys.stderr)


def generate_world(root: str | Path, config: WorldConfig | None = None, progress: bool = False) -> list[Path]:
    """Render the world into `root` in the flat MegaDepth layout; returns the scene-info files, one per scene.
    Existing files are overwritten. `progress`: report each scene on stderr."""
    config = config if config is not None else WorldConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with closing(each_scene(config.num_scenes, progress)) as scenes:
        return [write_megadepth(root, render_scene(config, index)) for index in scenes]
