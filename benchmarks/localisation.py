"""How precisely matchers localise: each match's distance from the true match of its image-0 point, through the
renderer's exact depth and poses, on the test pairs of a synthetic world (MegaDepth layout).

    python benchmarks/localisation.py --world data/world --sift \\
        --loftr loftr=outputs/train/synthetic/latest/checkpoints/last.ckpt \\
        --loftr eloftr=outputs/train/eloftr_synthetic/latest/checkpoints/last.ckpt

Prints one row per matcher: pairs, matches, the median error, and the share within 0.5, 1 and 3 px (of the
matches whose image-0 point has valid, depth-consistent ground truth). The images are matched as given.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.io import listed_files, read_depth_h5
from data.megadepth import load_scene_info
from evaluation.matchers import build_matcher
from geometry.poses import relative_pose
from geometry.warp import warp_depth
from models.checkpoint import CheckpointError
from utils.images import read_grayscale


def test_pairs(world: Path, split: str, max_pairs: int):
    """(image0, image1, depth0, depth1, K0, K1, T_0to1) of the split's pairs, at most `max_pairs`."""
    count = 0
    for path in listed_files(world / split, world):
        info = load_scene_info(path)
        for (i, j), *_ in info["pair_infos"]:
            if count == max_pairs:
                return
            count += 1
            images = [read_grayscale(world / info["image_paths"][k]) for k in (i, j)]
            depths = [read_depth_h5(world / info["depth_paths"][k], image.shape) for k, image in zip((i, j), images)]
            Ks = [np.asarray(info["intrinsics"][k], np.float64).reshape(3, 3) for k in (i, j)]
            poses = [np.asarray(info["poses"][k], np.float64).reshape(4, 4) for k in (i, j)]
            yield (*images, *depths, *Ks, relative_pose(*poses))


def match_errors(kpts0: np.ndarray, kpts1: np.ndarray, depth0, depth1, K0, K1, T) -> np.ndarray:
    """|kpts1 - the true match of kpts0| (N',) px, for the matches whose ground truth is valid."""
    def as_batch(array):
        return torch.from_numpy(np.asarray(array, np.float64))[None]
    valid, truth = warp_depth(as_batch(kpts0), as_batch(depth0), as_batch(depth1), as_batch(K0), as_batch(K1),
                              as_batch(T))
    return np.linalg.norm(kpts1 - truth[0].numpy(), axis=1)[valid[0].numpy()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("data/world"))
    parser.add_argument("--split", default="test.txt", help="the world's list of scene-info files")
    parser.add_argument("--loftr", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a LoFTR-family checkpoint (ours or official), repeatable")
    parser.add_argument("--sift", action="store_true")
    parser.add_argument("--max-pairs", type=int, default=-1)
    args = parser.parse_args()
    matchers = {}
    try:
        for entry in args.loftr:
            name, sep, path = entry.partition("=")
            if not sep:
                raise ValueError(f"--loftr {entry!r}: give NAME=CHECKPOINT")
            matchers[name] = build_matcher("loftr", checkpoint=path)
        if args.sift:
            matchers["sift"] = build_matcher("sift")
        pairs = list(test_pairs(args.world, args.split, args.max_pairs))
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"localisation.py: error: {error}", file=sys.stderr)
        return 2
    print(f"{len(pairs)} pairs of {args.world / args.split}, matched as given")
    print(f"{'matcher':<16}{'matches':>9}{'checked':>9}{'median px':>11}{'<0.5 px':>9}{'<1 px':>8}{'<3 px':>8}")
    for name, matcher in matchers.items():
        errors, found = [], 0
        for image0, image1, *geometry in pairs:
            matches = matcher.match(image0, image1)
            found += len(matches)
            errors.append(match_errors(matches.keypoints0, matches.keypoints1, *geometry))
        errors = np.concatenate(errors)
        shares = [100 * float(np.mean(errors < t)) if len(errors) else float("nan") for t in (0.5, 1, 3)]
        median = float(np.median(errors)) if len(errors) else float("nan")
        print(f"{name:<16}{found:>9}{len(errors):>9}{median:>11.2f}" + "".join(f"{s:>8.1f}%" for s in shares))
    return 0


if __name__ == "__main__":
    sys.exit(main())
