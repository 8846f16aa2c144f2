"""Inference speed and memory: our LoFTR against kornia's on the same weights and the same pair.

    python benchmarks/inference.py [--sizes 480x640 240x320] [--runs 5] [--device cpu|cuda]
                                   [--autocast bf16] [--attention linear|full] [--channels-last] [--compile]
    python benchmarks/inference.py --backbones [--sizes 480x640] [--runs 3]
    python benchmarks/inference.py --eloftr [--sizes 480x640 240x320] [--runs 5]
    python benchmarks/inference.py --attention quadtree [--sizes 480x640 840x840] [--runs 3]

`--backbones` compares the backbones alone instead, on one image pair (B = 2) at the official widths: LoFTR's
ResNet-FPN against SE2-LoFTR's steerable one (C4, C8), both as trained (e2cnn modules) and exported to plain
torch, as ratios to the standard backbone's time and peak memory in the same run.

`--attention quadtree` compares the coarse transformer alone (LoFTR's widths: 8 layers of 256 channels, 8 heads,
on the 1/8 token grids of both images, seeded random weights and tokens) with linear attention (LoFTR's layer),
full softmax attention (LoFTR's layer, SDPA) and QuadTree-B (the official QuadTree-LoFTR layer, top-K 16 / 8 / 8):
time and peak memory, as ratios to linear attention in the same run.

`--eloftr` compares Efficient LoFTR: ours (models/eloftr.py) against the official code (efficientloftr-inference)
on the same seeded weights, both re-parameterised, batch norms calibrated on the pair (random RepVGG weights give
a handful of matches otherwise), and our LoFTR (the kornia-weight model below) as the reference for speed.

Both models get the same seeded random weights, sharpened as in the parity tests so that the pair (a
textured image and a warped copy) yields a realistic number of matches and the fine level does real work.
Times are medians of interleaved runs (kornia, ours, kornia, ...), so drift on a shared machine hits both;
the speed-up is the ratio measured in this run. Peak memory is the growth of the peak resident set over one forward
in a fresh process on CPU (Linux; median of 3 processes), and `torch.cuda.max_memory_allocated` on CUDA.
"""

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kornia.feature.loftr.loftr import LoFTR as KorniaLoFTR
from kornia.feature.loftr.loftr import default_cfg

from models.backbone import build_backbone
from models.backbone.resnet_fpn import ResNetFPNConfig
from models.checkpoint import load_weights
from models.eloftr import EfficientLoFTR
from models.loftr import LoFTR, LoFTRConfig
from models.transformer.encoder import LocalFeatureTransformer, TransformerConfig
from tests.helpers import calibrate_norms_, image_pair, sharpen_, shifted_pair


def speed_up(model: LoFTR, channels_last: bool, compile_: bool) -> LoFTR:
    """GPU options for our model: channels-last convolutions, and torch.compile of the parts with static shapes
    (the backbone and the coarse transformer; the fine level's input grows with the number of matches)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        model.backbone = torch.compile(model.backbone)
        model.loftr_coarse = torch.compile(model.loftr_coarse)
    return model


def build(which: str, attention: str, device: str, channels_last: bool = False, compile_: bool = False):
    torch.manual_seed(0)
    reference = sharpen_(KorniaLoFTR(pretrained=None, config=copy.deepcopy(default_cfg)).eval())
    if which == "kornia":
        return reference.to(device)
    config = LoFTRConfig(temp_bug_fix=False)
    config.coarse.attention = attention
    ours = LoFTR(config).eval()
    load_weights(ours, reference.state_dict())
    return speed_up(ours.to(device), channels_last, compile_)


ELOFTR = ("eloftr-upstream", "eloftr")


def build_eloftr(which: str, device: str) -> torch.nn.Module:
    """Efficient LoFTR, official (`eloftr-upstream`) or ours (`eloftr`), with the same seeded weights whose
    batch norms calibrated on a 224x320 pair (`shifted_pair`), both re-parameterised for inference."""
    import kornia.utils

    sys.modules.setdefault("kornia.utils.grid", kornia.utils)  # the package's import, gone from kornia 0.9
    import efficientloftr_inference as upstream_package

    torch.manual_seed(0)
    upstream = upstream_package.LoFTR(upstream_package.full_config())
    calibrate_norms_(upstream, lambda: upstream({k: v.float() for k, v in shifted_pair(224, 320).items()}))
    if which == "eloftr":
        ours = EfficientLoFTR()
        load_weights(ours, upstream.state_dict())
        return ours.reparameterize().eval().to(device)
    return upstream_package.reparameter(upstream).eval().to(device)


BACKBONES = ("standard", "se2-c4", "se2-c4-export", "se2-c8", "se2-c8-export")


def build_backbone_variant(name: str, device: str) -> torch.nn.Module:
    """`standard`, or `se2-cN` (SE2-LoFTR's backbone over C_N, divide_by_group) with `-export` for its plain copy."""
    torch.manual_seed(0)
    if name == "standard":
        return build_backbone(ResNetFPNConfig()).eval().to(device)
    order = int(name.split("-")[1][1:])
    backbone = build_backbone(ResNetFPNConfig(type="se2_resnet_fpn", group_order=order)).eval()
    return (backbone.export() if name.endswith("-export") else backbone).to(device)


def run_backbone(backbone, image0, image1, autocast: str | None):
    with torch.inference_mode(), torch.autocast(image0.device.type, torch.bfloat16, enabled=autocast == "bf16"):
        out = backbone(torch.cat([image0, image1]))
    if image0.device.type == "cuda":
        torch.cuda.synchronize()
    return out


def run(model, image0, image1, autocast: str | None):
    if not hasattr(model, "coarse_matching"):  # a backbone alone
        return run_backbone(model, image0, image1, autocast)
    batch = {"image0": image0, "image1": image1}
    with torch.inference_mode(), torch.autocast(image0.device.type, torch.bfloat16, enabled=autocast == "bf16"):
        out = model(batch)
    if image0.device.type == "cuda":
        torch.cuda.synchronize()
    if out is None:  # the official Efficient LoFTR writes its results into the batch
        return batch["mkpts0_f"], batch["mkpts1_f"]
    if isinstance(out, dict):
        return out["keypoints0"], out["keypoints1"]
    return out.keypoints0, out.keypoints1


COARSE_ATTENTIONS = {  # the coarse transformer alone, at LoFTR's widths
    "coarse-linear": TransformerConfig(attention="linear"),
    "coarse-full": TransformerConfig(attention="full"),
    "coarse-quadtree": TransformerConfig(attention="quadtree", block="quadtree"),
}


def coarse_inputs(size: tuple[int, int], device: str) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Seeded tokens of both images' 1/8 grids (B = 1, 256 channels) for an image size (H, W), and the grid."""
    grid = (size[0] // 8, size[1] // 8)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, grid[0] * grid[1], 256, generator=generator).to(device)
    return tokens[:1], tokens[1:], grid


def run_coarse(transformer, tokens0, tokens1, grid):
    with torch.inference_mode():
        out = transformer(tokens0, tokens1, grid0=grid, grid1=grid)
    if tokens0.device.type == "cuda":
        torch.cuda.synchronize()
    return out


def build_any(which: str, attention: str, device: str, channels_last: bool = False,
              compile_: bool = False) -> torch.nn.Module:
    if which in COARSE_ATTENTIONS:
        torch.manual_seed(0)
        return LocalFeatureTransformer(COARSE_ATTENTIONS[which]).eval().to(device)
    if which in BACKBONES:
        return build_backbone_variant(which, device)
    if which in ELOFTR:
        return build_eloftr(which, device)
    return build(which, attention, device, channels_last, compile_)


def peak_memory_mb(which: str, size: tuple[int, int], args) -> float:
    """Peak memory of one forward, measured in a fresh process so earlier runs do not hide it."""
    if args.device == "cuda":
        model = build_any(which, args.attention, "cuda", args.channels_last, args.compile)
        if which in COARSE_ATTENTIONS:
            inputs = coarse_inputs(size, "cuda")
            def forward():
                return run_coarse(model, *inputs)
        else:
            image0, image1 = (x.cuda() for x in image_pair(*size))
            def forward():
                return run(model, image0, image1, args.autocast)
        forward()  # compilation's own memory is not the model's
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    command = [sys.executable, __file__, "--memory-probe", which, f"{size[0]}x{size[1]}", "--attention", args.attention,
               *(["--eloftr"] if args.eloftr else [])]
    probes = [subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1] for _ in range(3)]
    return statistics.median(float(p) for p in probes)  # the resident set varies by ~10% from run to run


def memory_probe(which: str, size: tuple[int, int], attention: str, eloftr: bool) -> None:
    model = build_any(which, attention, "cpu")
    if which in COARSE_ATTENTIONS:
        inputs = coarse_inputs(size, "cpu")
        def forward():
            return run_coarse(model, *inputs)
    else:
        image0, image1 = (x.float() for x in shifted_pair(*size).values()) if eloftr else image_pair(*size)
        def forward():
            return run(model, image0, image1, None)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    forward()
    print((_status_kib("VmHWM") - before) / 1024)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (peak memory on CPU needs Linux)")


def interleaved_times(calls: dict, runs: int) -> dict[str, list[float]]:
    """Seconds per call of each named callable, `runs` rounds, one call of each per round: drift on a shared
    machine then hits every contender alike."""
    times = {name: [] for name in calls}
    for _ in tqdm(range(runs), desc=" vs ".join(calls), unit="round", leave=False):  # on stderr
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def compare(size: tuple[int, int], args) -> dict:
    models = {name: build(name, args.attention, args.device, args.channels_last, args.compile)
              for name in ("kornia", "ours")}
    image0, image1 = (x.to(args.device) for x in image_pair(*size))
    outputs = {name: run(model, image0, image1, args.autocast) for name, model in models.items()}  # warm-up
    times = interleaved_times({name: lambda m=model: run(m, image0, image1, args.autocast)
                               for name, model in models.items()}, args.runs)

    (k0, k1), (o0, o1) = outputs["kornia"], outputs["ours"]
    def key(kpts):
        return {tuple(p) for p in kpts.round().long().tolist()}  # coarse cells
    same_set = key(k0) == key(o0) and len(k0) == len(o0)
    kp_diff = float("nan")
    if same_set and len(k0):
        order_k, order_o = (torch.argsort(k[:, 1] * 1e5 + k[:, 0]) for k in (k0, o0))
        kp_diff = (k1[order_k].float() - o1[order_o].float()).abs().max().item()
    row = {
        "size": f"{size[0]}x{size[1]}",
        "kornia_ms": 1e3 * statistics.median(times["kornia"]),
        "ours_ms": 1e3 * statistics.median(times["ours"]),
        "matches_kornia": len(k0),
        "matches_ours": len(o0),
        "same_matches": same_set,
        "max_kpt_diff_px": kp_diff,
    }
    row["speedup"] = row["kornia_ms"] / row["ours_ms"]
    if not args.no_memory:
        row["kornia_peak_mb"] = peak_memory_mb("kornia", size, args)
        row["ours_peak_mb"] = peak_memory_mb("ours", size, args)
    return row


def compare_eloftr(size: tuple[int, int], args) -> dict:
    """Ours against the official Efficient LoFTR (same weights: same matches?) and against our LoFTR."""
    models = {name: build_any(name, args.attention, args.device) for name in (*ELOFTR, "ours")}
    image0, image1 = (x.to(args.device, torch.float32) for x in shifted_pair(*size).values())
    outputs = {name: run(model, image0, image1, args.autocast) for name, model in models.items()}  # warm-up
    times = interleaved_times({name: lambda m=model: run(m, image0, image1, args.autocast)
                               for name, model in models.items()}, args.runs)
    (u0, u1), (e0, e1) = outputs["eloftr-upstream"], outputs["eloftr"]
    order_u, order_e = (torch.argsort(k[:, 1] * 1e5 + k[:, 0]) for k in (u0, e0))
    same = len(u0) == len(e0) and bool(len(u0)) and bool((u0[order_u] - e0[order_e]).abs().max() < 1e-2)
    row = {"size": f"{size[0]}x{size[1]}", "matches_upstream": len(u0), "matches_ours": len(e0),
           "matches_loftr": len(outputs["ours"][0]), "same_matches": same,
           "max_kpt_diff_px": (u1[order_u] - e1[order_e]).abs().max().item() if same else float("nan"),
           **{f"{name}_ms": 1e3 * statistics.median(times[name]) for name in models}}
    row["vs_upstream"] = row["eloftr-upstream_ms"] / row["eloftr_ms"]
    row["vs_loftr"] = row["ours_ms"] / row["eloftr_ms"]
    if not args.no_memory:
        for name in models:
            row[f"{name}_peak_mb"] = peak_memory_mb(name, size, args)
    return row


def print_eloftr(args) -> list[dict]:
    # Efficient LoFTR takes sides that are multiples of 32 (its demo floors them so): 240x320 runs at 224x320
    sizes = [tuple(int(v) // 32 * 32 for v in s.split("x")) for s in args.sizes]
    rows = [compare_eloftr(size, args) for size in sizes]
    header = (f"{'size':>9} | {'upstream ms':>11} | {'ours ms':>7} | {'x upstream':>10} | {'LoFTR ms':>8} | "
              f"{'x LoFTR':>7} | {'matches up/ours':>15} | same | {'max dkpt px':>11}")
    if not args.no_memory:
        header += f" | {'peak MB up':>10} | {'ours':>5} | {'LoFTR':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        line = (f"{r['size']:>9} | {r['eloftr-upstream_ms']:11.0f} | {r['eloftr_ms']:7.0f} | {r['vs_upstream']:9.2f}x"
                f" | {r['ours_ms']:8.0f} | {r['vs_loftr']:6.2f}x | {r['matches_upstream']:>7}/{r['matches_ours']:<7} | "
                f"{'yes' if r['same_matches'] else 'NO ':>4} | {r['max_kpt_diff_px']:11.1e}")
        if not args.no_memory:
            line += f" | {r['eloftr-upstream_peak_mb']:10.0f} | {r['eloftr_peak_mb']:5.0f} | {r['ours_peak_mb']:5.0f}"
        print(line)
    return rows


def compare_backbones(size: tuple[int, int], args) -> list[dict]:
    """Each backbone's median time and peak memory, and their ratios to the standard backbone's."""
    backbones = {name: build_backbone_variant(name, args.device) for name in BACKBONES}
    image0, image1 = (x.to(args.device) for x in image_pair(*size))
    for backbone in backbones.values():  # warm-up
        run_backbone(backbone, image0, image1, args.autocast)
    times = interleaved_times({name: lambda b=backbone: run_backbone(b, image0, image1, args.autocast)
                               for name, backbone in backbones.items()}, args.runs)
    rows = []
    for name in backbones:
        trained = backbones[name.removesuffix("-export")]  # an export's weights are expanded, not free parameters
        row = {"size": f"{size[0]}x{size[1]}", "backbone": name, "ms": 1e3 * statistics.median(times[name]),
               "params": sum(p.numel() for p in trained.parameters())}
        if not args.no_memory:
            row["peak_mb"] = peak_memory_mb(name, size, args)
        rows.append(row)
    for row in rows:
        row["time_ratio"] = row["ms"] / rows[0]["ms"]
        if not args.no_memory:
            row["memory_ratio"] = row["peak_mb"] / rows[0]["peak_mb"]
    return rows


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """One line a row; columns (title, key, format spec; a spec ending in "x" marks a ratio), right-aligned."""
    def cell(value, spec):
        return format(value, spec[:-1]) + "x" if spec.endswith("x") else format(value, spec)
    cells = [[cell(row[key], spec) for _, key, spec in columns] for row in rows]
    widths = [max([len(title)] + [len(line[i]) for line in cells]) for i, (title, _, _) in enumerate(columns)]
    header = " | ".join(title.rjust(width) for (title, _, _), width in zip(columns, widths))
    print(header)
    print("-" * len(header))
    for line in cells:
        print(" | ".join(text.rjust(width) for text, width in zip(line, widths)))


def print_backbones(args) -> list[dict]:
    rows = [row for s in args.sizes for row in compare_backbones(tuple(int(v) for v in s.split("x")), args)]
    columns = [("size", "size", ""), ("backbone", "backbone", ""), ("params", "params", ","), ("ms", "ms", ".0f"),
               ("x standard", "time_ratio", ".2fx")]
    if not args.no_memory:
        columns += [("peak MB", "peak_mb", ".0f"), ("x standard", "memory_ratio", ".2fx")]
    print_table(rows, columns)
    return rows


def print_attention(args) -> list[dict]:
    """The coarse transformer with each attention at each size: ms, peak MB and both as ratios to linear's."""
    rows = []
    for text in args.sizes:
        size = tuple(int(v) for v in text.split("x"))
        models = {name: build_any(name, "linear", args.device) for name in COARSE_ATTENTIONS}
        inputs = coarse_inputs(size, args.device)
        for model in models.values():
            run_coarse(model, *inputs)  # warm-up
        times = interleaved_times({name: lambda m=model, x=inputs: run_coarse(m, *x) for name, model in models.items()},
                                  args.runs)
        for name in models:
            row = {"size": text, "tokens": inputs[0].shape[1], "attention": name.removeprefix("coarse-"),
                   "ms": 1e3 * statistics.median(times[name])}
            if not args.no_memory:
                row["peak_mb"] = peak_memory_mb(name, size, args)
            rows.append(row)
        linear = rows[-len(models)]
        for row in rows[-len(models):]:
            row["time_vs_linear"] = row["ms"] / linear["ms"]
            if not args.no_memory:
                row["memory_vs_linear"] = row["peak_mb"] / max(linear["peak_mb"], 1e-9)
    columns = [("size", "size", ""), ("tokens", "tokens", "d"), ("attention", "attention", ""), ("ms", "ms", ".0f"),
               ("x linear", "time_vs_linear", ".2fx")]
    if not args.no_memory:
        columns += [("peak MB", "peak_mb", ".0f"), ("x linear", "memory_vs_linear", ".2fx")]
    print_table(rows, columns)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["480x640", "240x320"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--autocast", choices=["bf16"], default=None)
    parser.add_argument("--attention", choices=["linear", "full", "quadtree"], default="linear",
                        help="ours only; quadtree: the coarse transformer with each attention (see above)")
    parser.add_argument("--channels-last", action="store_true", help="ours only: channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="ours only: torch.compile backbone and coarse "
                        "transformer (the warm-up run pays the compilation)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--backbones", action="store_true", help="compare the backbones alone (see above)")
    parser.add_argument("--eloftr", action="store_true", help="Efficient LoFTR: ours, upstream's, our LoFTR")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--memory-probe", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        which, size = args.memory_probe
        memory_probe(which, tuple(int(v) for v in size.split("x")), args.attention, args.eloftr)
        return

    print(f"device {args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"autocast {args.autocast or 'off (fp32)'}, our attention {args.attention}, channels-last "
          f"{args.channels_last}, compile {args.compile}, median of {args.runs}")
    if args.backbones or args.eloftr or args.attention == "quadtree":  # each its own table
        if args.attention == "quadtree":
            rows = print_attention(args)
        else:
            rows = print_backbones(args) if args.backbones else print_eloftr(args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return
    rows = [compare(tuple(int(v) for v in s.split("x")), args) for s in args.sizes]
    header = (f"{'size':>9} | {'kornia ms':>9} | {'ours ms':>8} | {'speed-up':>8} | {'matches':>11} | same | "
              f"{'max dkpt px':>11}")
    if not args.no_memory:
        header += f" | {'peak MB kornia':>14} | {'ours':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        line = (
            f"{r['size']:>9} | {r['kornia_ms']:9.0f} | {r['ours_ms']:8.0f} | {r['speedup']:7.2f}x | "
            f"{r['matches_kornia']:>5}/{r['matches_ours']:<5} | {'yes' if r['same_matches'] else 'NO ':>4} | "
            f"{r['max_kpt_diff_px']:11.1e}"
        )
        if not args.no_memory:
            line += f" | {r['kornia_peak_mb']:14.0f} | {r['ours_peak_mb']:6.0f}"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
