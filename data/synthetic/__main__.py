"""Render a synthetic world in one of LoFTR's dataset layouts, split into train / val / test scenes.

    python -m data.synthetic --out data/world [--scenes 6] [--test-scenes 1] [--cameras 20] [--size 640x480]
                             [--seed 0] [--layout flat|megadepth|scannet] [--textures mixed|photos|procedural]
                             [--overwrite]

The last `--test-scenes` scenes test, the one before them validates, the rest train. Layouts (the files of
each: data/synthetic/trees.py):
    flat        (default) OUT/scene_info/sceneXXXX.npz, OUT/sceneXXXX/{images,depths}/ and OUT/{train,val,
                test}.txt listing each split's scene-info files relative to OUT: the `synthetic` experiment's world
    megadepth   LoFTR's data/megadepth tree: OUT/train/{Undistorted_SfM,phoenix}, OUT/test -> train, OUT/index/
    scannet     LoFTR's data/scannet tree: OUT/train/sceneXXXX_00, OUT/test/sceneXXXX_00, OUT/index/
Every layout ends with OUT/world.json, the options that made it (data/synthetic/manifest.py). OUT must be new,
empty or a world this generator made (it is then made again; other files in it stay): a folder with other data
(LoFTR's real data/megadepth index) is refused unless --overwrite. A run that fails (a full disk) removes what
it wrote. Progress goes to stderr, one step a scene. Bad options and failures: one line on stderr, exit code 2.
"""

import argparse
import sys
import time
from pathlib import Path

from utils.files import ForeignFolderError

from .trees import LAYOUTS, write_world
from .world import TEXTURES, WorldConfig, check_image_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the world into")
    parser.add_argument("--scenes", type=int, default=6, help="scenes (at least 2 more than --test-scenes)")
    parser.add_argument("--test-scenes", type=int, default=1, help="scenes held out for testing")
    parser.add_argument("--cameras", type=int, default=20, help="cameras per scene")
    parser.add_argument("--size", default="640x480", help="image WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=LAYOUTS, default="flat", help="on-disk layout to write")
    parser.add_argument("--textures", choices=TEXTURES, default="mixed",
                        help="surface textures: scikit-image's sample photos, procedural noise, or both")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that no run of this generator made, replacing the "
                             "layout's files there")
    args = parser.parse_args(argv)
    if args.test_scenes < 1 or args.scenes < args.test_scenes + 2:
        return refuse(f"--scenes {args.scenes} --test-scenes {args.test_scenes}: at least one test scene, and one "
                      f"scene each for training and validation besides")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        return refuse(f"--size {args.size}: expected WIDTHxHEIGHT in pixels, e.g. 640x480")
    try:
        check_image_size((width, height), "--size")
    except ValueError as error:
        return refuse(str(error))
    start = time.perf_counter()
    config = WorldConfig(num_scenes=args.scenes, cameras_per_scene=args.cameras, image_size=(width, height),
                         textures=args.textures, seed=args.seed)
    try:
        write_world(args.out, config, layout=args.layout, test_scenes=args.test_scenes, progress=True,
                    overwrite=args.overwrite)
    except ForeignFolderError as error:
        return refuse(f"--out {error}, or pass --overwrite to replace the layout's files there")
    except FileExistsError as error:  # a folder in the way of the layout's files: say which, in one line
        return refuse(str(error))
    except OSError as error:  # a full disk: trees.write_world removed what this run wrote
        return refuse(f"cannot write the world to --out {args.out}: {error.strerror or error}; what this run "
                      f"added there was removed")
    print(f"{args.scenes} scenes x {args.cameras} cameras -> {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
