"""hloc's feature and match files from one keypoint set per image (sfm/keypoints.py), what hloc's
`reconstruction.main` and `triangulation.main` read as they are.

    write_hloc(folder, features) -> (features.h5, matches.h5)

The layout is hloc's (Sarlin et al., hloc/utils/parsers.py and io.py): `features.h5` holds a group per image
name with `keypoints` (K, 2) float32, pixel (c, r) at (c, r) (hloc adds the half pixel for COLMAP itself) and
`image_size`; `matches.h5` a group per pair, `pair_key(name0, name1)`, with `matches0` (K0,) int32, the index
of image 1's keypoint matched to each of image 0's or -1, and `matching_scores0` (K0,) float16.
"""

from pathlib import Path

import h5py
import numpy as np

from utils.files import written_atomically

from .keypoints import SfMFeatures

FEATURES_FILE, MATCHES_FILE = "features.h5", "matches.h5"


def pair_key(name0: str, name1: str) -> str:
    """hloc's key of a pair in matches.h5 (`names_to_pair`): the names with "/" made "-", joined by "/"."""
    return "/".join(name.replace("/", "-") for name in (name0, name1))


def write_hloc(folder: str | Path, features: SfMFeatures, image_sizes: dict[str, tuple[int, int]]
               ) -> tuple[Path, Path]:
    """`features` as hloc's features.h5 and matches.h5 in `folder` (created if needed); image_sizes: {name:
    (width, height)}. Each file appears only once complete. FileExistsError naming a file that exists (hloc's
    files are never added to or replaced); KeyError naming an image without a size."""
    folder = Path(folder)
    paths = folder / FEATURES_FILE, folder / MATCHES_FILE
    for path in paths:
        if path.exists():
            raise FileExistsError(f"{path}: exists; hloc's files are written new (choose another folder)")
    missing = [name for name in features.keypoints if name not in image_sizes]
    if missing:
        raise KeyError(f"no image size for image {missing[0]!r}")
    folder.mkdir(parents=True, exist_ok=True)
    with written_atomically(paths[0]) as partial, h5py.File(partial, "w") as file:
        for name, keypoints in features.keypoints.items():
            group = file.create_group(name)
            group.create_dataset("keypoints", data=np.asarray(keypoints, np.float32))
            group.create_dataset("image_size", data=np.asarray(image_sizes[name], np.int64))
    with written_atomically(paths[1]) as partial, h5py.File(partial, "w") as file:
        for (name0, name1), found in features.matches.items():
            matches0 = np.full(len(features.keypoints[name0]), -1, np.int32)
            scores0 = np.zeros(len(matches0), np.float16)
            matches0[found[:, 0]] = found[:, 1]
            scores0[found[:, 0]] = features.scores[(name0, name1)]
            group = file.create_group(pair_key(name0, name1))
            group.create_dataset("matches0", data=matches0)
            group.create_dataset("matching_scores0", data=scores0)
    return paths
