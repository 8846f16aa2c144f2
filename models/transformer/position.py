"""2D sine positional encoding of LoFTR (a DETR-style encoding over the coarse grid)."""

import math

import torch
from torch import nn


class SinePositionEncoding(nn.Module):
    """Adds a fixed sine/cosine code of each cell's (x, y) to its feature.

    Channel 4k, 4k+1, 4k+2, 4k+3 hold sin(x w_k), cos(x w_k), sin(y w_k), cos(y w_k) with x, y counted
    from 1 (LoFTR's convention) and w_k = 10000^(-2k / (C/2)).

    `temp_bug_fix=False` reproduces the frequencies the official checkpoints were trained with: the
    original code wrote `-log(10000) / d_model // 2`, which Python parses as a floor division and which
    evaluates to -1, so w_k = exp(-2k) (LoFTR issue #41). New models train with the corrected frequencies.
    """

    def __init__(self, d_model: int, temp_bug_fix: bool = True):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"d_model must be a multiple of 4 for a 2D sine encoding, got {d_model}")
        self.d_model = d_model
        self.temp_bug_fix = temp_bug_fix
        self._cache: dict[tuple, torch.Tensor] = {}

    def frequencies(self) -> torch.Tensor:
        half = self.d_model // 2
        # the legacy step is (-log(10000) / d_model) // 2 == -1.0, kept for the official weights (LoFTR issue #41)
        log_step = -math.log(10000.0) / half if self.temp_bug_fix else (-math.log(10000.0) / self.d_model) // 2
        return torch.exp(torch.arange(0, half, 2).float() * log_step)

    def table(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The encoding of a (height, width) grid as tokens: (height * width, d_model), row-major."""
        key = (height, width, device, dtype)
        if key not in self._cache:
            w = self.frequencies()
            y, x = torch.meshgrid(torch.arange(1, height + 1.0), torch.arange(1, width + 1.0), indexing="ij")
            code = torch.stack(
                [torch.sin(x[..., None] * w), torch.cos(x[..., None] * w),
                 torch.sin(y[..., None] * w), torch.cos(y[..., None] * w)],
                dim=-1,
            )  # (H, W, C/4, 4): channel 4k + j
            self._cache.clear()  # one grid size at a time is enough and keeps memory bounded
            self._cache[key] = code.reshape(height * width, self.d_model).to(device, dtype)
        return self._cache[key]

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """tokens: (B, height * width, C) in row-major cell order -> same shape, encoded."""
        return tokens + self.table(height, width, tokens.device, tokens.dtype)
