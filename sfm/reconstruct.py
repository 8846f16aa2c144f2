"""Incremental mapping of a COLMAP database (sfm/colmap.py) with pycolmap, seeded and on a fixed number of
threads so that one database maps the same way every time, and the cameras of the result.

    reconstruct(database, images, out, seed=0, threads=1) -> the largest model, or None when none was built
    registered_poses(model) -> {image name: world-to-camera (4, 4)}
"""

from pathlib import Path

import numpy as np


def reconstruct(database: str | Path, images: str | Path, out: str | Path, seed: int = 0, threads: int = 1):
    """pycolmap's incremental mapper on `database` (its images' names relative to the folder `images`, which
    the mapper only records), the models written to `out`/0, 1, ... (created; COLMAP's numbering). Returns the
    model with the most registered images (a pycolmap.Reconstruction), or None when the mapper built none
    (too few verified matches to start)."""
    import pycolmap  # only reconstruction needs it

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads, options.random_seed = threads, seed
    models = pycolmap.incremental_mapping(str(database), str(images), str(out), options)
    if not models:
        return None
    return max(models.values(), key=lambda model: model.num_reg_images())


def registered_poses(model) -> dict[str, np.ndarray]:
    """{image name: world-to-camera (4, 4) float64} of every image `model` registered, in its own frame (a
    similarity away from any other)."""
    poses = {}
    for image in model.images.values():
        if image.has_pose:
            pose = np.eye(4)
            pose[:3, :] = image.cam_from_world().matrix()
            poses[image.name] = pose
    return poses
