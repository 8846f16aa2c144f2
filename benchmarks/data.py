"""MegaDepth loader throughput at LoFTR's training size, with 0, 1 and 2 worker processes.

    python benchmarks/data.py [--pairs 24] [--workers 0 1 2]

The data: a synthetic world rendered at 1200x900 (MegaDepth-like originals) in MegaDepth's layout, read by
the same loader as the real dataset (JPEG decode, resize to 840, padding, depth .h5 read and padding).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.synthetic.world import WorldConfig, generate_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        infos = generate_world(root, WorldConfig(num_scenes=1, cameras_per_scene=10, image_size=(1200, 900),
                                                 min_overlap=0.0, max_overlap=1.0))
        dataset = MegaDepthPairs(MegaDepthConfig(root=root, scene_info=tuple(map(str, infos))))
        indices = [i % len(dataset) for i in range(args.pairs)]
        subset = torch.utils.data.Subset(dataset, indices)
        print(f"MegaDepth loader, 840 px, {args.pairs} pairs, batch 1, {torch.get_num_threads()} threads")
        print(f"{'workers':>7} | {'pairs/s':>7} | {'ms/pair':>7}")
        for workers in args.workers:
            loader = DataLoader(subset, batch_size=1, num_workers=workers)
            start = time.perf_counter()
            for _ in tqdm(loader, desc=f"{workers} workers", unit="pair", leave=False):  # on stderr
                pass
            seconds = time.perf_counter() - start
            print(f"{workers:>7} | {args.pairs / seconds:7.2f} | {1e3 * seconds / args.pairs:7.0f}")


if __name__ == "__main__":
    main()
