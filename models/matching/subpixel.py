"""Second refinement stage at full resolution: each fine match is re-located in a small window of stride-1
features around the pixel nearest to it, by the expectation of a correlation heatmap.

The two-stage refinement of Efficient LoFTR (Wang et al., CVPR 2024, sec. 3.3): the stride-2 window of LoFTR
spans 2 px a cell, and the soft-argmax over it stays biased towards the window's centre wherever the heatmap is
broad; a second correlation over stride-1 features around the first estimate localises it to a fraction of a
pixel. The stride-1 features are a small convolutional head on the image and the upsampled stride-2 map.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone.resnet_fpn import FPNMerge, conv1x1, conv3x3, conv_bn
from .fine import crop_windows_at, log_heatmaps, soft_argmax


@dataclass
class SubpixelConfig:
    enabled: bool = False  # off: LoFTR's single fine stage (official checkpoints have no such head)
    dim: int = 16  # channels of the stride-1 features
    window_size: int = 5  # stride-1 pixels around the first stage's estimate (odd: the window has a centre)

    def __post_init__(self):
        if self.window_size < 3 or self.window_size % 2 == 0:
            raise ValueError(f"model.subpixel.window_size must be odd and at least 3, got {self.window_size}")
        if self.dim < 1:
            raise ValueError(f"model.subpixel.dim must be positive, got {self.dim}")


@dataclass
class SubpixelMatches:
    """The second stage for each coarse match (aligned with `CoarseMatches` entries)."""

    anchor: torch.Tensor  # (M, 2) long: image 1's pixel (x, y, network input) nearest the first-stage estimate
    expectation: torch.Tensor  # (M, 2) offset from the anchor, in window units ([-1, 1] spans the window)
    std: torch.Tensor  # (M,) sum of the heatmap's standard deviations along x and y (window units)
    log_heatmap: torch.Tensor  # (M, w*w) row-major over image 1's window


def upsample_to_pixels(fine: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """The stride-`stride` map (B, C, h, w) sampled bilinearly at every pixel of a (height, width) image, with
    cell (x, y) on pixel (stride x, stride y) as everywhere in the model; pixels past the last cell repeat it."""
    h, w = fine.shape[2:]
    up = F.interpolate(fine, size=((h - 1) * stride + 1, (w - 1) * stride + 1), mode="bilinear", align_corners=True)
    pad_h, pad_w = max(height - up.shape[2], 0), max(width - up.shape[3], 0)
    if pad_h or pad_w:
        up = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate")
    return up[:, :, :height, :width]


class PixelFeatures(nn.Module):
    """Stride-1 features: two 3x3 convolutions on the image, plus the stride-2 map projected and upsampled,
    merged as LoFTR's FPN merges its levels."""

    def __init__(self, fine_dim: int, dim: int, fine_stride: int):
        super().__init__()
        self.fine_stride = fine_stride
        self.conv1 = conv3x3(1, dim)
        self.bn1 = nn.BatchNorm2d(dim)
        self.conv2 = conv3x3(dim, dim)
        self.bn2 = nn.BatchNorm2d(dim)
        self.lateral = conv1x1(fine_dim, dim)
        self.merge = FPNMerge(dim, dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """image (B, 1, H, W) and its stride-2 map (B, Cf, H/2, W/2) -> (B, dim, H, W)."""
        x = image.contiguous(memory_format=torch.channels_last)
        x = F.relu(conv_bn(x, self.conv1, self.bn1), inplace=True)
        x = F.relu(conv_bn(x, self.conv2, self.bn2), inplace=True)
        lateral = self.lateral(fine)  # project before upsampling: 4x fewer pixels to convolve
        up = upsample_to_pixels(lateral, image.shape[2], image.shape[3], self.fine_stride)
        return self.merge(x + up.to(x.dtype))


def subpixel_refine(pixels0: torch.Tensor, pixels1: torch.Tensor, batch_index: torch.Tensor,
                    points0: torch.Tensor, estimates1: torch.Tensor, window: int) -> SubpixelMatches:
    """Correlate the stride-1 feature of each image-0 point (M, 2) long (x, y) with the (window x window)
    features of image 1 around the pixel nearest its first-stage estimate (M, 2) float; maps (B, C, H, W)."""
    anchor = estimates1.detach().round().long()
    query = crop_windows_at(pixels0, batch_index, points0[:, 1], points0[:, 0], 1)  # (M, 1, C)
    win1 = crop_windows_at(pixels1, batch_index, anchor[:, 1], anchor[:, 0], window)  # (M, w*w, C)
    log_heatmap = log_heatmaps(query, win1, query.shape[-1])[:, 0]
    expectation, std = soft_argmax(log_heatmap, window)
    return SubpixelMatches(anchor, expectation, std, log_heatmap)
