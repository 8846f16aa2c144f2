"""Backbones: an image in, 1/8 coarse and 1/2 fine feature maps out. `build_backbone` picks one by config."""

from torch import nn

from .resnet_fpn import ResNetFPN, ResNetFPNConfig

BACKBONE_TYPES = ("resnet_fpn", "se2_resnet_fpn")


def build_backbone(config: ResNetFPNConfig) -> nn.Module:
    """The backbone named by `config.type`: LoFTR's ResNet-FPN or SE2-LoFTR's rotation-invariant one."""
    if config.type == "resnet_fpn":
        return ResNetFPN(config)
    if config.type == "se2_resnet_fpn":
        from .se2_resnet_fpn import SE2ResNetFPN  # e2cnn takes ~3 s to import; only this backbone needs it

        return SE2ResNetFPN(config)
    raise ValueError(f"backbone.type must be one of {', '.join(BACKBONE_TYPES)}; got {config.type!r}")
