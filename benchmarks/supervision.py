"""Cost of the coarse ground truth against a training step, per pair at LoFTR's training size.

    python benchmarks/supervision.py [--size 840] [--runs 5] [--device cpu|cuda] [--no-step]

The scene: a tilted plane seen by two cameras 15 degrees apart, with depth maps at an original resolution
of 1.5x the network input (as MegaDepth images are resized to 840), so that every warp, depth read and
mutual check runs as in training. The reference, measured in the same run, is one training step (forward
and backward) of the full LoFTR on the same pair; the table gives the ground truth as a share of it.
"""

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geometry.ground_truth import coarse_supervision
from losses.loftr_loss import LoFTRLoss
from models.loftr import LoFTR


def scene(size: int, device: str) -> dict:
    original = int(size * 1.5)
    f, c = 1.2 * original, (original - 1) / 2
    K = torch.tensor([[[f, 0, c], [0, f, c], [0, 0, 1.0]]], device=device)
    rows, cols = torch.meshgrid(torch.arange(original, device=device), torch.arange(original, device=device),
                                indexing="ij")
    depth = (8.0 + 0.004 * cols + 0.002 * rows).float()[None]  # a tilted plane, 8-13 m away
    angle = math.radians(15)
    T = torch.eye(4, device=device)
    T[:3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    T[:3, 3] = torch.tensor([-2.0, 0.1, 0.3])
    scale = torch.tensor([[original / size, original / size]], device=device)
    image = torch.rand(1, 1, size, size, device=device)
    return {
        "image0": image,
        "image1": image.clone(),
        "depth0": depth,
        "depth1": depth.clone(),
        "K0": K,
        "K1": K.clone(),
        "T_0to1": T[None],
        "scale0": scale,
        "scale1": scale.clone(),
    }


def timed(fn, runs: int, device: str, label: str) -> float:
    fn()
    times = []
    for _ in tqdm(range(runs), desc=label, unit="run", leave=False):  # on stderr
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=840)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-step", action="store_true", help="skip the training-step reference")
    args = parser.parse_args()
    batch = scene(args.size, args.device)
    grid = (-(-args.size // 8),) * 2
    supervision = coarse_supervision(batch, grid, grid)
    gt_seconds = timed(lambda: coarse_supervision(batch, grid, grid), args.runs, args.device, "coarse ground truth")

    step_seconds = float("nan")
    if not args.no_step:
        model, loss = LoFTR().to(args.device).train(), LoFTRLoss()
        ground_truth = (supervision.batch_index, supervision.index0, supervision.index1)

        def step():
            model.zero_grad(set_to_none=True)
            loss(model(batch, ground_truth=ground_truth), supervision).total.backward()

        step_seconds = timed(step, max(1, args.runs // 5), args.device, "training step")

    print(
        f"device {args.device} ({torch.get_num_threads()} threads), {args.size}x{args.size} input, "
        f"{len(supervision.index0)} ground-truth matches of {grid[0] * grid[1]} cells"
    )
    print(f"{'coarse ground truth ms':>22} | {'training step ms':>16} | share of the step")
    print(f"{gt_seconds * 1e3:22.1f} | {step_seconds * 1e3:16.0f} | {gt_seconds / step_seconds:.2%}")


if __name__ == "__main__":
    main()
