"""Our LoFTR (models/loftr.py) as a matcher: from a checkpoint or a model in memory, any image size, with a
guard that refuses a pair too large for the device before anything is allocated.

`LoFTRMatcher.match(image0, image1) -> Matches` takes (H, W) uint8 images and returns keypoints in their pixels;
`resize` scales them for the network by the resize rule (utils/resize.py) and the keypoints back.
`build_loftr` makes the model for a state dict, as the checkpoint's keys require (models/checkpoint.py).
"""

import math
import os
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import (
    CheckpointError,
    is_efficient_loftr,
    is_reparameterized,
    load_weights,
    needs_legacy_encoding,
    needs_sinkhorn,
    quadtree_kind,
    read_checkpoint,
    state_dict_of,
    stored_model_config,
)
from models.eloftr import EfficientLoFTR, EfficientLoFTRConfig
from models.loftr import LoFTR, LoFTRConfig
from models.matches import Matches, check_grayscale
from utils.resize import resize_image, resize_longer_side, resized_size

# At inference LoFTR's coarse matching holds two float32 matrices of (cells of image 0) x (cells of image 1)
# at once, the similarities and the row softmax that becomes the dual-softmax confidence
# (models/matching/coarse.py, dual_softmax); an (H, W) input has (H / 8) (W / 8) cells. Sinkhorn and full
# attention need more: this is the least a pair needs.
COARSE_MATCHING_BYTES_PER_CELL_PAIR = 2 * 4


class ImageTooSmallError(ValueError):
    """An input image (`index` 0 or 1) is smaller than one coarse cell once resized to `size` (width, height)."""

    def __init__(self, index: int, size: tuple[int, int], stride: int):
        self.index, self.size, self.stride = index, size, stride
        super().__init__(
            f"image{index}: {size[0]}x{size[1]} px is smaller than one coarse cell ({stride} px on each side)"
        )


class ImageTooLargeError(ValueError):
    """Two network inputs (`sizes`: (width, height) each) with too many coarse-cell pairs for the device:
    coarse matching would need `needed` bytes, more than the `available` bytes of `device`. `longest_side`:
    the longer side (pixels) that both inputs could be resized to and fit."""

    def __init__(self, sizes: tuple[tuple[int, int], tuple[int, int]], cell_pairs: int, needed: int,
                 available: int, device: torch.device, longest_side: int):
        self.sizes, self.cell_pairs, self.needed, self.available = sizes, cell_pairs, needed, available
        self.device, self.longest_side = device, longest_side
        (w0, h0), (w1, h1) = sizes
        super().__init__(
            f"{w0}x{h0} and {w1}x{h1} px images are too large for LoFTR: its coarse matching needs "
            f"{needed / 2**30:,.0f} GiB ({cell_pairs:.1e} coarse-cell pairs), more than the "
            f"{available / 2**30:,.0f} GiB of {device.type} memory"
        )


def device_memory(device: torch.device) -> int:
    """Total memory of `device` in bytes: the GPU's for CUDA, the machine's otherwise. Total, not free: the
    guard refuses only what cannot run at all."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def build_loftr(
    state_dict: dict[str, torch.Tensor] | None,
    pos_encoding: str = "auto",
    coarse_threshold: float | None = None,
    config: LoFTRConfig | EfficientLoFTRConfig | None = None,
    seed: int = 0,
    quadtree_topks: list[int] | None = None,
) -> LoFTR | EfficientLoFTR:
    """A LoFTR in eval mode on the CPU for a (converted or official) state dict, or with seeded random weights
    when `state_dict` is None (the same model on every call, to try pipelines). Efficient LoFTR weights
    (`is_efficient_loftr`, upstream's or ours, folded or not) give an EfficientLoFTR, re-parameterised for
    inference.

    pos_encoding: "legacy" (the released official weights), "fixed" (weights trained with the corrected
    encoding) or "auto": legacy exactly when the keys are an official Lightning checkpoint's (`matcher.*`;
    models/checkpoint.py, `needs_legacy_encoding`). A LoFTR-OT state dict (`needs_sinkhorn`) runs the Sinkhorn
    matcher. QuadTree-LoFTR weights (`quadtree_kind`) get its layer layout and kind, with the corrected
    encoding its release was trained with; `quadtree_topks` overrides the keys kept a level (the outdoor
    model's [16, 8, 8] by default; the indoor one was trained with [32, 16, 16]).
    coarse_threshold: overrides the config's coarse confidence threshold. config: the base configuration
    (the official outdoor model, LoFTR's or Efficient LoFTR's by the keys, by default). CheckpointError when the
    weights do not fit the model.
    """
    keys = state_dict or {}
    if is_efficient_loftr(keys):
        return _build_efficient_loftr(state_dict, coarse_threshold, config)
    config = deepcopy(config) if config is not None else LoFTRConfig()  # the caller's config stays as it was
    config.temp_bug_fix = not needs_legacy_encoding(keys, pos_encoding)
    kind = quadtree_kind(keys)
    if kind is not None and config.coarse.block != "quadtree":  # official QuadTree-LoFTR weights
        config.coarse = replace(config.coarse, attention="quadtree", block="quadtree",
                                quadtree=replace(config.coarse.quadtree, kind=kind))
        # its release was trained with the corrected encoding (its configs leave TEMP_BUG_FIX at True)
        config.temp_bug_fix = pos_encoding != "legacy"
    if quadtree_topks is not None:
        config.coarse = replace(config.coarse, quadtree=replace(config.coarse.quadtree, topks=tuple(quadtree_topks)))
    if coarse_threshold is not None:
        config.match_coarse.threshold = coarse_threshold
    if needs_sinkhorn(keys):
        config.match_coarse.match_type = "sinkhorn"

    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return LoFTR(config).eval()
    model = LoFTR(config)
    load_weights(model, state_dict)
    return model.eval()


def check_fit_unbuilt(state_dict: dict[str, torch.Tensor], pos_encoding: str, coarse_threshold: float | None,
                      config: LoFTRConfig | EfficientLoFTRConfig | None, quadtree_topks: list[int] | None) -> None:
    """CheckpointError when `build_loftr`'s model for these arguments does not fit `state_dict`, found by
    building it on the meta device, which allocates nothing: a model that a checkpoint's stored config declares
    but its weights do not fill (a huge one within the config's bounds) is refused unbuilt. Layers that compute
    weights as they are built (SE2-LoFTR's steerable bases) cannot be built there: those are left to the real
    build, within the config's bounds (models/checkpoint.py)."""
    try:
        with torch.device("meta"):
            build_loftr(state_dict, pos_encoding, coarse_threshold, config, quadtree_topks=quadtree_topks)
    except CheckpointError:
        raise
    except (NotImplementedError, RuntimeError):  # an operation the meta device does not run
        pass


def _build_efficient_loftr(state_dict: dict[str, torch.Tensor], coarse_threshold: float | None,
                           config: EfficientLoFTRConfig | None) -> EfficientLoFTR:
    config = deepcopy(config) if isinstance(config, EfficientLoFTRConfig) else EfficientLoFTRConfig()
    if coarse_threshold is not None:
        config.match_coarse.threshold = coarse_threshold
    model = EfficientLoFTR(config)
    if is_reparameterized(state_dict):  # folded weights load into the folded model
        model.reparameterize()
    load_weights(model, state_dict)
    return model.reparameterize().eval()


@contextmanager
def _eval_mode(model: torch.nn.Module):
    """`model` in eval mode inside the block, its previous mode restored after (a training model stays one)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def loftr_matches(model: LoFTR, image0: np.ndarray, image1: np.ndarray, resize: int = 0) -> Matches:
    """Run `model` on two (H, W) uint8 images, each resized to `resize` pixels on its longer side for the
    network (0: as given); any size works, not only multiples of the coarse stride.

    Returns float32 keypoints (N, 2) (x, y) in each image's given pixels and coarse confidences (N,).
    ImageTooSmallError when an image is smaller than one coarse cell once resized.
    """
    device = next(model.parameters()).device
    batch = {}
    for index, image in enumerate((image0, image1)):
        check_grayscale(image, f"image{index}")
        resized, scale = resize_longer_side(image, resize)
        resized, scale = _to_multiple(resized, scale, getattr(model, "input_multiple", 1))
        if min(resized.shape) < model.coarse_stride:
            raise ImageTooSmallError(index, (resized.shape[1], resized.shape[0]), model.coarse_stride)
        batch[f"image{index}"] = torch.from_numpy(resized).to(device, torch.float32)[None, None] / 255
        batch[f"scale{index}"] = torch.tensor([scale], dtype=torch.float32, device=device)
    with _eval_mode(model), torch.inference_mode():
        result = model(batch)
    return Matches(
        result.keypoints0.float().cpu().numpy(),
        result.keypoints1.float().cpu().numpy(),
        result.confidence.float().cpu().numpy(),
    )


def _to_multiple(image: np.ndarray, scale: tuple[float, float], multiple: int
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` resized down to sides that are multiples of `multiple` (Efficient LoFTR's 32, as its demo does),
    and `scale` (x, y), network pixels -> original pixels, updated to match; unchanged for `multiple` 1."""
    height, width = image.shape[:2]
    size = (max(width // multiple, 1) * multiple, max(height // multiple, 1) * multiple)
    if size == (width, height):
        return image, scale
    return resize_image(image, size), (scale[0] * width / size[0], scale[1] * height / size[1])


class LoFTRMatcher:
    """Our LoFTR as a matcher. `model` may be one in training (validation figures): it runs in eval mode and
    goes back to its mode afterwards. resize: longer side of the network input (0: the images as given, what
    the harness wants, since it has already resized them)."""

    name = "loftr"

    def __init__(self, model: LoFTR, resize: int = 0):
        if resize < 0:
            raise ValueError(f"resize must be 0 or more, got {resize}")
        self.model, self.resize = model, resize

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None,
        *,
        trusted: bool = False,
        pos_encoding: str = "auto",
        coarse_threshold: float | None = None,
        config: LoFTRConfig | EfficientLoFTRConfig | None = None,
        resize: int = 0,
        device: str | torch.device = "cpu",
        quadtree_topks: list[int] | None = None,
    ) -> "LoFTRMatcher":
        """The matcher of a checkpoint file (official LoFTR, kornia or ours; see `build_loftr` for the
        options), or of seeded random weights when `checkpoint` is None (pipeline checks only).

        trusted: allow pickled objects besides tensors (only for files you trust). FileNotFoundError or
        CheckpointError naming the file when it cannot be read or does not fit the model. A steerable (SE2)
        backbone is exported to plain torch layers, which give its features at the standard backbone's speed.
        """
        contents = None if checkpoint is None else read_checkpoint(checkpoint, trusted=trusted)
        state_dict = None if contents is None else state_dict_of(contents)
        # checked and bounded before a model is built from it: a small file may declare a huge model
        stored = None if contents is None else stored_model_config(contents, checkpoint)
        if stored is not None and config is None:  # one of ours: its own architecture and encoding
            config = stored
            if pos_encoding == "auto" and isinstance(config, LoFTRConfig):
                pos_encoding = "fixed" if config.temp_bug_fix else "legacy"
        try:
            if state_dict is not None:
                check_fit_unbuilt(state_dict, pos_encoding, coarse_threshold, config, quadtree_topks)
            model = build_loftr(state_dict, pos_encoding, coarse_threshold, config, quadtree_topks=quadtree_topks)
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {checkpoint}: {error}") from None
        except ValueError as error:
            if stored is None:  # the caller's config
                raise
            raise CheckpointError(f"checkpoint {checkpoint}: its stored model config: {error}") from None
        if hasattr(model.backbone, "export"):  # SE2-LoFTR: the same features from plain convolutions, ~1.5x faster
            model.backbone = model.backbone.export()
        return cls(model.to(device), resize)

    def check_memory(self, shape0: tuple[int, ...], shape1: tuple[int, ...]) -> None:
        """ImageTooLargeError, before anything is allocated, when images of shapes (H, W) resized by
        `self.resize` need more memory for coarse matching than the model's device has (see
        COARSE_MATCHING_BYTES_PER_CELL_PAIR)."""
        sizes = [resized_size(width, height, self.resize) if self.resize else (width, height)
                 for height, width in (shape0[:2], shape1[:2])]
        stride = self.model.coarse_stride
        cells0, cells1 = (math.ceil(width / stride) * math.ceil(height / stride) for width, height in sizes)
        needed = COARSE_MATCHING_BYTES_PER_CELL_PAIR * cells0 * cells1
        device = next(self.model.parameters()).device
        available = device_memory(device)
        if needed > available:
            # resized to a longer side N, each input has cells ~ N^2, the pair ~ N^4
            longest = math.sqrt(max(sizes[0]) * max(sizes[1])) * (available / needed) ** 0.25
            raise ImageTooLargeError((sizes[0], sizes[1]), cells0 * cells1, needed, available, device, int(longest))

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """See `loftr_matches`; ImageTooLargeError first when the pair cannot fit (`check_memory`)."""
        self.check_memory(np.shape(image0), np.shape(image1))
        return loftr_matches(self.model, image0, image1, self.resize)
