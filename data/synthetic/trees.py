"""The synthetic world written in one of three layouts, split into train / val / test scenes.

Splits: the last `test_scenes` scenes test, the one before them validates, the rest train.

"flat" (the default; the `synthetic` experiment and benchmark read it): data/synthetic/world.py's layout,
    OUT/scene_info/sceneXXXX.npz, OUT/sceneXXXX/{images,depths}/, and OUT/{train,val,test}.txt listing each
    split's scene-info files relative to OUT.

"megadepth": LoFTR's data/megadepth (its docs/TRAINING.md), OUT playing data/megadepth, scenes named "0000", ...
    OUT/train/Undistorted_SfM/SCENE/images/K.jpg
    OUT/train/phoenix/S6/zl548/MegaDepth_v1/SCENE/dense0/depths/K.h5     (dataset `depth`, metres, 0 = unknown)
    OUT/test -> train                                   a relative link: LoFTR's train and test share the data
    OUT/index/scene_info_0.1_0.7/SCENE_0.1_0.7.npz      training scenes (pickled scene-info dicts; image and
    OUT/index/scene_info_val_1500/SCENE_0.1_0.7.npz     depth paths relative to OUT/train), the validation scene
    OUT/index/trainvaltest_list/{train,val}_list.txt    their stems, one a line
    OUT/index/megadepth_test_1500_scene_info/{0022_0.1_0.3,...}.npz + megadepth_test_1500.txt
        the test scenes' pairs as LoFTR's five MegaDepth-1500 files. Rule: the test pairs sorted by overlap
        (ties by scene, then image indices) are cut into five consecutive, near-equal chunks (np.array_split),
        given to the files in megadepth_test_1500.txt's order, whose overlap bins rise in that order
        (0.1-0.3, 0.1-0.3, 0.3-0.5, 0.3-0.5, 0.5-0.7). With fewer than five test pairs (n > 0), file k holds
        the pair of rank k * n // 5 instead, so every file holds a pair (some pairs then appear twice). The bins
        in the names are LoFTR's, not the chunks' overlaps. Each file lists every test image.
    Pair overlaps are the generator's range (WorldConfig.min_overlap..max_overlap) in every file; loaders filter.

"scannet": LoFTR's data/scannet (the SensReader python export and scannet_indices.tar), OUT playing data/scannet,
    scenes named "scene0000_00", ..., one camera per scene:
    OUT/train/SCENE/color/K.jpg, depth/K.png (uint16 mm), pose/K.txt (camera-to-world 4x4),
        intrinsic/intrinsic_color.txt, intrinsic_depth.txt (4x4)         training scenes
    OUT/test/SCENE/...                                  the validation and test scenes
    OUT/index/scene_data/train/SCENE.npz                `name` (N, 4) [scene, 0, frame0, frame1], `score` overlap
    OUT/index/scene_data/train_list/scannet_all.txt     the training index file names, one a line
    OUT/index/intrinsics.npz                            SCENE -> K (3, 3), every scene
    OUT/index/scannet_test_1500/test.npz, intrinsics.npz, scannet_test.txt
        LoFTR's assets/scannet_test_1500 for the validation and test scenes: test.npz holds `name` and `rel_pose`
        (N, 12: the top 3x4 of T_0to1), scannet_test.txt names test.npz; this is also the validation split.

Every layout ends with OUT/world.json (data/synthetic/manifest.py), written after everything else.
"""

from contextlib import closing
from pathlib import Path

import numpy as np

from geometry.poses import relative_pose
from utils.files import check_own_folder, removed_on_failure

from ..io import write_image
from ..megadepth import MEGADEPTH_1500_SCENES
from .manifest import OWN_MARKERS, clear_world_manifest, world_manifest, write_world_manifest
from .world import (
    RenderedScene,
    WorldConfig,
    each_scene,
    generate_world,
    render_scene,
    scene_info,
    write_jpeg,
    write_scene_info,
    write_views,
)

LAYOUTS = ("flat", "megadepth", "scannet")

# LoFTR's data/megadepth sub-folders
MEGADEPTH_IMAGES = "Undistorted_SfM"
MEGADEPTH_DEPTHS = "phoenix/S6/zl548/MegaDepth_v1"
MEGADEPTH_INDEX = {"train": "index/scene_info_0.1_0.7", "val": "index/scene_info_val_1500"}
MEGADEPTH_LISTS = "index/trainvaltest_list"
MEGADEPTH_SCENE_SUFFIX = "_0.1_0.7"
MEGADEPTH_1500_DIR = "index/megadepth_test_1500_scene_info"
# LoFTR's data/scannet index
SCANNET_TRAIN_INDEX = "index/scene_data/train"
SCANNET_TRAIN_LIST = "index/scene_data/train_list/scannet_all.txt"
SCANNET_INTRINSICS = "index/intrinsics.npz"
SCANNET_1500_DIR = "index/scannet_test_1500"


def split_scenes(num_scenes: int, test_scenes: int) -> dict[str, list[int]]:
    """Scene indices of each split: the last `test_scenes` test, the one before them "val", the rest "train"."""
    if test_scenes < 1 or num_scenes < test_scenes + 2:
        raise ValueError(f"{num_scenes} scenes with {test_scenes} test scenes: at least one test scene, and one "
                         f"scene each for training and validation besides")
    first_test = num_scenes - test_scenes
    return {"train": list(range(first_test - 1)), "val": [first_test - 1], "test": list(range(first_test, num_scenes))}


def write_world(out: str | Path, config: WorldConfig, layout: str = "flat", test_scenes: int = 1,
                progress: bool = False, overwrite: bool = False) -> dict[str, list[Path]]:
    """Render `config`'s world into `out` in `layout` (see the module docstring), then write OUT/world.json.
    Returns each split's index files: the scene-info files (flat, megadepth; "test" of megadepth: the five
    MegaDepth-1500 files) or the ScanNet index files ("val" and "test": the one test.npz). `out` must be new,
    empty or a world of this generator (its world.json or world.started), unless `overwrite`:
    utils.files.ForeignFolderError otherwise, before anything is written. The layout's files are rewritten,
    others left alone; a run that fails (OSError: a full disk) removes what it added. `progress`: report each
    scene on stderr."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")
    splits = split_scenes(config.num_scenes, test_scenes)
    out = Path(out)
    if not overwrite:  # never LoFTR's real index in data/megadepth replaced by generated pairs
        check_own_folder(out, OWN_MARKERS, "the synthetic world generator")
    if out.is_dir():  # marked before the run: a run that fails and removes what it added leaves the folder ours
        clear_world_manifest(out)
    with removed_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        clear_world_manifest(out)  # a world that stops half-written has none
        if layout == "flat":
            infos = generate_world(out, config, progress)
            written = {split: [infos[i] for i in indices] for split, indices in splits.items()}
            for split, paths in written.items():
                (out / f"{split}.txt").write_text("".join(f"{p.relative_to(out)}\n" for p in paths))
        elif layout == "megadepth":
            written = _write_megadepth_tree(out, config, splits, progress)
        else:
            written = _write_scannet_tree(out, config, splits, progress)
        width, height = config.image_size
        write_world_manifest(out, world_manifest(layout, config.num_scenes, test_scenes, config.cameras_per_scene,
                                                 (width, height), config.textures, config.seed))
    return written


def _write_megadepth_tree(out: Path, config: WorldConfig, splits: dict[str, list[int]], progress: bool
                          ) -> dict[str, list[Path]]:
    test_link = out / "test"
    if test_link.exists() and not test_link.is_symlink():
        raise FileExistsError(f"{test_link} exists and is not the link to train/ that the megadepth layout writes: "
                              f"remove it, or write the world to another folder")
    split_of = {index: split for split, indices in splits.items() for index in indices}
    written: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    test_views = []  # (image_paths, depth_paths, intrinsics, poses, pairs) of each test scene
    with closing(each_scene(config.num_scenes, progress)) as scenes:
        for index in scenes:
            scene = render_scene(config, index)
            name = f"{index:04d}"  # MegaDepth's scene ids
            image_paths = [f"{MEGADEPTH_IMAGES}/{name}/images/{k}.jpg" for k in range(len(scene.images))]
            depth_paths = [f"{MEGADEPTH_DEPTHS}/{name}/dense0/depths/{k}.h5" for k in range(len(scene.images))]
            write_views(out / "train", scene, image_paths, depth_paths)
            split = split_of[index]
            if split == "test":
                test_views.append((image_paths, depth_paths, scene.intrinsics, scene.poses, scene.pairs))
                continue
            info = scene_info(image_paths, depth_paths, scene.intrinsics, scene.poses, scene.pairs)
            path = out / MEGADEPTH_INDEX[split] / f"{name}{MEGADEPTH_SCENE_SUFFIX}.npz"
            written[split].append(write_scene_info(path, info))
    (out / MEGADEPTH_LISTS).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        stems = "".join(f"{path.stem}\n" for path in written[split])
        (out / MEGADEPTH_LISTS / f"{split}_list.txt").write_text(stems)
    written["test"] = _write_megadepth_1500(out / MEGADEPTH_1500_DIR, test_views)
    if test_link.is_symlink():
        test_link.unlink()
    test_link.symlink_to("train", target_is_directory=True)
    return written


def _write_megadepth_1500(folder: Path, views: list[tuple]) -> list[Path]:
    """The test scenes' pairs as LoFTR's five MegaDepth-1500 scene-info files (the rule: module docstring)."""
    image_paths, depth_paths, intrinsics, poses, pairs = [], [], [], [], []
    for scene, (images, depths, Ks, scene_poses, scene_pairs) in enumerate(views):
        offset = len(image_paths)
        pairs += [(overlap, scene, offset + i0, offset + i1) for i0, i1, overlap in scene_pairs]
        image_paths += images
        depth_paths += depths
        intrinsics += Ks
        poses += scene_poses
    pairs.sort()
    files = len(MEGADEPTH_1500_SCENES)
    if 0 < len(pairs) < files:  # too few to share out: repeat some, so that no file is empty
        chunks = [[k * len(pairs) // files] for k in range(files)]
    else:
        chunks = np.array_split(np.arange(len(pairs)), files)
    written = []
    for stem, chunk in zip(MEGADEPTH_1500_SCENES, chunks):
        chosen = [(pairs[k][2], pairs[k][3], pairs[k][0]) for k in chunk]
        info = scene_info(image_paths, depth_paths, intrinsics, poses, chosen)
        written.append(write_scene_info(folder / f"{stem}.npz", info))
    (folder / "megadepth_test_1500.txt").write_text("".join(f"{stem}\n" for stem in MEGADEPTH_1500_SCENES))
    return written


def write_scannet_scene(folder: Path, scene: RenderedScene) -> None:
    """`scene` as the SensReader python export writes a scan: color/K.jpg, depth/K.png (uint16 millimetres),
    pose/K.txt (camera-to-world 4x4), intrinsic/intrinsic_{color,depth}.txt (4x4; the same K: the colour and
    depth frames here have one size)."""
    for sub in ("color", "depth", "pose", "intrinsic"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, (image, depth, pose) in enumerate(zip(scene.images, scene.depths, scene.poses)):
        write_jpeg(folder / "color" / f"{k}.jpg", image)
        millimetres = np.round(depth * 1000).astype(np.uint16)  # depth below 65.5 m: the rooms are smaller
        write_image(folder / "depth" / f"{k}.png", millimetres)
        np.savetxt(folder / "pose" / f"{k}.txt", np.linalg.inv(pose))  # ScanNet stores camera-to-world
    K = np.eye(4)
    K[:3, :3] = scene.intrinsics[0]
    for name in ("intrinsic_color.txt", "intrinsic_depth.txt"):
        np.savetxt(folder / "intrinsic" / name, K)


def _write_scannet_tree(out: Path, config: WorldConfig, splits: dict[str, list[int]], progress: bool
                        ) -> dict[str, list[Path]]:
    training = set(splits["train"])
    train_index = out / SCANNET_TRAIN_INDEX
    train_index.mkdir(parents=True, exist_ok=True)
    intrinsics, test_intrinsics = {}, {}
    train_files, test_names, test_poses = [], [], []
    with closing(each_scene(config.num_scenes, progress)) as scenes:
        for index in scenes:
            scene = render_scene(config, index, shared_focal=True)  # ScanNet: one camera a scene
            name = f"scene{index:04d}_00"
            write_scannet_scene(out / ("train" if index in training else "test") / name, scene)
            intrinsics[name] = scene.intrinsics[0]
            names = [[index, 0, i0, i1] for i0, i1, _ in scene.pairs]
            if index in training:
                path = train_index / f"{name}.npz"
                np.savez(path, name=np.array(names, dtype=np.int64).reshape(-1, 4),
                         score=np.array([overlap for *_, overlap in scene.pairs], dtype=np.float32))
                train_files.append(path)
                continue
            test_intrinsics[name] = scene.intrinsics[0]
            test_names += names
            # T_0to1's top 3x4, row by row
            test_poses += [relative_pose(scene.poses[i0], scene.poses[i1])[:3].reshape(12) for i0, i1, _ in scene.pairs]
    train_list = out / SCANNET_TRAIN_LIST
    train_list.parent.mkdir(parents=True, exist_ok=True)
    train_list.write_text("".join(f"{path.name}\n" for path in train_files))
    np.savez(out / SCANNET_INTRINSICS, **intrinsics)
    test_folder = out / SCANNET_1500_DIR
    test_folder.mkdir(parents=True, exist_ok=True)
    np.savez(test_folder / "test.npz", name=np.array(test_names, dtype=np.int64).reshape(-1, 4),
             rel_pose=np.array(test_poses, dtype=np.float64).reshape(-1, 12))
    np.savez(test_folder / "intrinsics.npz", **test_intrinsics)
    (test_folder / "scannet_test.txt").write_text("test.npz\n")
    return {"train": train_files, "val": [test_folder / "test.npz"], "test": [test_folder / "test.npz"]}
