"""A linear layer that runs on oneDNN on CPU."""

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`: x (..., C_in), weight (C_out, C_in) -> (..., C_out).

    On CPU in float32 it runs as a 1x1 convolution over a channels-last view of the tokens, which oneDNN
    executes 1.2-1.8x faster than the BLAS GEMM behind `F.linear` on the AMD EPYC machines we measure on
    (benchmarks/RESULTS.md); the result is the same product. Elsewhere (CUDA, bf16, training) it is `F.linear`.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        # training: oneDNN builds new forward and backward primitives for every new token count (seconds
        # each, and the fine level's count changes every step); GEMM has no such cost
        return F.linear(x, weight, bias)
    tokens = x.reshape(1, -1, 1, x.shape[-1]).permute(0, 3, 1, 2)  # (1, C_in, N, 1), channels-last in memory
    out = F.conv2d(tokens, weight[:, :, None, None], bias)  # (1, C_out, N, 1), channels-last as well
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])
