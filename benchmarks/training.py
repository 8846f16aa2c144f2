"""Training throughput: pairs per second and peak memory of full training steps (ground truth, forward, loss,
backward, AdamW), on generated pairs in the real loader's format.

    python benchmarks/training.py                         # the tiny model on the CPU, 320 and 640 px
    python benchmarks/training.py --device cuda --model loftr --sizes 640x480 840x840 --precision bf16-mixed \\
        [--attention full]
    python benchmarks/training.py --subpixel              # the cost of the stride-1 stage, against none
    python benchmarks/training.py --models loftr_tiny eloftr_tiny   # Efficient LoFTR against LoFTR

Prints one row per (model, size): pairs/s and peak memory (CUDA: allocator peak; CPU: the process's peak RSS
so far, so give sizes in increasing order); the speed ratio is against the first row of each size. Efficient
LoFTR trains on sides floored to multiples of 32 (320x240 -> 320x224), as its experiments' data do.
"""

import argparse
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import default_collate
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.synthetic.world import WorldConfig, generate_world
from lightning_modules.config import TrainingConfig, register_configs
from lightning_modules.loftr_module import LoFTRModule
from models.eloftr import EfficientLoFTRConfig
from models.family import family_of
from models.loftr import LoFTRConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def model_config(name: str) -> LoFTRConfig | EfficientLoFTRConfig:
    """The model of configs/model/NAME.yaml as train.py composes it (its backbone group included)."""
    register_configs()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=[f"model={name}", "run_dir=."]).model)


def measure(name: str, attention: str, size: tuple[int, int], root: Path, infos: list[Path], device: str,
            precision: str, steps: int, warmup: int, channels_last: bool = False,
            compile_: bool = False, subpixel: bool = False) -> tuple[float, float]:
    config = model_config(name)
    if family_of(config).name == "loftr":  # Efficient LoFTR has its own attention and fine stages
        config.coarse.attention = config.fine.transformer.attention = attention
        config.subpixel.enabled = subpixel
    module = LoFTRModule(TrainingConfig(model=config)).to(device).train()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile_:  # the parts with static shapes; the warm-up steps pay the compilation
        module.model.backbone = torch.compile(module.model.backbone)
        module.model.loftr_coarse = torch.compile(module.model.loftr_coarse)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    longer = max(size)
    dataset = MegaDepthPairs(MegaDepthConfig(root=str(root), scene_info=tuple(map(str, infos)), longer_side=longer,
                                             depth_pad_size=max(size),
                                             divisible_by=max(family_of(config).input_multiple, 8)))
    batches = [default_collate([dataset[i % len(dataset)]]) for i in range(steps + warmup)]
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=precision == "bf16-mixed")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = None
    label = f"{name} {size[0]}x{size[1]}" + (" subpixel" if subpixel else "")
    for index, batch in enumerate(tqdm(batches, desc=label, unit="step", leave=False)):  # on stderr
        if index == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast:
            loss = module.training_step(batch, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return steps / (time.perf_counter() - start), peak


def main() -> int:
    warnings.filterwarnings("ignore", message=".*self.trainer. reference is not registered.*")  # no Trainer here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["loftr_tiny"], help="files of configs/model/")
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"], help="original image WxH; trained "
                        "at the longer side, padded to a square as MegaDepth training does")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--attention", default="linear", choices=["linear", "full"], help="both levels; full: SDPA")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone and coarse transformer")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--subpixel", action="store_true", help="each size without, then with model.subpixel")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, {args.precision}, "
          f"{args.attention} attention, channels-last {args.channels_last}, compile {args.compile}")
    print(f"{'model':<12}{'size':>10}{'subpixel':>10}{'pairs/s':>10}{'peak MiB':>10}{'speed ratio':>13}")
    for text in args.sizes:
        size = tuple(int(v) for v in text.split("x"))
        with tempfile.TemporaryDirectory() as folder:
            infos = generate_world(folder, WorldConfig(num_scenes=1, cameras_per_scene=8, image_size=size))
            reference = None
            for name in args.models:
                for subpixel in (False, True) if args.subpixel else (False,):
                    rate, peak = measure(name, args.attention, size, Path(folder), infos, args.device,
                                         args.precision, args.steps, args.warmup, args.channels_last, args.compile,
                                         subpixel)
                    reference = reference or rate
                    print(f"{name:<12}{text:>10}{str(subpixel):>10}{rate:>10.2f}{peak:>10.0f}"
                          f"{rate / reference:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
