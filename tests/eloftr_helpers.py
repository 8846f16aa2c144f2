"""Efficient LoFTR's official code as a reference (skipped where it is not installed) and random norm statistics,
so that a comparison with it exercises every layer."""

import sys

import pytest
import torch


def randomize_norms_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random batch-norm scales, shifts and running statistics: a fresh norm (identity at eval) would hide a
    wrong fold of its statistics."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = torch.randn(n, generator=generator) * 0.1
            module.running_mean = torch.randn(n, generator=generator) * 0.1
            module.running_var = torch.rand(n, generator=generator) + 0.5
    return model


def upstream_eloftr():
    """The official Efficient LoFTR package; kornia 0.9 has no `kornia.utils.grid`, which it imports from, so
    that name is pointed at `kornia.utils` (where create_meshgrid lives now)."""
    kornia_utils = pytest.importorskip("kornia.utils")
    sys.modules.setdefault("kornia.utils.grid", kornia_utils)
    return pytest.importorskip("efficientloftr_inference")
