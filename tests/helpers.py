"""Inputs shared by the tests and the benchmarks: a textured pair, a tiny and a decisive random LoFTR; and a
way to run a command line in the test process."""

import io
import os
import runpy
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import torch

from data.synthetic.texture import make_texture
from geometry.warp import apply_homography, warp_depth, warp_image
from models.backbone.repvgg import RepVGGConfig
from models.backbone.resnet_fpn import ResNetFPNConfig
from models.eloftr import EfficientLoFTRConfig
from models.loftr import LoFTRConfig
from models.matching.coarse import CoarseMatchingConfig
from models.matching.fine import FineConfig
from models.transformer.aggregated import AggregatedTransformerConfig
from models.transformer.encoder import TransformerConfig

# A mild perspective warp: every cell moves by a few pixels, not by whole cells.
WARP = np.array([[1.0, 0.03, 6.0], [-0.02, 1.0, 4.0], [0.0, 0.0, 1.0]])


def tiny_model_config() -> LoFTRConfig:
    """configs/model/loftr_tiny.yaml as a dataclass: a LoFTR that runs in a fraction of a second on a CPU."""
    return LoFTRConfig(
        backbone=ResNetFPNConfig(initial_dim=32, block_dims=(32, 48, 64)),
        coarse=TransformerConfig(d_model=64, num_heads=4, layer_names=("self", "cross") * 2),
        fine=FineConfig(transformer=TransformerConfig(d_model=32, num_heads=4, layer_names=("self", "cross"))),
        match_coarse=CoarseMatchingConfig(train_pad_num_gt_min=20),
    )


def tiny_eloftr_config() -> EfficientLoFTRConfig:
    """configs/model/eloftr_tiny.yaml as a dataclass."""
    return EfficientLoFTRConfig(
        backbone=RepVGGConfig(block_dims=(32, 48, 64), stage_blocks=(1, 2, 4)),
        coarse=AggregatedTransformerConfig(d_model=64, num_heads=4, layer_names=("self", "cross") * 2),
        match_coarse=CoarseMatchingConfig(train_coarse_percent=0.3, train_pad_num_gt_min=20),
    )


def image_pair(height: int, width: int, seed: int = 1, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured image and its warp by `WARP`, as (1, 1, H, W) tensors in [0, 1]."""
    image0 = make_texture(height, width, seed=seed)
    image1 = warp_image(image0, WARP)
    def as_tensor(image):
        return torch.from_numpy(image)[None, None].to(dtype) / 255
    return as_tensor(image0), as_tensor(image1)


def sharpen_(model: torch.nn.Module) -> torch.nn.Module:
    """Make a randomly initialised LoFTR (ours or kornia's: same transformer names) match decisively.

    Random weights give near-uniform confidences. Quieten the global messages of all but the last coarse
    layer, make the last one a local function of each token (no attention message) and scale its LayerNorm:
    tokens become equal-norm local descriptors and the dual-softmax becomes peaked.
    """
    with torch.no_grad():
        for layer in model.loftr_coarse.layers[:-1]:
            layer.norm2.weight.mul_(0.1)
        model.loftr_coarse.layers[-1].merge.weight.zero_()
        model.loftr_coarse.layers[-1].norm2.weight.mul_(10.0)
    return model


class _NoPositionEncoding(torch.nn.Module):
    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return tokens


def content_only_(model: torch.nn.Module) -> torch.nn.Module:
    """A sharpened random LoFTR (`sharpen_`) without its positional encoding: its descriptors then depend on
    the image alone, so it matches each cell to the one the warp takes it to, not to the cell at the same place
    (with the encoding, random weights match a shifted copy cell by cell at the same positions)."""
    model.pos_encoding = _NoPositionEncoding()
    return model


def warp_errors(H: np.ndarray, kpts0: torch.Tensor, kpts1: torch.Tensor) -> np.ndarray:
    """(N,) pixels between where the homography `H` takes each keypoint of image 0 and its match in image 1."""
    return np.linalg.norm(apply_homography(H, kpts0.double().numpy()) - kpts1.double().numpy(), axis=1)


def track_errors(scene, info: dict, ids: list[int]) -> tuple[list[float], np.ndarray]:
    """Prepared correspondences (`info`: a scene-info dict of data.inhouse prepare; `ids`: the rendered view
    of each of its images) against the renderer's truth (`scene`: data.synthetic.world's RenderedScene): for
    each pair, the share of its points that the true depth sees in both views, and the pixel errors of those
    points after the true warp, all pairs' together."""
    def as_batch(array) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, np.float64))[None]

    seen, errors = [], []
    for ((a, b), *_), points in zip(info["pair_infos"], info["correspondences"]):
        i, j = ids[a], ids[b]
        valid, warped = warp_depth(as_batch(points[:, :2]), as_batch(scene.depths[i]), as_batch(scene.depths[j]),
                                   as_batch(scene.intrinsics[i]), as_batch(scene.intrinsics[j]),
                                   as_batch(scene.poses[j] @ np.linalg.inv(scene.poses[i])))
        seen.append(valid.float().mean().item())
        errors.append((warped[0] - as_batch(points[:, 2:])[0]).norm(dim=-1)[valid[0]].numpy())
    return seen, np.concatenate(errors)


def run_here(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python ARGS` (a script's path or `-m MODULE`, then the arguments) run inside this interpreter as its
    `__main__`, from the folder `cwd`: sys.argv, the working folder, the exit code and the two streams as a
    fresh process has them, without the ten seconds that one spends importing torch and Lightning. An
    uncaught exception ends it as Python ends a process: its traceback on stderr, exit code 1. Commands that
    start processes of their own (DDP, launchers) still want a real one."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, code = sys.argv, os.getcwd(), 0
    try:
        os.chdir(cwd)
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                if args[0] == "-m":
                    sys.argv = args[1:]  # runpy puts the module's file in argv[0]
                    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
                else:
                    sys.argv = list(args)
                    runpy.run_path(args[0], run_name="__main__")
            except SystemExit as exit_:
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            except Exception:  # what the interpreter does with it (Ctrl-C still stops the tests)
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def refusal(run: subprocess.CompletedProcess, *named: str) -> str:
    """The one line a command refused bad input with: exit code 2, no traceback, a single non-empty line on
    stderr that contains every string of `named` (the input, the key, the size, ...). Returns the line."""
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 2, f"exit code {run.returncode}\n{run.stderr[-3000:]}"
    lines = [line for line in run.stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1, run.stderr[-3000:]
    for text in named:
        assert text in lines[0], f"{text!r} not in: {lines[0]}"
    return lines[0]


def snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every file under `roots` (files or folders) and its bytes: compare before and after a command to show
    that it changed nothing that was there."""
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return {path: path.read_bytes() for path in files}


def assert_unchanged(before: dict[Path, bytes]) -> None:
    """Every file of `before` still there with the same bytes."""
    changed = [str(path) for path, data in before.items() if not path.is_file() or path.read_bytes() != data]
    assert not changed, f"changed or removed: {changed}"


@contextmanager
def small_disk(path: Path, size_bytes: int) -> Iterator[Path]:
    """A real filesystem of `size_bytes` (a tmpfs) mounted on `path` (made if missing) for the block: writes
    past it fail with ENOSPC as on a full disk. Unmounted afterwards; the test is skipped where mounting is not
    permitted (not root, no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    size_k = max(1, size_bytes // 1024)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        import pytest  # only the tests use this helper; benchmarks import this module without pytest
        pytest.skip(f"cannot mount a tmpfs on {path}: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def calibrate_norms_(model: torch.nn.Module, run) -> None:
    """Random RepVGG weights give degenerate features (a handful of matches, even image-to-itself) until the
    batch norms' statistics fit the images: one forward with the batch norms alone in train mode."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.train()
        norm.momentum = None  # the cumulative average: after one batch, exactly that batch's statistics
    with torch.no_grad():
        run()
    model.eval()


def shifted_pair(height: int, width: int, seed: int = 3, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """{"image0", "image1"}: (1, 1, height, width) windows of one texture, the second shifted by two coarse
    cells right and one down (16, 8 px): a pair that even random Efficient LoFTR weights, their batch norms
    calibrated (`calibrate_norms_`), match by the hundreds. Smaller sizes are corners of the same texture."""
    texture = torch.from_numpy(make_texture(max(height, 512) + 8, max(width, 672) + 16, seed=seed)).to(dtype) / 255
    texture = texture[:height + 8, :width + 16]
    return {"image0": texture[8:, 16:][None, None].contiguous(), "image1": texture[:-8, :-16][None, None].contiguous()}
