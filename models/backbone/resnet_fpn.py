"""ResNet-FPN backbone of LoFTR: a grayscale image in, 1/8 coarse and 1/2 fine feature maps out."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ResNetFPNConfig:
    initial_dim: int = 128  # LoFTR official outdoor/indoor models
    block_dims: tuple[int, int, int] = (128, 196, 256)  # widths at strides 2, 4, 8 (LoFTR official)
    type: str = "resnet_fpn"  # "resnet_fpn" (LoFTR) or "se2_resnet_fpn" (SE2-LoFTR, Bökman & Kahl 2022)
    # se2_resnet_fpn only: features invariant to rotations by multiples of 360/N degrees (the cyclic group C_N);
    # SE2-LoFTR trains C4 and C8 models
    group_order: int = 8
    # se2_resnet_fpn only: True, the widths count channels (dim // N regular fields of N channels, as SE2-LoFTR's
    # default), keeping the standard backbone's activation sizes with 1/6 (C4) or 1/12 (C8) of its parameters;
    # False, the widths count regular fields: N times the channels, 2.6x (C4) or 5.3x (C8) the parameters. The
    # outputs have block_dims[2] and block_dims[0] invariant channels either way.
    divide_by_group: bool = True


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """`bn(conv(x))`; in eval mode one convolution with the batch norm folded into its weights.

    Folding saves a full pass over every feature map, and the folded weights are recomputed on each call
    (they are tiny next to the maps) so the state dict keeps the official layout.
    """
    if bn.training:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale[:, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    return F.conv2d(x, weight, bias, conv.stride, conv.padding)


def conv3x3(in_dim: int, out_dim: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_dim: int, out_dim: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """The two-convolution residual block of ResNet-18/34."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(in_dim, out_dim, stride)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.conv2 = conv3x3(out_dim, out_dim)
        self.bn2 = nn.BatchNorm2d(out_dim)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(conv1x1(in_dim, out_dim, stride), nn.BatchNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(conv_bn(x, self.conv1, self.bn1), inplace=True)
        y = conv_bn(y, self.conv2, self.bn2)
        if self.downsample is not None:
            x = conv_bn(x, self.downsample[0], self.downsample[1])
        return F.relu(y.add_(x), inplace=True)


class FPNMerge(nn.Module):
    """3x3 conv, BN, LeakyReLU, 3x3 conv: smooths the sum of a lateral map and the upsampled coarser map."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.conv1 = conv3x3(dim, dim)
        self.norm = nn.BatchNorm2d(dim)
        self.conv2 = conv3x3(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.leaky_relu(conv_bn(x, self.conv1, self.norm), inplace=True))


def upsample2x_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling (align_corners, as LoFTR trains) cropped to the size of `like`.

    For sides that are not multiples of 8 the finer map is one cell smaller than twice the coarser one;
    cropping keeps the sampling positions the weights were trained with (kornia does the same).
    """
    up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
    return up[..., : like.shape[2], : like.shape[3]]


class ResNetFPN(nn.Module):
    """ResNet-18-like encoder with a 2-level FPN decoder (LoFTR's `ResNetFPN_8_2`).

    Input: `image` (B, 1, H, W) grayscale in [0, 1]. Output: `coarse` (B, block_dims[2], ceil(H/8), ceil(W/8))
    and `fine` (B, block_dims[0], ceil(H/2), ceil(W/2)), in channels-last memory (2 to 3x faster convolutions
    on CPU with oneDNN, and the layout tensor cores want), so a token view `b (h w) c` of either is free.
    Cell (x, y) of a map with stride s sits on pixel (s x, s y).
    """

    coarse_stride = 8
    fine_stride = 2

    def __init__(self, config: ResNetFPNConfig | None = None):
        super().__init__()
        config = config if config is not None else ResNetFPNConfig()
        initial_dim, (dim1, dim2, dim3) = config.initial_dim, config.block_dims
        self.coarse_dim, self.fine_dim = dim3, dim1

        self.conv1 = nn.Conv2d(1, initial_dim, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(initial_dim)
        self.layer1 = nn.Sequential(BasicBlock(initial_dim, dim1, 1), BasicBlock(dim1, dim1, 1))  # 1/2
        self.layer2 = nn.Sequential(BasicBlock(dim1, dim2, 2), BasicBlock(dim2, dim2, 1))  # 1/4
        self.layer3 = nn.Sequential(BasicBlock(dim2, dim3, 2), BasicBlock(dim3, dim3, 1))  # 1/8

        self.lateral3 = conv1x1(dim3, dim3)
        self.lateral2 = conv1x1(dim2, dim3)
        self.merge2 = FPNMerge(dim3, dim2)
        self.lateral1 = conv1x1(dim1, dim2)
        self.merge1 = FPNMerge(dim2, dim1)

        for m in self.modules():  # the official initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Channels-last weights as well as activations: with only the activations in that layout oneDNN
        # reorders the weights at every call and the convolutions run ~1.5x slower on CPU.
        self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor, fine_margin: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """`fine_margin`: fine cells along each side of the fine map that the caller will not read. They are
        left zero and the last FPN merge, the costliest layer (two 3x3 convolutions at 1/2 resolution), skips
        them. Inference with border removal needs no fine features near the border."""
        x = image.contiguous(memory_format=torch.channels_last)
        x0 = F.relu(conv_bn(x, self.conv1, self.bn1), inplace=True)
        x1 = self.layer1(x0)  # 1/2
        x2 = self.layer2(x1)  # 1/4
        x3 = self.layer3(x2)  # 1/8

        coarse = self.lateral3(x3)
        mid = self.lateral2(x2)
        mid = self.merge2(mid.add_(upsample2x_to(coarse, mid)))
        fine = self.lateral1(x1)
        fine = fine.add_(upsample2x_to(mid, fine))
        return coarse, self._merge_inside(fine, fine_margin)

    def _merge_inside(self, fine: torch.Tensor, margin: int) -> torch.Tensor:
        """`merge1(fine)` on all but `margin` cells along each side, which are left zero."""
        height, width = fine.shape[2:]
        if margin <= 0 or 2 * margin >= min(height, width):
            return self.merge1(fine)
        halo = 2  # the two 3x3 convolutions read 2 cells beyond each output cell
        top, left = margin - min(halo, margin), margin - min(halo, margin)
        bottom, right = min(height - margin + halo, height), min(width - margin + halo, width)
        inner = self.merge1(fine[:, :, top:bottom, left:right])
        out = inner.new_zeros(inner.shape[0], inner.shape[1], height, width).contiguous(
            memory_format=torch.channels_last
        )
        out[:, :, margin : height - margin, margin : width - margin] = inner[
            :, :, margin - top : height - margin - top, margin - left : width - margin - left
        ]
        return out
