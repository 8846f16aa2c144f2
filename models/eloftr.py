"""Efficient LoFTR (Wang et al., CVPR 2024): LoFTR's detector-free matching with a RepVGG backbone, aggregated
attention at the coarse level and a two-stage fine refinement at full resolution. Composition only; the parts
are the family's building blocks (models/backbone/repvgg.py, models/transformer/aggregated.py, the coarse
matcher LoFTR uses, models/matching/two_stage.py).
"""

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from geometry.grid import cells_on_image, grid_size

from .backbone.repvgg import RepVGG, RepVGGConfig
from .inputs import check_images, repeated, valid_sizes
from .matching.coarse import CoarseMatching, CoarseMatchingConfig
from .matching.two_stage import FineFPN, TwoStageFineConfig, TwoStageFineMatching, match_windows
from .result import MatchResult
from .transformer.aggregated import AggregatedTransformer, AggregatedTransformerConfig


@dataclass
class EfficientLoFTRConfig:
    """The official full model's values (upstream src/config/default.py); the coarse matcher's defaults are
    LoFTR's and Efficient LoFTR's alike (temperature 0.1, threshold 0.2, border 2)."""

    backbone: RepVGGConfig = field(default_factory=RepVGGConfig)
    coarse: AggregatedTransformerConfig = field(default_factory=AggregatedTransformerConfig)
    match_coarse: CoarseMatchingConfig = field(default_factory=CoarseMatchingConfig)
    fine: TwoStageFineConfig = field(default_factory=TwoStageFineConfig)


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

    def forward(self, batch: dict, ground_truth: tuple[torch.Tensor, ...] | None = None, refine: bool = True
                ) -> MatchResult:
        """Match `batch["image0"]` with `batch["image1"]`, (B, 1, H, W) grayscale in [0, 1], sides multiples of
        32 (the coarse stride times the attention's pooling). Optional `mask0`/`mask1` (B, H, W) bool, True on
        the image and False on bottom/right padding: each image's features are then computed on its own valid
        region, the attention and the coarse matcher skip padded cells, and (for valid sides that are multiples
        of 32 too) padding changes nothing. `ground_truth` = (b, i, j) coarse matches pads the fine-level
        samples in training, as LoFTR's; the keypoints are the model's own matches only. `refine` False: the
        coarse matches alone, keypoints on their cells' pixels and `fine` None (no fine map is computed)."""
        image0, image1 = batch["image0"], batch["image1"]
        check_images(image0, image1, self.coarse_stride)
        for name, image in (("image0", image0), ("image1", image1)):
            if any(side % self.input_multiple for side in image.shape[2:]):
                raise ValueError(f"{name} is {image.shape[3]}x{image.shape[2]} px: Efficient LoFTR takes sides that "
                                 f"are multiples of {self.input_multiple} (training: give each data entry "
                                 f"divisible_by: {self.input_multiple} and crop sizes that are multiples of it)")
        padded = "mask0" in batch or "mask1" in batch
        size0 = valid_sizes(batch.get("mask0"), image0, "mask0")
        size1 = valid_sizes(batch.get("mask1"), image1, "mask1")
        shared = repeated(image0, size0) or repeated(image1, size1)
        # one backbone pass for both, as upstream (batch norms alike), unless one image is a repeated one
        if image0.shape == image1.shape and not padded and not shared:
            features = self.backbone(torch.cat([image0, image1]))
            both = (features.coarse, features.quarter, features.half)
            maps0, maps1 = [m[:image0.shape[0]] for m in both], [m[image0.shape[0]:] for m in both]
        else:
            maps0, maps1 = self._backbone_maps(image0, size0), self._backbone_maps(image1, size1)
        mask0 = _coarse_mask(size0, maps0[0]) if padded else None
        mask1 = _coarse_mask(size1, maps1[0]) if padded else None
        coarse0, coarse1 = self.loftr_coarse(maps0[0], maps1[0], mask0, mask1)
        if padded:  # padded cells carry nothing to the fine level (upstream crops them away)
            coarse0, coarse1 = coarse0 * mask0[:, None], coarse1 * mask1[:, None]
        grid0, grid1 = tuple(coarse0.shape[2:]), tuple(coarse1.shape[2:])
        tokens0, tokens1 = (rearrange(c, "b c h w -> b (h w) c") for c in (coarse0, coarse1))
        flat0, flat1 = (None if m is None else m.flatten(1) for m in (mask0, mask1))
        coarse = self.coarse_matching(tokens0, tokens1, grid0, grid1, flat0, flat1, ground_truth)

        b, i, j = coarse.batch_index, coarse.index0, coarse.index1
        kpts0, kpts1 = coarse.pixels(grid0, grid1, self.coarse_stride)
        fine = None
        if refine:
            channels = coarse0.shape[1]  # upstream scales the maps before the fine level (against fp16 overflow)
            fine0 = self._fine_map(coarse0 / channels**0.5, *maps0[1:], size0, image0, b, i)
            fine1 = self._fine_map(coarse1 / channels**0.5, *maps1[1:], size1, image1, b, j)
            windows0, windows1 = match_windows(fine0, fine1, b, i, j, self.config.fine.window)
            fine = self.fine_matching(windows0, windows1)
            # the fine map is at full resolution: its offsets are the input's pixels
            kpts0, kpts1 = kpts0 + fine.offset0.to(kpts0.dtype), kpts1 + fine.offset1.to(kpts1.dtype)
        own = ~coarse.is_ground_truth_pad
        kpts0, kpts1, b = kpts0[own], kpts1[own], b[own]
        if "scale0" in batch:
            kpts0 = kpts0 * batch["scale0"][b].to(kpts0.dtype)
        if "scale1" in batch:
            kpts1 = kpts1 * batch["scale1"][b].to(kpts1.dtype)
        return MatchResult(kpts0, kpts1, coarse.confidence[own], b, coarse, fine, grid0, grid1)

    def _backbone_maps(self, image: torch.Tensor, size: torch.Tensor) -> list[torch.Tensor]:
        """[coarse, quarter, half] maps of the whole batch, each sample's computed on its valid region alone
        and zero beyond it (a padded canvas then gives its region the unpadded image's features); a `repeated`
        image's once."""
        if repeated(image, size):
            return [m.expand(image.shape[0], *m.shape[1:]) for m in self._backbone_maps(image[:1], size[:1])]
        maps = None
        for same, (_, height, _, width), _ in _regions(size):
            features = self.backbone(image[same, :, :height, :width])
            parts = (features.coarse, features.quarter, features.half)
            if maps is None:
                maps = [part.new_zeros(image.shape[0], part.shape[1], *grid_size(image.shape[2:], stride))
                        for part, stride in zip(parts, (8, 4, 2))]
            for full, part in zip(maps, parts):
                full[same, :, :part.shape[2], :part.shape[3]] = part
        return maps

    def _fine_map(self, coarse: torch.Tensor, quarter: torch.Tensor, half: torch.Tensor, size: torch.Tensor,
                  image: torch.Tensor, batch_index: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """The full-resolution fine map, each sample's from its valid region alone (as `_backbone_maps`). In
        inference, only where the windows of the matched `cells` (M,) of samples `batch_index` (M,) lie: the
        tiles of FINE_TILE_CELLS cells that hold them, each computed with FINE_MARGIN_CELLS of context (beyond
        the FPN's reach, so the same values), zero elsewhere; a sample whose tiles would cost more than its
        whole region gets the whole region. Training computes every pixel, samples of one size in one pass
        (the batch norms' statistics, as upstream)."""
        if torch.compiler.is_exporting():  # a graph for ONNX: the whole map, no tiles chosen by the data
            return self.fine_preprocess(coarse, quarter, half)
        regions = _regions(size) if self.training else _fine_crops(size, coarse.shape[3], batch_index, cells)
        fine = None
        for samples, (top, bottom, left, right), (write_top, write_bottom, write_left, write_right) in regions:
            part = self.fine_preprocess(*(m[samples, :, top // s:-(-bottom // s), left // s:-(-right // s)]
                                          for m, s in ((coarse, 8), (quarter, 4), (half, 2))))
            if fine is None:
                fine = part.new_zeros(image.shape[0], part.shape[1], *image.shape[2:])
            fine[samples, :, write_top:write_bottom, write_left:write_right] = part[
                :, :, write_top - top:write_bottom - top, write_left - left:write_right - left]
        if fine is None:  # no match anywhere: nothing is read
            fine = half.new_zeros(image.shape[0], self.fine_preprocess.layer1_outconv.in_channels, *image.shape[2:])
        return fine

    def reparameterize(self) -> "EfficientLoFTR":
        """The backbone's RepVGG blocks folded into single convolutions, for inference (exact)."""
        self.backbone.reparameterize()
        return self


# The lazy fine map's tiles (in coarse cells), and the context computed around each. The FPN's reach past a pixel
# is 22.5 px: each 2x bilinear upsampling reaches 3/4 of a source pixel (at 1/2, 1/4, 1/8 scale: 1.5 + 3 + 6 px)
# and the two 3x3 convolutions at 1/2 and 1/4 scale 2 source pixels (4 + 8 px); an image-1 window reaches 1 px
# past its cell: 3 cells (24 px) hold both (tests/models/test_eloftr.py fails at 2)
FINE_TILE_CELLS, FINE_MARGIN_CELLS = 8, 3


def _fine_crops(size: torch.Tensor, columns: int, batch_index: torch.Tensor, cells: torch.Tensor):
    """(samples, crop, write) for the lazy fine map (`EfficientLoFTR._fine_map`): one sample of the batch (a
    slice), the region of its maps to compute and the region of the full-resolution map to keep from it, each
    (top, bottom, left, right) in pixels; `cells` are row-major over a coarse grid `columns` wide."""
    stride = EfficientLoFTR.coarse_stride
    tile, margin = FINE_TILE_CELLS * stride, FINE_MARGIN_CELLS * stride
    for sample in torch.unique(batch_index).tolist():
        height, width = size[sample].tolist()
        whole = (0, height, 0, width)
        chosen = cells[batch_index == sample]
        corners = torch.stack([chosen // columns * stride // tile, chosen % columns * stride // tile], 1)
        crops = [((max(r * tile - margin, 0), min((r + 1) * tile + margin, height),
                   max(c * tile - margin, 0), min((c + 1) * tile + margin, width)),
                  (max(r * tile - 1, 0), min((r + 1) * tile + 1, height),
                   max(c * tile - 1, 0), min((c + 1) * tile + 1, width)))
                 for r, c in torch.unique(corners, dim=0).tolist()]
        if sum((bottom - top) * (right - left) for (top, bottom, left, right), _ in crops) >= height * width:
            crops = [(whole, whole)]
        for crop, write in crops:
            yield slice(sample, sample + 1), crop, write


def _regions(size: torch.Tensor):
    """(indices of the samples, region, region) for each distinct valid size (B, 2) of a batch, the region
    (0, height, 0, width) in pixels (twice: the fine map's crops in training, in `_fine_crops`' form)."""
    for height, width in sorted({tuple(s.tolist()) for s in size}):
        samples = (size == size.new_tensor([height, width])).all(1).nonzero().flatten()
        yield samples, (0, height, 0, width), (0, height, 0, width)


def _coarse_mask(size: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """(B, h, w) bool: the cells of the coarse map (B, C, h, w) on each sample's valid region (B, 2) pixels."""
    grid = tuple(coarse.shape[2:])
    return cells_on_image(size, grid, EfficientLoFTR.coarse_stride).view(-1, *grid)
