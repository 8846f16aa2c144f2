"""Incremental mapping of a COLMAP database (sfm/colmap.py) with pycolmap, seeded and on a fixed number of
threads so that one database maps the same way every time, and the cameras of the result.

    verify_geometry(database, threads=1): COLMAP's geometric verification of the raw matches (two-view geometries)
    reconstruct(database, images, out, seed=0, threads=1) -> the largest model, or None when none was built
    registered_poses(model) -> {image name: world-to-camera (4, 4)}
    reconstruct_in_child(database, images, out, log, ...) -> registered_poses of the largest model ({}: none)

    echo '{"database": ..., "images": ..., "out": ..., "seed": 0, "threads": 1, "verify": true,
           "known_intrinsics": false}' \\
        | python -m sfm.reconstruct        # the child: writes OUT/poses.json

Why a process of its own (as data/inhouse/sfm.py): COLMAP ends the whole process when it fails in a worker
thread (SQLite's "database or disk is full" is a C++ exception there: std::terminate), which no Python code can
catch; a benchmark that maps hundreds of bags must count such a bag as failed and go on. This module imports
only pycolmap, numpy and the standard library, so that the child starts in a second.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

POSES_FILE = "poses.json"  # in `out`: {image name: world-to-camera (4, 4) rows}, what the child hands back


class MappingFailedError(RuntimeError):
    """The child process ended without a result (COLMAP aborted, a full disk): the message names the log."""


def verify_geometry(database: str | Path, threads: int = 1) -> None:
    """COLMAP's geometric verification of every pair's raw matches in `database`, written there as two-view
    geometries (what the mapper reads)."""
    import pycolmap  # only reconstruction needs it

    options = pycolmap.GeometricVerifierOptions()
    options.num_threads = threads
    pycolmap.geometric_verification(str(database), options)


def reconstruct(database: str | Path, images: str | Path, out: str | Path, seed: int = 0, threads: int = 1,
                known_intrinsics: bool = False):
    """pycolmap's incremental mapper on `database` (its images' names relative to the folder `images`, which
    the mapper only records), the models written to `out`/0, 1, ... (created; COLMAP's numbering). Returns the
    model with the most registered images (a pycolmap.Reconstruction), or None when the mapper built none
    (too few verified matches to start). `known_intrinsics`: the database's cameras are exact, bundle
    adjustment keeps them (else it refines focal lengths and distortion, COLMAP's default)."""
    import pycolmap

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads, options.random_seed = threads, seed
    if known_intrinsics:
        options.ba_refine_focal_length = options.ba_refine_extra_params = False
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


def reconstruct_in_child(database: str | Path, images: str | Path, out: str | Path, log: str | Path,
                         seed: int = 0, threads: int = 1, verify: bool = True, known_intrinsics: bool = False
                         ) -> dict[str, np.ndarray]:
    """`verify_geometry` (with `verify`) and `reconstruct` in a child process, COLMAP's log to the file `log`:
    the registered poses of the largest model, {} when the mapper built none. MappingFailedError naming the log
    when the child dies (COLMAP aborted) or hands back nothing."""
    out = Path(out).resolve()  # the child runs in the checkout's folder, not this process's
    job = {"database": str(Path(database).resolve()), "images": str(Path(images).resolve()), "out": str(out),
           "seed": seed, "threads": threads, "verify": verify, "known_intrinsics": known_intrinsics}
    root = Path(__file__).resolve().parents[1]  # the child imports sfm from the checkout this one runs
    with open(log, "w") as log_file:
        child = subprocess.run([sys.executable, "-m", "sfm.reconstruct"], input=json.dumps(job), text=True,
                               stdout=log_file, stderr=subprocess.STDOUT, cwd=root, check=False)
    result = out / POSES_FILE
    if child.returncode != 0 or not result.is_file():
        raise MappingFailedError(f"mapping ended with exit code {child.returncode} (log: {log})")
    return {name: np.asarray(rows, np.float64) for name, rows in json.loads(result.read_text()).items()}


def run_job(job: dict) -> None:
    """The child's work: verify, map, write OUT/poses.json (an empty dict when no model was built)."""
    if job["verify"]:
        verify_geometry(job["database"], job["threads"])
    model = reconstruct(job["database"], job["images"], job["out"], job["seed"], job["threads"],
                        job["known_intrinsics"])
    poses = {} if model is None else registered_poses(model)
    path = Path(job["out"]) / POSES_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({name: pose.tolist() for name, pose in poses.items()}))
    partial.replace(path)  # whole or absent: the parent reads only a complete file


if __name__ == "__main__":
    run_job(json.load(sys.stdin))
