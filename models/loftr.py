"""LoFTR (Sun et al., CVPR 2021): detector-free matching with transformers. Composition only."""

from dataclasses import dataclass, field, fields

import torch
from einops import rearrange
from torch import nn

from data.batch import cells_on_image, valid_extent

from .backbone import build_backbone
from .backbone.resnet_fpn import ResNetFPNConfig
from .matching.coarse import CoarseMatches, CoarseMatching, CoarseMatchingConfig
from .matching.fine import FineConfig, FineMatches, FinePreprocess, fine_expectation, window_grid
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


@dataclass
class MatchResult:
    """What the matcher returns. Keypoints are (x, y) pixels of each image as given to the model, multiplied
    by the batch's `scale0` / `scale1` (original size / network input size) when the batch has them.
    Coarse cell (c, r) sits on pixel (8c, 8r), LoFTR's convention."""

    keypoints0: torch.Tensor  # (N, 2) float
    keypoints1: torch.Tensor  # (N, 2) float
    confidence: torch.Tensor  # (N,) coarse confidence of each match
    batch_index: torch.Tensor  # (N,) long
    coarse: CoarseMatches  # everything the coarse loss needs, ground-truth pads included in training
    fine: FineMatches  # (M,) entries aligned with `coarse`
    coarse_grid0: tuple[int, int]  # (rows, columns) of image 0's coarse grid
    coarse_grid1: tuple[int, int]


class LoFTR(nn.Module):
    def __init__(self, config: LoFTRConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else LoFTRConfig()
        self.backbone = build_backbone(config.backbone)
        if self.backbone.coarse_dim != config.coarse.d_model or self.backbone.fine_dim != config.fine.transformer.d_model:
            raise ValueError(
                f"backbone widths (coarse {self.backbone.coarse_dim}, fine {self.backbone.fine_dim}) must equal "
                f"the transformers' d_model ({config.coarse.d_model}, {config.fine.transformer.d_model})"
            )
        self.pos_encoding = SinePositionEncoding(config.coarse.d_model, config.temp_bug_fix)
        self.loftr_coarse = LocalFeatureTransformer(config.coarse)
        self.coarse_matching = CoarseMatching(config.match_coarse)
        self.fine_preprocess = FinePreprocess(config.fine, config.coarse.d_model)
        self.loftr_fine = LocalFeatureTransformer(config.fine.transformer)

    @property
    def coarse_stride(self) -> int:
        return self.backbone.coarse_stride

    def forward(self, batch: dict, ground_truth: tuple[torch.Tensor, ...] | None = None,
                window_heatmaps: bool = False) -> MatchResult:
        """Match `batch["image0"]` (B, 1, H0, W0) with `batch["image1"]` (B, 1, H1, W1), grayscale in [0, 1].

        Optional batch keys: `mask0`/`mask1` (B, H, W) bool, True on the image and False on the padding to the
        bottom/right that brings images of different sizes to one tensor; `scale0`/`scale1` (B, 2) factors
        (x, y) from network-input pixels to original pixels. `ground_truth` = (b, i, j) coarse matches pads the
        fine-level samples in training. `window_heatmaps`: also the fine heatmap of every image-0 window position
        (`FineMatches.window_log_heatmaps`, for the window cross-entropy). Padding never changes the result: each
        image's features are computed on its own valid region, and no match falls in padding.
        """
        image0, image1 = batch["image0"], batch["image1"]
        _check_images(image0, image1, self.coarse_stride)
        size0 = _valid_sizes(batch.get("mask0"), image0, "mask0")
        size1 = _valid_sizes(batch.get("mask1"), image1, "mask1")
        (coarse0, fine0), (coarse1, fine1) = self._features([image0, image1], [size0, size1])

        grid0, grid1 = tuple(coarse0.shape[2:]), tuple(coarse1.shape[2:])
        mask0 = _grid_mask(size0, grid0, self.coarse_stride, image0.shape[2:])
        mask1 = _grid_mask(size1, grid1, self.coarse_stride, image1.shape[2:])
        tokens0 = self.pos_encoding(rearrange(coarse0, "b c h w -> b (h w) c"), *grid0)
        tokens1 = self.pos_encoding(rearrange(coarse1, "b c h w -> b (h w) c"), *grid1)
        tokens0, tokens1 = self.loftr_coarse(tokens0, tokens1, mask0, mask1)

        coarse = self.coarse_matching(tokens0, tokens1, grid0, grid1, mask0, mask1, ground_truth)

        fine = self._refine(fine0, fine1, tokens0, tokens1, coarse, grid0, grid1, window_heatmaps)
        return self._keypoints(coarse, fine, grid0, grid1, size0, size1, batch)

    def _refine(self, fine0, fine1, tokens0, tokens1, coarse: CoarseMatches, grid0, grid1,
                window_heatmaps: bool) -> FineMatches:
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
            win0, win1 = self.fine_preprocess(fine0, fine1, tokens0, tokens1, b[part], i[part], j[part], grid0, grid1, step)
            if len(win0):
                win0, win1 = self.loftr_fine(win0, win1)
            parts.append(fine_expectation(win0, win1, query_radius, window_heatmaps))
        if len(parts) == 1:
            return parts[0]
        return FineMatches(*(
            None if getattr(parts[0], f.name) is None else torch.cat([getattr(p, f.name) for p in parts])
            for f in fields(FineMatches)))  # window_log_heatmaps stays None unless asked for

    def _fine_margin(self) -> int:
        """Fine cells along each border that no fine window reads at inference: border removal keeps matches
        `border_removal` coarse cells inside, and a window reaches `radius` fine cells beyond its centre. In
        training the ground-truth pads may lie anywhere."""
        if self.training:
            return 0
        step = self.coarse_stride // self.backbone.fine_stride
        return max(step * self.config.match_coarse.border_removal - self.fine_preprocess.window // 2, 0)

    def _features(self, images, sizes):
        """Backbone maps of both images, each image computed on its own valid region and zero-padded to the
        batch's grid, so padding cannot leak into the features. Images of one size share one backbone pass."""
        margin = self._fine_margin()
        full = all(
            bool((size == torch.tensor(image.shape[2:], device=size.device)).all()) for image, size in zip(images, sizes)
        )
        if full:
            if images[0].shape == images[1].shape:
                coarse, fine = self.backbone(torch.cat(images), margin)
                return list(zip(coarse.chunk(2), fine.chunk(2)))
            return [self.backbone(image, margin) for image in images]

        out = []
        for image, size in zip(images, sizes):
            h, w = image.shape[2:]
            s_c, s_f = self.coarse_stride, self.backbone.fine_stride
            coarse = image.new_zeros(image.shape[0], self.backbone.coarse_dim, -(-h // s_c), -(-w // s_c))
            fine = image.new_zeros(image.shape[0], self.backbone.fine_dim, -(-h // s_f), -(-w // s_f))
            for (vh, vw) in {tuple(s.tolist()) for s in size}:
                same = (size == torch.tensor([vh, vw], device=size.device)).all(1).nonzero().flatten()
                c, f = self.backbone(image[same, :, :vh, :vw], margin)
                coarse[same, :, : c.shape[2], : c.shape[3]] = c.to(coarse.dtype)
                fine[same, :, : f.shape[2], : f.shape[3]] = f.to(fine.dtype)
            out.append((coarse, fine))
        return out

    def _keypoints(self, coarse, fine, grid0, grid1, size0, size1, batch) -> MatchResult:
        b, i, j = coarse.batch_index, coarse.index0, coarse.index1
        stride, fine_stride = self.coarse_stride, self.backbone.fine_stride
        dtype = torch.promote_types(coarse.confidence.dtype, torch.float32)
        kpts0 = torch.stack([i % grid0[1], i // grid0[1]], 1).to(dtype) * stride
        kpts1 = torch.stack([j % grid1[1], j // grid1[1]], 1).to(dtype) * stride
        window = self.fine_preprocess.window
        grid = window_grid(window, kpts0.device, dtype) * (window // 2 * fine_stride)  # pixels from the centre
        kpts0 = kpts0 + grid[fine.query]  # the cell centre, or the query chosen near it (FineConfig.query_radius)
        kpts1 = kpts1 + fine.expectation.to(dtype) * (window // 2 * fine_stride)

        # report predictions only (not the training pads), never in the padding of either image
        keep = ~coarse.is_ground_truth_pad & _inside(kpts0, size0[b]) & _inside(kpts1, size1[b])
        kpts0, kpts1, b_kept = kpts0[keep], kpts1[keep], b[keep]
        if "scale0" in batch:
            kpts0 = kpts0 * batch["scale0"][b_kept].to(dtype)
        if "scale1" in batch:
            kpts1 = kpts1 * batch["scale1"][b_kept].to(dtype)
        return MatchResult(kpts0, kpts1, coarse.confidence[keep], b_kept, coarse, fine, grid0, grid1)


def _check_images(image0: torch.Tensor, image1: torch.Tensor, stride: int) -> None:
    for name, image in (("image0", image0), ("image1", image1)):
        if image.dim() != 4 or image.shape[1] != 1:
            raise ValueError(f"{name} must be a grayscale batch (B, 1, H, W), got shape {tuple(image.shape)}")
        if min(image.shape[2:]) < stride:
            raise ValueError(f"{name} of size {tuple(image.shape[2:])} is smaller than one coarse cell ({stride} px)")
    if image0.shape[0] != image1.shape[0]:
        raise ValueError(f"image0 and image1 batch sizes differ: {image0.shape[0]} vs {image1.shape[0]}")


def _valid_sizes(mask: torch.Tensor | None, image: torch.Tensor, name: str) -> torch.Tensor:
    """(B, 2) valid (height, width) per sample, checking the mask pads only at the bottom/right."""
    b, _, h, w = image.shape
    if mask is None:
        return valid_extent(None, (h, w), b, image.device)
    if mask.shape != (b, h, w):
        raise ValueError(f"{name} must have shape {(b, h, w)} like its image, got {tuple(mask.shape)}")
    mask = mask.bool()
    sizes = valid_extent(mask, (h, w), b, image.device)
    rows = torch.arange(h, device=mask.device)[None, :, None] < sizes[:, 0, None, None]
    cols = torch.arange(w, device=mask.device)[None, None, :] < sizes[:, 1, None, None]
    if not torch.equal(mask, rows & cols) or bool((sizes == 0).any()):
        raise ValueError(f"{name} must be True on a non-empty top-left rectangle (the image) and False on the padding")
    return sizes


def _grid_mask(size: torch.Tensor, grid: tuple[int, int], stride: int, image_hw) -> torch.Tensor | None:
    """(B, h*w) bool: coarse cells on the image rather than the padding; None without padding."""
    if bool((size == torch.tensor(list(image_hw), device=size.device)).all()):
        return None
    return cells_on_image(size, grid, stride)


def _inside(points: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """points (N, 2) (x, y) within [0, width-1] x [0, height-1] of their image's valid size (N, 2) = (h, w)."""
    return (points >= 0).all(1) & (points[:, 0] <= size[:, 1] - 1) & (points[:, 1] <= size[:, 0] - 1)
