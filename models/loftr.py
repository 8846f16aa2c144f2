"""LoFTR (Sun et al., CVPR 2021): detector-free matching with transformers. Composition only."""

import math
from dataclasses import dataclass, field, fields

import torch
from einops import rearrange
from torch import nn

from geometry.grid import cells_on_image, grid_size

from .backbone import build_backbone
from .backbone.resnet_fpn import ResNetFPNConfig
from .inputs import check_images, repeated, valid_sizes
from .matching.coarse import CoarseMatches, CoarseMatching, CoarseMatchingConfig
from .matching.fine import FineConfig, FineMatches, FinePreprocess, fine_expectation, window_grid
from .matching.subpixel import PixelFeatures, SubpixelConfig, subpixel_refine
from .result import MatchResult
from .transformer.encoder import LocalFeatureTransformer, TransformerConfig
from .transformer.position import SinePositionEncoding

CPU_FINE_CHUNK = 256  # matches per fine-level pass on CPU (64-512 measured on a 2-core machine)


@dataclass
class LoFTRConfig:
    """Every hyper-parameter of the model; the defaults are the official outdoor model."""

    backbone: ResNetFPNConfig = field(default_factory=ResNetFPNConfig)
    temp_bug_fix: bool = True  # positional encoding; False to run the official released checkpoints
    coarse: TransformerConfig = field(default_factory=TransformerConfig)
    match_coarse: CoarseMatchingConfig = field(default_factory=CoarseMatchingConfig)
    fine: FineConfig = field(default_factory=FineConfig)
    subpixel: SubpixelConfig = field(default_factory=SubpixelConfig)  # a second fine stage at stride 1


class LoFTR(nn.Module):
    input_multiple = 1  # any side works: the coarse grid is ceil(side / 8)

    def __init__(self, config: LoFTRConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else LoFTRConfig()
        self.backbone = build_backbone(config.backbone)
        if (
            self.backbone.coarse_dim != config.coarse.d_model
            or self.backbone.fine_dim != config.fine.transformer.d_model
        ):
            raise ValueError(
                f"backbone widths (coarse {self.backbone.coarse_dim}, fine {self.backbone.fine_dim}) must equal "
                f"the transformers' d_model ({config.coarse.d_model}, {config.fine.transformer.d_model})"
            )
        if config.fine.transformer.attention == "quadtree":
            raise ValueError("fine.transformer.attention=quadtree: the fine level attends within 5x5 windows, too "
                             "few tokens for a quadtree; use linear or full")
        self.pos_encoding = SinePositionEncoding(config.coarse.d_model, config.temp_bug_fix)
        self.loftr_coarse = LocalFeatureTransformer(config.coarse)
        self.coarse_matching = CoarseMatching(config.match_coarse)
        self.fine_preprocess = FinePreprocess(config.fine, config.coarse.d_model)
        self.loftr_fine = LocalFeatureTransformer(config.fine.transformer)
        self.pixel_features = None
        if config.subpixel.enabled:
            self.pixel_features = PixelFeatures(self.backbone.fine_dim, config.subpixel.dim, self.backbone.fine_stride)

    @property
    def coarse_stride(self) -> int:
        return self.backbone.coarse_stride

    def forward(
        self, batch: dict, ground_truth: tuple[torch.Tensor, ...] | None = None, window_heatmaps: bool = False,
        refine: bool = True,
    ) -> MatchResult:
        """Match `batch["image0"]` (B, 1, H0, W0) with `batch["image1"]` (B, 1, H1, W1), grayscale in [0, 1].

        Optional batch keys: `mask0`/`mask1` (B, H, W) bool, True on the image and False on the padding to the
        bottom/right that brings images of different sizes to one tensor; `scale0`/`scale1` (B, 2) factors
        (x, y) from network-input pixels to original pixels. `ground_truth` = (b, i, j) coarse matches pads the
        fine-level samples in training. `window_heatmaps`: also the fine heatmap of every image-0 window position
        (`FineMatches.window_log_heatmaps`, for the window cross-entropy). Padding never changes the result: each
        image's features are computed on its own valid region, and no match falls in padding. `refine` False:
        the coarse matches alone, keypoints on their cells' pixels and `fine` None.
        """
        image0, image1 = batch["image0"], batch["image1"]
        check_images(image0, image1, self.coarse_stride)
        size0 = valid_sizes(batch.get("mask0"), image0, "mask0")
        size1 = valid_sizes(batch.get("mask1"), image1, "mask1")
        (coarse0, fine0, pixels0), (coarse1, fine1, pixels1) = self._features([image0, image1], [size0, size1])

        grid0, grid1 = tuple(coarse0.shape[2:]), tuple(coarse1.shape[2:])
        mask0 = _grid_mask(size0, grid0, self.coarse_stride, image0.shape[2:])
        mask1 = _grid_mask(size1, grid1, self.coarse_stride, image1.shape[2:])
        tokens0 = self.pos_encoding(rearrange(coarse0, "b c h w -> b (h w) c"), *grid0)
        tokens1 = self.pos_encoding(rearrange(coarse1, "b c h w -> b (h w) c"), *grid1)
        tokens0, tokens1 = self.loftr_coarse(tokens0, tokens1, mask0, mask1, grid0, grid1)

        coarse = self.coarse_matching(tokens0, tokens1, grid0, grid1, mask0, mask1, ground_truth)

        if not refine:
            kpts0, kpts1 = coarse.pixels(grid0, grid1, self.coarse_stride)
            return self._keypoints(coarse, None, None, kpts0, kpts1, grid0, grid1, size0, size1, batch)
        fine = self._refine(fine0, fine1, tokens0, tokens1, coarse, grid0, grid1, window_heatmaps)
        kpts0, kpts1 = self._fine_points(coarse, fine, grid0, grid1)
        subpixel = None
        if self.pixel_features is not None:
            subpixel = subpixel_refine(
                pixels0, pixels1, coarse.batch_index, kpts0.round().long(), kpts1, self.config.subpixel.window_size
            )
            kpts1 = subpixel.anchor + subpixel.expectation.to(kpts1.dtype) * (self.config.subpixel.window_size // 2)
        return self._keypoints(coarse, fine, subpixel, kpts0, kpts1, grid0, grid1, size0, size1, batch)

    def _refine(
        self, fine0, fine1, tokens0, tokens1, coarse: CoarseMatches, grid0, grid1, window_heatmaps: bool
    ) -> FineMatches:
        """The fine level for every coarse match. Matches are refined independently of each other, so on CPU
        they go through in chunks whose activations stay in cache (the fine level runs ~25% faster than in one
        pass); a GPU takes them all at once."""
        step = self.coarse_stride // self.backbone.fine_stride
        b, i, j = coarse.batch_index, coarse.index0, coarse.index1
        chunk = CPU_FINE_CHUNK if fine0.device.type == "cpu" else max(len(b), 1)
        query_radius = 0 if self.training else self.config.fine.query_radius
        parts = []
        for start in range(0, max(len(b), 1), chunk):
            part = slice(start, start + chunk)
            win0, win1 = self.fine_preprocess(
                fine0, fine1, tokens0, tokens1, b[part], i[part], j[part], grid0, grid1, step
            )
            if len(win0):
                win0, win1 = self.loftr_fine(win0, win1)
            parts.append(fine_expectation(win0, win1, query_radius, window_heatmaps))
        if len(parts) == 1:
            return parts[0]
        return FineMatches(
            *(
                None if getattr(parts[0], f.name) is None else torch.cat([getattr(p, f.name) for p in parts])
                for f in fields(FineMatches)
            )
        )  # window_log_heatmaps stays None unless asked for

    def _fine_margin(self) -> int:
        """Fine cells along each border that no fine window reads at inference: border removal keeps matches
        `border_removal` coarse cells inside, and a window reaches `radius` fine cells beyond its centre. The
        stride-1 stage reads further: its window around the rounded estimate, two pixels more for the merge's
        convolutions, and one fine cell for the upsampling. In training the ground-truth pads may lie anywhere."""
        if self.training:
            return 0
        fine_stride = self.backbone.fine_stride
        margin = self.coarse_stride // fine_stride * self.config.match_coarse.border_removal
        margin -= self.fine_preprocess.window // 2
        if self.pixel_features is not None:
            margin -= math.ceil((0.5 + self.config.subpixel.window_size // 2 + 2) / fine_stride) + 1
        return max(margin, 0)

    def _features(self, images, sizes):
        """Feature maps (coarse, fine, stride-1 or None) of both images, each image computed on its own valid
        region and zero-padded to the batch's grid, so padding cannot leak into the features. Images of one
        size share one backbone pass; a `repeated` image is computed once."""
        margin = self._fine_margin()
        full = all(
            bool((size == torch.tensor(image.shape[2:], device=size.device)).all())
            for image, size in zip(images, sizes)
        )
        if full and images[0].shape == images[1].shape and not any(map(repeated, images, sizes)):
            halves = [None if m is None else m.chunk(2) for m in self._maps(torch.cat(images), margin)]
            return [tuple(None if h is None else h[k] for h in halves) for k in (0, 1)]
        return [self._image_maps(image, size, margin) for image, size in zip(images, sizes)]

    def _image_maps(self, image, size, margin):
        """One image batch's maps (`_features`)."""
        if repeated(image, size):
            return tuple(None if m is None else m.expand(image.shape[0], *m.shape[1:])
                         for m in self._image_maps(image[:1], size[:1], margin))
        if bool((size == torch.tensor(image.shape[2:], device=size.device)).all()):
            return self._maps(image, margin)
        maps = None
        for vh, vw in {tuple(s.tolist()) for s in size}:
            same = (size == torch.tensor([vh, vw], device=size.device)).all(1).nonzero().flatten()
            region = self._maps(image[same, :, :vh, :vw], margin)
            if maps is None:  # zero maps the batch's size, at each map's stride
                maps = [
                    None
                    if m is None
                    else image.new_zeros(image.shape[0], m.shape[1], *grid_size(image.shape[2:], s))
                    for m, s in zip(region, self._strides())
                ]
            for m, r in zip(maps, region):
                if m is not None:
                    m[same, :, : r.shape[2], : r.shape[3]] = r.to(m.dtype)
        return tuple(maps)

    def _strides(self) -> tuple[int, int, int]:
        return self.coarse_stride, self.backbone.fine_stride, 1

    def _maps(self, image: torch.Tensor, margin: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        coarse, fine = self.backbone(image, margin)
        pixels = None if self.pixel_features is None else self.pixel_features(image, fine)
        return coarse, fine, pixels

    def _fine_points(self, coarse: CoarseMatches, fine: FineMatches, grid0, grid1) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 2) network-input pixels of every coarse match after the fine stage: image 0's query (the cell
        centre, or the position FineConfig.query_radius chose) and image 1's expectation."""
        fine_stride = self.backbone.fine_stride
        kpts0, kpts1 = coarse.pixels(grid0, grid1, self.coarse_stride)
        dtype = kpts0.dtype
        window = self.fine_preprocess.window
        grid = window_grid(window, kpts0.device, dtype) * (window // 2 * fine_stride)  # pixels from the centre
        return kpts0 + grid[fine.query], kpts1 + fine.expectation.to(dtype) * (window // 2 * fine_stride)

    def _keypoints(self, coarse, fine, subpixel, kpts0, kpts1, grid0, grid1, size0, size1, batch) -> MatchResult:
        b = coarse.batch_index
        # report predictions only (not the training pads), never in the padding of either image
        keep = ~coarse.is_ground_truth_pad & _inside(kpts0, size0[b]) & _inside(kpts1, size1[b])
        kpts0, kpts1, b_kept = kpts0[keep], kpts1[keep], b[keep]
        if "scale0" in batch:
            kpts0 = kpts0 * batch["scale0"][b_kept].to(kpts0.dtype)
        if "scale1" in batch:
            kpts1 = kpts1 * batch["scale1"][b_kept].to(kpts1.dtype)
        return MatchResult(kpts0, kpts1, coarse.confidence[keep], b_kept, coarse, fine, grid0, grid1, subpixel)


def _grid_mask(size: torch.Tensor, grid: tuple[int, int], stride: int, image_hw) -> torch.Tensor | None:
    """(B, h*w) bool: coarse cells on the image rather than the padding; None without padding."""
    if bool((size == torch.tensor(list(image_hw), device=size.device)).all()):
        return None
    return cells_on_image(size, grid, stride)


def _inside(points: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """points (N, 2) (x, y) within [0, width-1] x [0, height-1] of their image's valid size (N, 2) = (h, w)."""
    return (points >= 0).all(1) & (points[:, 0] <= size[:, 1] - 1) & (points[:, 1] <= size[:, 0] - 1)
