"""Matchers for evaluation and match.py: two uint8 grayscale images in, `Matches` out.

Every matcher has a `name` and one method, `match(image0, image1) -> Matches`, taking (H, W) uint8 images
and returning keypoints in those images' pixels, (x, y) with pixel (c, r) at (c, r). The harness resizes the
images to the benchmark's resolution before it calls a matcher, so matchers take the images as given.

    sift   OpenCV SIFT, mutual nearest neighbours passing Lowe's ratio test
    asift  SIFT on affine-simulated views (OpenCV's AffineFeature, Yu & Morel's ASIFT), same matching
    loftr  our LoFTR (models/loftr.py), from a checkpoint or a model in memory
"""

import math
import os
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from evaluation.pairs import Matches
from models.checkpoint import CheckpointError, load_weights, model_config_of, read_checkpoint, state_dict_of
from models.loftr import LoFTR, LoFTRConfig

# Lowe (IJCV 2004, sec. 7.1) rejects matches whose nearest/second-nearest distance ratio exceeds 0.8; the SIFT
# baselines of SuperGlue (Sarlin et al., CVPR 2020) use the same 0.8.
RATIO_THRESHOLD = 0.8

# At inference LoFTR's coarse matching holds two float32 matrices of (cells of image 0) x (cells of image 1)
# at once, the similarities and the row softmax that becomes the dual-softmax confidence
# (models/matching/coarse.py, dual_softmax); an (H, W) input has (H / 8) (W / 8) cells. Sinkhorn and full
# attention need more: this is the least a pair needs.
COARSE_MATCHING_BYTES_PER_CELL_PAIR = 2 * 4


class Matcher(Protocol):
    name: str

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches: ...


# ----------------------------------------------------------------------------------------------- descriptors


def mutual_ratio_matches(
    descriptors0: np.ndarray, descriptors1: np.ndarray, ratio: float = RATIO_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute-force L2 matching of descriptors (N0, D) and (N1, D): the pairs (i, j) that are each other's
    nearest neighbour (mutual check) and pass Lowe's ratio test in both directions (nearest distance below
    `ratio` times the second nearest). The rule is symmetric: swapping the inputs swaps the pairs.

    Returns index0, index1 (M,) int64 and confidence (M,) float32 = 1 - the larger of the two distance ratios,
    in (0, 1]; sorted by index0. Against a single descriptor there is no second neighbour, so no ratio test in
    that direction.
    """
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if descriptors0 is None or descriptors1 is None or len(descriptors0) == 0 or len(descriptors1) == 0:
        return empty
    descriptors0 = np.ascontiguousarray(descriptors0, np.float32)
    descriptors1 = np.ascontiguousarray(descriptors1, np.float32)
    nearest01, ratio01 = _nearest_two(descriptors0, descriptors1)
    nearest10, ratio10 = _nearest_two(descriptors1, descriptors0)
    index0 = np.arange(len(descriptors0))
    mutual = nearest10[nearest01] == index0
    worst = np.maximum(ratio01, ratio10[nearest01])
    keep = mutual & (worst < ratio)
    return index0[keep], nearest01[keep], (1.0 - worst[keep]).astype(np.float32)


def _nearest_two(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query (N, D): index of its nearest train descriptor (N,) int64 and the distance ratio
    nearest / second nearest (N,) float64; 0 without a second neighbour, inf when both distances are 0
    (two identical candidates: ambiguous)."""
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(queries, train, k=2)
    nearest = np.array([pair[0].trainIdx for pair in knn], np.int64)
    first = np.array([pair[0].distance for pair in knn], np.float64)
    second = np.array([pair[1].distance if len(pair) > 1 else np.inf for pair in knn], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(first == 0, np.where(second == 0, np.inf, 0.0), first / second)
    return nearest, ratio


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        shape, dtype = np.shape(image), getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W) uint8 grayscale array, got shape {shape} and dtype {dtype}")


class _DescriptorMatcher:
    """Detect and describe with an OpenCV Feature2D, then `mutual_ratio_matches`."""

    name = ""

    def __init__(self, features: cv2.Feature2D, ratio: float):
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.features, self.ratio = features, ratio

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """Matches between (H, W) uint8 images; keypoints (N, 2) float32 (x, y) pixels, confidence (N,)."""
        _check_image(image0, "image0")
        _check_image(image1, "image1")
        points0, descriptors0 = self.describe(image0)
        points1, descriptors1 = self.describe(image1)
        index0, index1, confidence = mutual_ratio_matches(descriptors0, descriptors1, self.ratio)
        return Matches(points0[index0], points1[index1], confidence)

    def describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints (N, 2) float32 (x, y) pixels of `image` and their descriptors (N, D) (None without any)."""
        keypoints, descriptors = self.features.detectAndCompute(image, None)
        points = np.array([kp.pt for kp in keypoints], np.float32).reshape(-1, 2)
        return points, descriptors


class SIFTMatcher(_DescriptorMatcher):
    """OpenCV SIFT keypoints and descriptors, matched by `mutual_ratio_matches`.

    max_features: keep the strongest this many keypoints per image (0: all, OpenCV's default).
    ratio: Lowe's ratio threshold (0.8).
    """

    name = "sift"

    def __init__(self, max_features: int = 0, ratio: float = RATIO_THRESHOLD):
        super().__init__(cv2.SIFT_create(nfeatures=max_features), ratio)


class ASIFTMatcher(_DescriptorMatcher):
    """Affine-SIFT: SIFT run on affine-simulated views of each image (OpenCV's AffineFeature wrapper, after Yu &
    Morel, "ASIFT", IPOL 2011), keypoints mapped back to the image, matched by `mutual_ratio_matches`.

    The views sample the camera's tilt t = tilt_step^k for k = min_tilt..max_tilt and, per tilt, the longitude
    in steps of rotate_step_base / t degrees over [0, 180). OpenCV's defaults, the paper's: t = 1, sqrt 2, 2,
    2 sqrt 2, 4, 4 sqrt 2 (up to ~5.7, an ~80 degree viewing angle) and 72 / t degree steps: 1 + 4 + 5 + 8 + 10 +
    15 = 43 views.
    max_features limits the SIFT keypoints of each view (0: all).
    """

    name = "asift"

    def __init__(
        self,
        max_features: int = 0,
        ratio: float = RATIO_THRESHOLD,
        max_tilt: int = 5,  # OpenCV's default, n = 5 in the paper
        min_tilt: int = 0,
        tilt_step: float = float(np.sqrt(2.0)),
        rotate_step_base: float = 72.0,
    ):
        sift = cv2.SIFT_create(nfeatures=max_features)
        super().__init__(cv2.AffineFeature_create(sift, max_tilt, min_tilt, tilt_step, rotate_step_base), ratio)


# ----------------------------------------------------------------------------------------------- LoFTR


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


def resized(image: np.ndarray, factors: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` scaled by `factors` (x, y); returns it and the exact factors after rounding to whole pixels."""
    height, width = image.shape[:2]
    size = (max(1, round(width * factors[0])), max(1, round(height * factors[1])))  # (w, h), as OpenCV wants it
    if size == (width, height):
        return image, (1.0, 1.0)
    # area averaging when shrinking (no aliasing); bilinear when enlarging, where area acts like nearest
    interpolation = cv2.INTER_AREA if size[0] < width else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), (size[0] / width, size[1] / height)


def resize_longer_side(image: np.ndarray, longer: int) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` (H, W) resized so that its longer side is `longer` pixels, aspect ratio kept (0: unchanged),
    and the factors (x, y) = (original width / new width, original height / new height) that take
    network-input pixels back to original pixels (the model's `scale`)."""
    if longer == 0:
        return image, (1.0, 1.0)
    factor = longer / max(image.shape[:2])
    image, (x, y) = resized(image, (factor, factor))
    return image, (1 / x, 1 / y)


def build_loftr(
    state_dict: dict[str, torch.Tensor] | None,
    pos_encoding: str = "auto",
    coarse_threshold: float | None = None,
    config: LoFTRConfig | None = None,
    seed: int = 0,
) -> LoFTR:
    """A LoFTR in eval mode on the CPU for a (converted or official) state dict, or with seeded random weights
    when `state_dict` is None (the same model on every call, to try pipelines).

    pos_encoding: "legacy" (the released official weights), "fixed" (weights trained with the corrected
    encoding) or "auto": legacy exactly when the keys are an official Lightning checkpoint's (`matcher.*`).
    A state dict with `coarse_matching.bin_score` is a LoFTR-OT checkpoint and runs the Sinkhorn matcher.
    coarse_threshold: overrides the config's coarse confidence threshold. config: the base configuration
    (the official outdoor model by default). CheckpointError when the weights do not fit the model.
    """
    if pos_encoding not in ("auto", "legacy", "fixed"):
        raise ValueError(f"pos_encoding must be 'auto', 'legacy' or 'fixed', got {pos_encoding!r}")
    keys = state_dict or {}
    if pos_encoding == "auto":
        legacy = any(key.startswith("matcher.") for key in keys)
    else:
        legacy = pos_encoding == "legacy"
    config = deepcopy(config) if config is not None else LoFTRConfig()  # the caller's config stays as it was
    config.temp_bug_fix = not legacy
    if coarse_threshold is not None:
        config.match_coarse.threshold = coarse_threshold
    if any(key.endswith("coarse_matching.bin_score") for key in keys):
        config.match_coarse.match_type = "sinkhorn"  # a LoFTR-OT checkpoint: its dustbin score says so

    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return LoFTR(config).eval()
    model = LoFTR(config)
    load_weights(model, state_dict)
    return model.eval()


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
        _check_image(image, f"image{index}")
        resized, scale = resize_longer_side(image, resize)
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
        config: LoFTRConfig | None = None,
        resize: int = 0,
        device: str | torch.device = "cpu",
    ) -> "LoFTRMatcher":
        """The matcher of a checkpoint file (official LoFTR, kornia or ours; see `build_loftr` for the
        options), or of seeded random weights when `checkpoint` is None (pipeline checks only).

        trusted: allow pickled objects besides tensors (only for files you trust). FileNotFoundError or
        CheckpointError naming the file when it cannot be read or does not fit the model. A steerable (SE2)
        backbone is exported to plain torch layers, which give its features at the standard backbone's speed.
        """
        contents = None if checkpoint is None else read_checkpoint(checkpoint, trusted=trusted)
        state_dict = None if contents is None else state_dict_of(contents)
        stored = None if contents is None else model_config_of(contents)
        if stored is not None and config is None:  # one of ours: its own architecture and encoding
            config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LoFTRConfig), stored))
            if pos_encoding == "auto":
                pos_encoding = "fixed" if config.temp_bug_fix else "legacy"
        try:
            model = build_loftr(state_dict, pos_encoding, coarse_threshold, config)
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {checkpoint}: {error}") from None
        if hasattr(model.backbone, "export"):  # SE2-LoFTR: the same features from plain convolutions, ~1.5x faster
            model.backbone = model.backbone.export()
        return cls(model.to(device), resize)

    def check_memory(self, shape0: tuple[int, ...], shape1: tuple[int, ...]) -> None:
        """ImageTooLargeError, before anything is allocated, when images of shapes (H, W) resized by
        `self.resize` need more memory for coarse matching than the model's device has (see
        COARSE_MATCHING_BYTES_PER_CELL_PAIR)."""
        sizes = []
        for height, width in (shape0[:2], shape1[:2]):
            factor = self.resize / max(height, width) if self.resize else 1.0
            sizes.append((max(1, round(width * factor)), max(1, round(height * factor))))
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


# ----------------------------------------------------------------------------------------------- registry

MATCHERS = {"sift": SIFTMatcher, "asift": ASIFTMatcher, "loftr": LoFTRMatcher.from_checkpoint}


def build_matcher(name: str, **options) -> Matcher:
    """The matcher registered as `name` in MATCHERS, built with `options` (its constructor's arguments; for
    "loftr" those of LoFTRMatcher.from_checkpoint). ValueError listing the names for an unknown one."""
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; valid names: {', '.join(sorted(MATCHERS))}")
    return MATCHERS[name](**options)
