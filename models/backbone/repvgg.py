"""RepVGG backbone of Efficient LoFTR (Wang et al., CVPR 2024): 1/8 coarse features and the 1/2 and 1/4 maps its
fine stage fuses.

A RepVGG block (Ding et al., CVPR 2021) trains three parallel branches, a 3x3 convolution + batch norm, a 1x1
convolution + batch norm, and (where the shape allows) a batch norm alone, summed before a ReLU. All three are
linear in the input at inference, so `reparameterize()` folds them into one 3x3 convolution with a bias: the
same function, one kernel, faster. Layout of Efficient LoFTR's `RepVGG_8_1_align` (upstream
src/loftr/backbone/, RepVGG-A1 widths cut after the third stage): a stride-2 stem block 1 -> 64, then stages of
2 blocks at 64 (1/2), 4 at 128 (1/4, the first strided) and 14 at 256 (1/8).
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RepVGGConfig:
    block_dims: tuple[int, int, int] = (64, 128, 256)  # Efficient LoFTR BACKBONE.BLOCK_DIMS (1/2, 1/4, 1/8)
    stage_blocks: tuple[int, int, int] = (2, 4, 14)  # RepVGG-A1's first three stages, as upstream builds them


@dataclass
class RepVGGFeatures:
    """The backbone's maps: (B, C, ceil(H / s), ceil(W / s)) at stride s = 8, 4 and 2."""

    coarse: torch.Tensor  # 1/8, block_dims[2] channels
    quarter: torch.Tensor  # 1/4, block_dims[1]
    half: torch.Tensor  # 1/2, block_dims[0]


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, norm=nn.BatchNorm2d(out_channels)))


def _fold(kernel: torch.Tensor, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution `kernel` (O, I, k, k) followed by `norm` in eval mode as one kernel and bias."""
    scale = norm.weight / (norm.running_var + norm.eps).sqrt()
    return kernel * scale.reshape(-1, 1, 1, 1), norm.bias - norm.running_mean * scale


class RepVGGBlock(nn.Module):
    """ReLU(norm(conv3x3(x)) + norm(conv1x1(x)) + norm(x)), the last branch only when the block keeps the shape
    (stride 1, as many channels out as in); after `reparameterize()`, ReLU(fused(x)) with one 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv3x3 = _conv_norm(in_channels, out_channels, 3, stride)
        self.conv1x1 = _conv_norm(in_channels, out_channels, 1, stride)
        self.identity = nn.BatchNorm2d(in_channels) if stride == 1 and in_channels == out_channels else None
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.relu(self.fused(x))
        out = self.conv3x3(x) + self.conv1x1(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return F.relu(out)

    @torch.no_grad()
    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one 3x3 kernel (O, I, 3, 3) and bias (O,) equal to the three branches with their batch norms'
        running statistics (eval mode): the 1x1 kernel sits at the centre of a 3x3 one, the identity is the
        3x3 kernel with a 1 at the centre of each channel's own slice."""
        kernel, bias = _fold(self.conv3x3.conv.weight, self.conv3x3.norm)
        kernel1, bias1 = _fold(F.pad(self.conv1x1.conv.weight, [1, 1, 1, 1]), self.conv1x1.norm)
        kernel, bias = kernel + kernel1, bias + bias1
        if self.identity is not None:
            channels = self.identity.num_features
            eye = torch.zeros(channels, channels, 3, 3, dtype=kernel.dtype, device=kernel.device)
            eye[torch.arange(channels), torch.arange(channels), 1, 1] = 1
            kernel_id, bias_id = _fold(eye, self.identity)
            kernel, bias = kernel + kernel_id, bias + bias_id
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the branches into `fused` (exact with the running statistics) and drop them; idempotent."""
        if self.fused is not None:
            return
        kernel, bias = self.fused_kernel()
        conv = self.conv3x3.conv
        self.fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, padding=1, bias=True).to(kernel)
        self.fused.weight.copy_(kernel)
        self.fused.bias.copy_(bias)
        del self.conv3x3, self.conv1x1, self.identity


class RepVGG(nn.Module):
    """The backbone: a grayscale image (B, 1, H, W) in, `RepVGGFeatures` out."""

    coarse_stride = 8

    def __init__(self, config: RepVGGConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else RepVGGConfig()
        dims = config.block_dims
        self.layer0 = RepVGGBlock(1, dims[0], stride=2)  # 1/2
        self.layer1 = self._stage(dims[0], dims[0], config.stage_blocks[0], stride=1)  # 1/2
        self.layer2 = self._stage(dims[0], dims[1], config.stage_blocks[1], stride=2)  # 1/4
        self.layer3 = self._stage(dims[1], dims[2], config.stage_blocks[2], stride=2)  # 1/8
        for module in self.modules():  # upstream's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.ModuleList:
        return nn.ModuleList(RepVGGBlock(in_channels if k == 0 else out_channels, out_channels, stride if k == 0 else 1)
                             for k in range(blocks))

    def forward(self, image: torch.Tensor) -> RepVGGFeatures:
        out = self.layer0(image)
        maps = []
        for stage in (self.layer1, self.layer2, self.layer3):
            for block in stage:
                out = block(out)
            maps.append(out)
        half, quarter, coarse = maps
        return RepVGGFeatures(coarse=coarse, quarter=quarter, half=half)

    def reparameterize(self) -> "RepVGG":
        """Every block folded into one convolution (`RepVGGBlock.reparameterize`): for inference, after training
        or loading trained weights. Returns the backbone."""
        for module in self.modules():
            if isinstance(module, RepVGGBlock):
                module.reparameterize()
        return self
