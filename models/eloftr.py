"""Efficient LoFTR (Wang et al., CVPR 2024): LoFTR's detector-free matching with a RepVGG backbone, aggregated
attention at the coarse level and a two-stage fine refinement at full resolution. Composition only; the parts
are the family's building blocks (models/backbone/repvgg.py, models/transformer/aggregated.py, the coarse
matcher LoFTR uses, models/matching/two_stage.py).
"""

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from geometry.grid import cell_pixels

from .backbone.repvgg import RepVGG, RepVGGConfig
from .matching.coarse import CoarseMatches, CoarseMatching, CoarseMatchingConfig
from .matching.two_stage import FineFPN, TwoStageFineConfig, TwoStageFineMatching, TwoStageMatches, match_windows
from .transformer.aggregated import AggregatedTransformer, AggregatedTransformerConfig


@dataclass
class EfficientLoFTRConfig:
    """The official full model's values (upstream src/config/default.py); the coarse matcher's defaults are
    LoFTR's and Efficient LoFTR's alike (temperature 0.1, threshold 0.2, border 2)."""

    backbone: RepVGGConfig = field(default_factory=RepVGGConfig)
    coarse: AggregatedTransformerConfig = field(default_factory=AggregatedTransformerConfig)
    match_coarse: CoarseMatchingConfig = field(default_factory=CoarseMatchingConfig)
    fine: TwoStageFineConfig = field(default_factory=TwoStageFineConfig)


@dataclass
class EfficientLoFTRResult:
    """Matches (x, y) in pixels of the images as given (times the batch's `scale0`/`scale1` when it has them)."""

    keypoints0: torch.Tensor  # (N, 2)
    keypoints1: torch.Tensor  # (N, 2)
    confidence: torch.Tensor  # (N,) coarse confidence
    batch_index: torch.Tensor  # (N,) long
    coarse: CoarseMatches
    fine: TwoStageMatches
    coarse_grid0: tuple[int, int]
    coarse_grid1: tuple[int, int]


class EfficientLoFTR(nn.Module):
    coarse_stride = 8
    input_multiple = 32  # the coarse stride times the attention's pooling: what the image sides must divide by

    def __init__(self, config: EfficientLoFTRConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else EfficientLoFTRConfig()
        if config.backbone.block_dims[2] != config.coarse.d_model:
            raise ValueError(f"the backbone's coarse width {config.backbone.block_dims[2]} must equal the "
                             f"transformer's d_model {config.coarse.d_model}")
        self.backbone = RepVGG(config.backbone)
        self.loftr_coarse = AggregatedTransformer(config.coarse)
        self.coarse_matching = CoarseMatching(config.match_coarse)
        self.fine_preprocess = FineFPN(config.backbone.block_dims)
        self.fine_matching = TwoStageFineMatching(config.fine)

    def forward(self, batch: dict) -> EfficientLoFTRResult:
        """Match `batch["image0"]` with `batch["image1"]`, (B, 1, H, W) grayscale in [0, 1], sides multiples of
        32 (the coarse stride times the attention's pooling)."""
        image0, image1 = batch["image0"], batch["image1"]
        batch_size = image0.shape[0]
        if image0.shape == image1.shape:  # one backbone pass, as upstream (batch-norm statistics alike)
            features = self.backbone(torch.cat([image0, image1]))
            maps0 = [m[:batch_size] for m in (features.coarse, features.quarter, features.half)]
            maps1 = [m[batch_size:] for m in (features.coarse, features.quarter, features.half)]
        else:
            maps0, maps1 = ([f.coarse, f.quarter, f.half] for f in (self.backbone(image0), self.backbone(image1)))
        coarse0, coarse1 = self.loftr_coarse(maps0[0], maps1[0])
        grid0, grid1 = tuple(coarse0.shape[2:]), tuple(coarse1.shape[2:])
        tokens0, tokens1 = (rearrange(c, "b c h w -> b (h w) c") for c in (coarse0, coarse1))
        coarse = self.coarse_matching(tokens0, tokens1, grid0, grid1)

        channels = coarse0.shape[1]  # upstream scales the maps before the fine level (against fp16 overflow)
        fine0 = self.fine_preprocess(coarse0 / channels**0.5, maps0[1], maps0[2])
        fine1 = self.fine_preprocess(coarse1 / channels**0.5, maps1[1], maps1[2])
        b, i, j = coarse.batch_index, coarse.index0, coarse.index1
        windows0, windows1 = match_windows(fine0, fine1, b, i, j, self.config.fine.window)
        fine = self.fine_matching(windows0, windows1)

        dtype = fine.offset0.dtype
        # the fine map is at full resolution: its pixels are the input's
        kpts0 = cell_pixels(i, grid0, self.coarse_stride, dtype) + fine.offset0
        kpts1 = cell_pixels(j, grid1, self.coarse_stride, dtype) + fine.offset1
        if "scale0" in batch:
            kpts0 = kpts0 * batch["scale0"][b].to(dtype)
        if "scale1" in batch:
            kpts1 = kpts1 * batch["scale1"][b].to(dtype)
        return EfficientLoFTRResult(kpts0, kpts1, coarse.confidence, b, coarse, fine, grid0, grid1)

    def reparameterize(self) -> "EfficientLoFTR":
        """The backbone's RepVGG blocks folded into single convolutions, for inference (exact)."""
        self.backbone.reparameterize()
        return self
