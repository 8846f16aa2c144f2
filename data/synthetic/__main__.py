"""Render a synthetic world in MegaDepth's (or ScanNet's) layout, split into train / val / test scenes.

    python -m data.synthetic --out data/world [--scenes 6] [--test-scenes 1] [--cameras 20] [--size 640x480]
                             [--seed 0] [--layout megadepth|scannet] [--textures mixed|photos|procedural]

Writes the scenes (see data/synthetic/world.py for both layouts) and OUT/{train,val,test}.txt, each listing
the scene-info (or ScanNet index) files of its split, relative to OUT: the last `--test-scenes` scenes for
test, the one before them for val, the rest for training.
"""

import argparse
import sys
import time
from pathlib import Path

from .world import LAYOUTS, TEXTURES, WorldConfig, generate_world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the world into")
    parser.add_argument("--scenes", type=int, default=6, help="scenes (at least 2 more than --test-scenes)")
    parser.add_argument("--test-scenes", type=int, default=1, help="scenes held out for testing")
    parser.add_argument("--cameras", type=int, default=20, help="cameras per scene")
    parser.add_argument("--size", default="640x480", help="image WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=LAYOUTS, default="megadepth", help="on-disk format to write")
    parser.add_argument("--textures", choices=TEXTURES, default="mixed",
                        help="surface textures: scikit-image's sample photos, procedural noise, or both")
    args = parser.parse_args(argv)
    if args.test_scenes < 1 or args.scenes < args.test_scenes + 2:
        parser.error(f"--scenes {args.scenes} --test-scenes {args.test_scenes}: at least one test scene, and one "
                     f"scene each for training and validation besides")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 640x480")
    start = time.perf_counter()
    config = WorldConfig(num_scenes=args.scenes, cameras_per_scene=args.cameras, image_size=(width, height),
                         textures=args.textures, seed=args.seed)
    infos = generate_world(args.out, config, layout=args.layout)
    test = len(infos) - args.test_scenes
    splits = {"train": infos[:test - 1], "val": infos[test - 1:test], "test": infos[test:]}
    for split, paths in splits.items():
        (args.out / f"{split}.txt").write_text("".join(f"{p.relative_to(args.out)}\n" for p in paths))
    print(f"{len(infos)} scenes x {args.cameras} cameras -> {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
