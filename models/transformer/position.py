"""Positional encodings over a feature grid: LoFTR's additive 2D sine code, and Efficient LoFTR's rotary one
(RoPE, Su et al. 2021), which turns queries and keys so that their dot product depends on relative position."""

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


class RotaryPositionEncoding(nn.Module):
    """2D rotary encoding of Efficient LoFTR's self-attention (its RoPEPositionEncodingSine): the channels of
    a (N, H, W, C) map form C/2 pairs, and pair p is turned by the angle (position) w_k, where even pairs take
    the row and odd pairs the column (counted from 1), k = p // 2 and w_k = 10000^(-k / (C/4)). Turning q by
    angle a and k by b gives q . k turned by a - b: attention sees relative positions only.

    Positions are scaled by `reference_size / test_size` (upstream's `npe`: the training size over the test
    size, both 832 by default, so 1). `table_dtype`: upstream keeps its cos/sin tables in float16, which the
    official weights were trained with; float32 or float64 for exactness."""

    def __init__(self, d_model: int, reference_size: tuple[int, int] = (832, 832),
                 test_size: tuple[int, int] = (832, 832), table_dtype: torch.dtype = torch.float16):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"d_model must be a multiple of 4 for a 2D rotary encoding, got {d_model}")
        self.d_model, self.reference_size, self.test_size = d_model, reference_size, test_size
        self.table_dtype = table_dtype

    def tables(self, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of every channel's angle on a (height, width) grid: (H, W, C) each, in `table_dtype`."""
        dtype = torch.float64 if self.table_dtype == torch.float64 else torch.float32
        quarter = self.d_model // 4
        frequencies = torch.exp(torch.arange(quarter, dtype=dtype, device=device) * (-math.log(10000.0) / quarter))
        rows = torch.arange(1, height + 1, dtype=dtype, device=device) * self.reference_size[0] / self.test_size[0]
        cols = torch.arange(1, width + 1, dtype=dtype, device=device) * self.reference_size[1] / self.test_size[1]
        angles = torch.stack([(rows[:, None, None] * frequencies).expand(height, width, quarter),
                              (cols[None, :, None] * frequencies).expand(height, width, quarter)], -1)
        angles = angles.flatten(-2).repeat_interleave(2, dim=-1)  # (H, W, C): both channels of a pair alike
        return angles.cos().to(self.table_dtype), angles.sin().to(self.table_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, H, W, C) -> turned, same shape and dtype."""
        cos, sin = self.tables(x.shape[1], x.shape[2], x.device)
        pairs = x.unflatten(-1, (-1, 2))
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2)  # (x1, x2) -> (-x2, x1)
        return (x * cos.to(x.dtype) + turned * sin.to(x.dtype)).to(x.dtype)
