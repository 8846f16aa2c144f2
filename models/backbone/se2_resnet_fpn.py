"""Steerable ResNet-FPN of SE2-LoFTR (Bökman & Kahl, CVPR-W 2022): LoFTR's backbone built from group
convolutions over the cyclic rotation group C_N, whose coarse and fine outputs are rotation-invariant.

The layout is the standard backbone's (models/backbone/resnet_fpn.py) layer for layer, with regular fields
(one channel per orientation) in place of channels. A last equivariant map to trivial fields makes the outputs
invariant, so the transformer and the matching need no change.

Equivariance is exact for the rotations by multiples of 90 degrees in C_N when every stride-2 sampling grid is
symmetric: images of side 8k + 1 (coarse cell (c, r) sits on pixel (8c, 8r)). Other rotations in C_N (45
degrees for C8) are approximate: the filters are sampled on a square pixel grid.
"""

import torch
import torch.nn.functional as F
from torch import nn

from . import equivariant as eq
from .resnet_fpn import BasicBlock, FPNMerge, ResNetFPNConfig, conv_bn


class SteerableBlock(nn.Module):
    """The two-convolution residual block of ResNet-18/34 on regular fields (`BasicBlock`'s equivariant twin)."""

    def __init__(self, in_type: eq.FieldType, out_type: eq.FieldType, stride: int):
        super().__init__()
        self.conv1 = eq.Conv(in_type, out_type, 3, stride)
        self.bn1 = eq.batch_norm(out_type)
        self.conv2 = eq.Conv(out_type, out_type, 3)
        self.bn2 = eq.batch_norm(out_type)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(eq.Conv(in_type, out_type, 1, stride), eq.batch_norm(out_type))

    def forward(self, x: eq.Field) -> eq.Field:
        y = eq.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return eq.relu(y + x)

    def export(self) -> BasicBlock:
        plain = BasicBlock(self.conv1.in_type.size, self.conv1.out_type.size, self.conv1.stride)
        plain.conv1, plain.bn1 = eq.export(self.conv1), eq.export(self.bn1)
        plain.conv2, plain.bn2 = eq.export(self.conv2), eq.export(self.bn2)
        if self.downsample is not None:
            plain.downsample = nn.Sequential(*(eq.export(m) for m in self.downsample))
        return plain.eval()


class SteerableMerge(nn.Module):
    """3x3 conv, BN, LeakyReLU, 3x3 conv on fields (`FPNMerge`'s twin); `out_type` trivial makes it invariant."""

    def __init__(self, field_type: eq.FieldType, out_type: eq.FieldType):
        super().__init__()
        self.conv1 = eq.Conv(field_type, field_type, 3)
        self.norm = eq.batch_norm(field_type)
        self.conv2 = eq.Conv(field_type, out_type, 3)

    def forward(self, x: eq.Field) -> eq.Field:
        return self.conv2(eq.leaky_relu(self.norm(self.conv1(x))))

    def export(self) -> FPNMerge:
        plain = FPNMerge(self.conv1.in_type.size, self.conv2.out_type.size)
        plain.conv1, plain.norm, plain.conv2 = eq.export(self.conv1), eq.export(self.norm), eq.export(self.conv2)
        return plain.eval()


def field_counts(config: ResNetFPNConfig) -> tuple[int, int, int, int]:
    """Regular fields at the stem and the three stages, after checking the config's se2 fields."""
    order = config.group_order
    if isinstance(order, bool) or not isinstance(order, int) or order < 2:  # e2cnn has no C_1
        raise ValueError(
            f"backbone.group_order must be an integer N >= 2 (the rotation group C_N; SE2-LoFTR uses 4 or 8), "
            f"got {order!r}"
        )
    dims = (config.initial_dim, *config.block_dims)
    if not config.divide_by_group:
        return dims
    if min(dims) < order:
        raise ValueError(
            f"backbone widths {dims} (initial_dim, block_dims) must each be at least group_order = {order} with "
            f"divide_by_group: each is divided into regular fields of {order} channels"
        )
    return tuple(dim // order for dim in dims)  # floor, as SE2-LoFTR: 196 channels in C8 -> 24 fields


class SE2ResNetFPN(nn.Module):
    """Rotation-invariant ResNet-FPN (SE2-LoFTR's backbone); the interface of `ResNetFPN`.

    Input: `image` (B, 1, H, W) grayscale in [0, 1]. Output: `coarse` (B, block_dims[2], ceil(H/8), ceil(W/8))
    and `fine` (B, block_dims[0], ceil(H/2), ceil(W/2)), invariant fields. `export()` gives a plain-torch copy
    for inference.
    """

    coarse_stride = 8
    fine_stride = 2

    def __init__(self, config: ResNetFPNConfig | None = None):
        super().__init__()
        config = config if config is not None else ResNetFPNConfig(type="se2_resnet_fpn")
        n0, n1, n2, n3 = field_counts(config)
        self.coarse_dim, self.fine_dim = config.block_dims[2], config.block_dims[0]
        group = eq.rotation_group(config.group_order)
        self.in_type = eq.trivial_fields(group, 1)  # a grayscale image: one invariant channel
        t0, t1, t2, t3 = (eq.regular_fields(group, n) for n in (n0, n1, n2, n3))

        self.conv1 = eq.Conv(self.in_type, t0, 7, stride=2)
        self.bn1 = eq.batch_norm(t0)
        self.layer1 = nn.Sequential(SteerableBlock(t0, t1, 1), SteerableBlock(t1, t1, 1))  # 1/2
        self.layer2 = nn.Sequential(SteerableBlock(t1, t2, 2), SteerableBlock(t2, t2, 1))  # 1/4
        self.layer3 = nn.Sequential(SteerableBlock(t2, t3, 2), SteerableBlock(t3, t3, 1))  # 1/8

        self.lateral3 = eq.Conv(t3, t3, 1)
        self.lateral2 = eq.Conv(t2, t3, 1)
        self.merge2 = SteerableMerge(t3, t2)
        self.lateral1 = eq.Conv(t1, t2, 1)
        self.merge1 = SteerableMerge(t2, eq.trivial_fields(group, self.fine_dim))  # invariant fine features
        # The FPN needs the coarse level's regular fields, so the invariant coarse features are a map of their own:
        # a 3x3 equivariant conv, whose invariant outputs each read an oriented pattern of the neighbourhood (a 1x1
        # map can only average each field over its orientations: 8 invariants from the tiny C8 model's 8 fields;
        # its se2_synthetic run reached held-out AUC@20 0.7 with 4 matches a pair, 25.0 with this head).
        self.coarse_head = eq.Conv(t3, eq.trivial_fields(group, self.coarse_dim), 3)

    def forward(self, image: torch.Tensor, fine_margin: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """`fine_margin` is accepted for `ResNetFPN`'s interface and ignored: the whole fine map is computed."""
        x = eq.as_field(image, self.in_type)
        x0 = eq.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(x0)  # 1/2
        x2 = self.layer2(x1)  # 1/4
        x3 = self.layer3(x2)  # 1/8

        top = self.lateral3(x3)
        mid = self.lateral2(x2)
        mid = self.merge2(mid + eq.upsample_to(top, mid))
        fine = self.lateral1(x1)
        fine = self.merge1(fine + eq.upsample_to(mid, fine))
        return self.coarse_head(top).tensor, fine.tensor

    def export(self) -> "PlainSE2ResNetFPN":
        """A plain-torch module (Conv2d, BatchNorm2d) computing the same features, in eval mode: no filter
        expansion, batch norm folded into the convolutions, channels-last layout. Not trainable as equivariant."""
        return PlainSE2ResNetFPN(
            stem=eq.export(self.conv1),
            stem_norm=eq.export(self.bn1),
            layers=[nn.Sequential(*(b.export() for b in layer)) for layer in (self.layer1, self.layer2, self.layer3)],
            laterals=[eq.export(conv) for conv in (self.lateral3, self.lateral2, self.lateral1)],
            merges=[self.merge2.export(), self.merge1.export()],
            coarse_head=eq.export(self.coarse_head),
        ).to(self.conv1.weights.device)


class PlainSE2ResNetFPN(nn.Module):
    """`SE2ResNetFPN` exported to plain torch layers: the standard backbone's blocks with the steerable weights,
    the symmetric upsampling and the invariant coarse head. Same forward signature and outputs."""

    coarse_stride = 8
    fine_stride = 2

    def __init__(self, stem: nn.Conv2d, stem_norm: nn.BatchNorm2d, layers: list[nn.Sequential],
                 laterals: list[nn.Conv2d], merges: list[FPNMerge], coarse_head: nn.Conv2d):
        super().__init__()
        self.conv1, self.bn1 = stem, stem_norm
        self.layer1, self.layer2, self.layer3 = layers
        self.lateral3, self.lateral2, self.lateral1 = laterals
        self.merge2, self.merge1 = merges
        self.coarse_head = coarse_head
        self.coarse_dim, self.fine_dim = coarse_head.out_channels, merges[1].conv2.out_channels
        self.to(memory_format=torch.channels_last).eval()  # see ResNetFPN: 1.5 to 3x faster convolutions on CPU

    def forward(self, image: torch.Tensor, fine_margin: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """As `SE2ResNetFPN.forward`; `fine_margin` is ignored."""
        x = image.contiguous(memory_format=torch.channels_last)
        x0 = F.relu(conv_bn(x, self.conv1, self.bn1), inplace=True)
        x1 = self.layer1(x0)  # 1/2
        x2 = self.layer2(x1)  # 1/4
        x3 = self.layer3(x2)  # 1/8

        top = self.lateral3(x3)
        mid = self.lateral2(x2)
        mid = self.merge2(mid.add_(_upsample_to(top, mid)))
        fine = self.lateral1(x1)
        fine = self.merge1(fine.add_(_upsample_to(mid, fine)))
        return self.coarse_head(top), fine


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`equivariant.upsample_to` on plain tensors."""
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=True)
