"""The checks of a composition's inputs (grayscale image batches and their padding masks), and what they say
about the work (`repeated`: one image the whole batch shares)."""

import torch

from geometry.grid import valid_extent


def check_images(image0: torch.Tensor, image1: torch.Tensor, stride: int) -> None:
    for name, image in (("image0", image0), ("image1", image1)):
        if image.dim() != 4 or image.shape[1] != 1:
            raise ValueError(f"{name} must be a grayscale batch (B, 1, H, W), got shape {tuple(image.shape)}")
        if min(image.shape[2:]) < stride:
            raise ValueError(f"{name} of size {tuple(image.shape[2:])} is smaller than one coarse cell ({stride} px)")
    if image0.shape[0] != image1.shape[0]:
        raise ValueError(f"image0 and image1 batch sizes differ: {image0.shape[0]} vs {image1.shape[0]}")


def valid_sizes(mask: torch.Tensor | None, image: torch.Tensor, name: str) -> torch.Tensor:
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


def repeated(image: torch.Tensor, size: torch.Tensor) -> bool:
    """Whether a batch (B, 1, H, W) of valid `size` (B, 2) is one image repeated without copies (torch's
    `expand`, stride 0 along the batch: the affine simulation's image 1 against a batch of views), whose
    backbone features a composition then computes once."""
    return image.shape[0] > 1 and image.stride(0) == 0 and bool((size == size[:1]).all())
