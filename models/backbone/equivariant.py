"""The equivariant layer: rotation groups, feature field types and the few building blocks the steerable
backbone needs. The only module that imports the equivariance library, so that it can be swapped.

The library is e2cnn 0.2.3, the one SE2-LoFTR (Bökman & Kahl, CVPR-W 2022) used. Its successor escnn does not
install cleanly here: its dependency py3nj builds only with a Fortran compiler, and the lie_learn wheel it
pulls in breaks on numpy 2. e2cnn is pure Python and runs on torch 2 and numpy 2.

A field type lists the fields of a feature map and how the group acts on each: a trivial field is one
rotation-invariant channel; a regular field of the cyclic group C_N is N channels that a rotation by 360/N
degrees permutes cyclically (one channel per orientation). Regular fields are permutation representations,
so pointwise functions (ReLU, bilinear upsampling, per-field batch norm) keep the equivariance.
"""

import copy
import warnings

import torch
import torch.nn.functional as F
from e2cnn import gspaces
from e2cnn import nn as enn
from torch import nn

Group = gspaces.GSpace
FieldType = enn.FieldType
Field = enn.GeometricTensor  # a (B, C, H, W) tensor together with its field type


def rotation_group(order: int) -> Group:
    """The cyclic group C_order of planar rotations by multiples of 360/order degrees, acting on the image plane."""
    return gspaces.Rot2dOnR2(N=order)


def trivial_fields(group: Group, count: int) -> FieldType:
    """`count` invariant channels."""
    return enn.FieldType(group, count * [group.trivial_repr])


def regular_fields(group: Group, count: int) -> FieldType:
    """`count` regular fields: `count * |group|` channels."""
    return enn.FieldType(group, count * [group.regular_repr])


def as_field(tensor: torch.Tensor, field_type: FieldType) -> Field:
    return enn.GeometricTensor(tensor, field_type)


class Conv(enn.R2Conv):
    """A steerable convolution without bias, with symmetric padding (`kernel_size // 2`): with an odd input side
    a stride-2 sampling grid is then symmetric under 90-degree rotations, so the layer is exactly equivariant
    to them.

    e2cnn caches the expanded filter as a buffer on `.eval()`; that cache goes stale when weights are loaded
    after `.eval()` and puts mode-dependent keys into the state dict. Here the filter is expanded on every call
    instead (a small matmul next to the convolution) and the state dict has the same keys in both modes.
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, kernel_size: int, stride: int = 1):
        with warnings.catch_warnings():  # e2cnn 0.2.3 indexes with uint8 masks when it samples the basis
            warnings.filterwarnings("ignore", message="indexing with dtype torch.uint8")
            super().__init__(in_type, out_type, kernel_size, padding=kernel_size // 2, stride=stride, bias=False)
        del self.filter
        # e2cnn caches its sampled-basis modules process-wide and hands the same module (and buffer) to every
        # convolution of the same kind, in every model: moving or casting one model would move the others' bases.
        # Each convolution gets its own copies (of those modules only: the rest of the expansion is not shared).
        for name, shared in list(self._basisexpansion.named_children()):
            setattr(self._basisexpansion, name, copy.deepcopy(shared))

    def train(self, mode: bool = True) -> "Conv":
        return nn.Module.train(self, mode)  # skip R2Conv.train, which builds the cache

    def forward(self, x: Field) -> Field:
        if x.type != self.in_type:
            raise ValueError(f"expected fields {self.in_type}, got {x.type}")
        weight, _ = self.expand_parameters()
        return as_field(F.conv2d(x.tensor, weight, stride=self.stride, padding=self.padding), self.out_type)

    def export(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_type.size, self.out_type.size, self.kernel_size, self.stride, self.padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.expand_parameters()[0])
        return conv.to(self.weights.device)


def batch_norm(field_type: FieldType) -> enn.InnerBatchNorm:
    """Batch norm with one mean, variance, scale and shift per regular field, shared by its N channels (per-channel
    statistics would differ between orientations and break the equivariance)."""
    return enn.InnerBatchNorm(field_type)


def relu(x: Field) -> Field:
    return as_field(F.relu(x.tensor), x.type)


def leaky_relu(x: Field) -> Field:
    return as_field(F.leaky_relu(x.tensor), x.type)


def upsample_to(x: Field, like: Field) -> Field:
    """Bilinear upsampling of `x` to the exact size of `like`, corners aligned: for sides 2n+1 and n+1, index 2j of
    the finer map takes index j of the coarser one, and the map is symmetric under flips and transposes, so it
    commutes with 90-degree rotations. (Upsampling by exactly 2 and cropping, as the standard backbone does,
    shifts the sampling grid towards the top-left and is not symmetric.)"""
    up = F.interpolate(x.tensor, size=like.tensor.shape[2:], mode="bilinear", align_corners=True)
    return as_field(up, x.type)


def export(module: nn.Module) -> nn.Module:
    """The plain-torch module that computes the same map in eval mode (R2Conv -> Conv2d, InnerBatchNorm ->
    BatchNorm2d with per-field statistics repeated over each field's channels), itself in eval mode."""
    was_training = module.training
    plain = module.export().eval()
    module.train(was_training)  # e2cnn's export switches the module to eval mode
    return plain


def is_library_module(module: nn.Module) -> bool:
    """Whether `module` belongs to the equivariance library (an exported network must contain none)."""
    return isinstance(module, enn.EquivariantModule)
