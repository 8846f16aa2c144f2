"""Structure from motion with pycolmap, run as a child process of `prepare` (data/inhouse/prepare.py):

    echo '{"database": ..., "images": ..., "sparse": ..., "names": [...], ...}' | python data/inhouse/sfm.py

SIFT extraction, exhaustive matching and incremental mapping on the CPU; the models go to SPARSE/0, 1, ...
(COLMAP's numbering). Stage lines ("prepare: ...") and COLMAP's log go to stderr.

Why a process of its own: COLMAP ends the whole process when it fails in a worker thread (SQLite "database or
disk is full" is a C++ exception thrown there: std::terminate, SIGABRT), which no Python code can catch. A
child can die so; `prepare` sees its exit code and log, removes what was written and says why in one line.
(Checking free space beforehand was the other choice: the database's size depends on how many features and
matches the photos give, so no bound is both safe and not far too large.) This file imports only pycolmap and
the standard library, so that the child starts in a second.
"""

import json
import sys
import time
from contextlib import contextmanager


@contextmanager
def stage(label: str):
    """A line on stderr when a long step starts and one with its duration when it ends: pycolmap's calls
    report no progress of their own."""
    print(f"prepare: {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"prepare: {label}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def run(job: dict) -> None:
    import pycolmap

    names = job["names"]
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = job["camera_model"]
    reader.camera_params = job["camera_params"]
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = job["max_image_size"]
    extraction.num_threads = job["num_threads"]
    mode = {"auto": pycolmap.CameraMode.AUTO, "single": pycolmap.CameraMode.SINGLE,
            "per-image": pycolmap.CameraMode.PER_IMAGE}[job["camera_mode"]]
    pycolmap.set_random_seed(job["seed"])
    with stage(f"SfM 1/3, SIFT feature extraction ({len(names)} photos)"):
        pycolmap.extract_features(job["database"], job["images"], image_names=names, camera_mode=mode,
                                  reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = job["num_threads"]
    with stage(f"SfM 2/3, exhaustive matching ({len(names) * (len(names) - 1) // 2} pairs)"):
        pycolmap.match_exhaustive(job["database"], matching_options=matching, device=pycolmap.Device.cpu)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = job["num_threads"]
    options.random_seed = job["seed"]
    options.min_model_size = job["min_model_size"]
    if job["camera_params"]:
        options.ba_refine_focal_length = False  # the user knows the intrinsics
        options.ba_refine_principal_point = False
    with stage("SfM 3/3, incremental mapping"):
        pycolmap.incremental_mapping(job["database"], job["images"], job["sparse"], options)


if __name__ == "__main__":
    run(json.load(sys.stdin))  # not argv: thousands of photo names outgrow one argument's limit (128 KiB)
