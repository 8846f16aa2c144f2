"""In-house data from a folder of photos, in one command:

    python -m data.inhouse prepare --images DIR --out DIR [--model SPARSE_DIR] [--depth-maps DIR]
                                   [--labels FILE] [--camera-model SIMPLE_PINHOLE|PINHOLE]
                                   [--camera-mode auto|single|per-image] [--camera-params f,cx,cy]
                                   [--overwrite]

Runs structure from motion (pycolmap, CPU) on the photos, or imports an existing COLMAP model (--model),
and writes a training-ready dataset (data/inhouse/prepare.py says which files), then prints a short
report: images registered, pairs kept (and why the others were dropped), an overlap histogram. A problem
with the input stops with one line on stderr saying why, exit code 2. --out must be new, empty or a folder
prepare wrote (its prepare.json), unless --overwrite; a run that fails (a full disk) removes what it wrote.
"""

import argparse
import sys
import time

from utils.files import ForeignFolderError

from .labels import LabelFileError
from .prepare import CAMERA_MODES, PINHOLE_MODELS, PrepareConfig, PrepareError, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.inhouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("prepare", help="photos (or a COLMAP model) -> training dataset")
    run.add_argument("--images", required=True, help="folder of photos")
    run.add_argument("--out", required=True, help="folder to write the dataset into")
    run.add_argument("--model", help="existing COLMAP sparse model (cameras, images, points3D): no SfM run")
    run.add_argument("--depth-maps", help="COLMAP dense depth maps (stereo/depth_maps): write the MegaDepth layout")
    run.add_argument("--labels", help="labelled correspondences, 'image0, image1, x0, y0, x1, y1' a line")
    run.add_argument("--scene", default="inhouse", help="scene name (file names of the output)")
    run.add_argument("--camera-model", default="SIMPLE_PINHOLE", choices=PINHOLE_MODELS)
    run.add_argument("--camera-mode", default="auto", choices=CAMERA_MODES,
                     help="one camera for all photos (same camera, same zoom), one per photo, or COLMAP's guess")
    run.add_argument("--camera-params", default="", help="known intrinsics in COLMAP's order (SIMPLE_PINHOLE: "
                                                         "f,cx,cy; PINHOLE: fx,fy,cx,cy), kept fixed")
    run.add_argument("--min-shared-points", type=int, default=30)
    run.add_argument("--min-overlap", type=float, default=0.1)
    run.add_argument("--max-overlap", type=float, default=0.9)
    run.add_argument("--max-image-size", type=int, default=1600, help="SIFT on photos downscaled to this side")
    run.add_argument("--min-model-size", type=int, default=3, help="photos a separate SfM model needs to be kept")
    run.add_argument("--threads", type=int, default=-1)
    run.add_argument("--overwrite", action="store_true",
                     help="write into a non-empty --out that prepare did not make (no prepare.json)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        config = PrepareConfig(images=args.images, out=args.out, model=args.model, depth_maps=args.depth_maps,
                               labels=args.labels, scene=args.scene, camera_model=args.camera_model,
                               camera_mode=args.camera_mode, camera_params=args.camera_params,
                               min_shared_points=args.min_shared_points, min_overlap=args.min_overlap,
                               max_overlap=args.max_overlap, max_image_size=args.max_image_size,
                               min_model_size=args.min_model_size,
                               num_threads=args.threads, overwrite=args.overwrite)
        report = prepare(config)
    except ForeignFolderError as error:
        return refuse(f"--out {error}, or pass --overwrite to write prepare's files there")
    except (PrepareError, LabelFileError, FileNotFoundError) as error:
        return refuse(str(error))
    except OSError as error:  # a full disk: prepare removed what it wrote
        return refuse(f"cannot write to --out {args.out}: {error.strerror or error}; what this run added there "
                      f"was removed")
    print(report.format())
    print(f"done in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
