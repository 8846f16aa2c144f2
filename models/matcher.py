"""A family member as a matcher, and the Python API: images in, matches in their original pixels out.

    from models import load_matcher
    matcher = load_matcher("outputs/train/synthetic/latest/checkpoints/last.ckpt", device="cpu")
    result = matcher.match(image0, image1)  # paths, numpy gray or RGB arrays (uint8, float), tensors
    result.keypoints0, result.keypoints1, result.confidence  # numpy; (x, y) pixels of the images as given

`LoFTRMatcher` is the one matcher of every member (LoFTR and its variants, Efficient LoFTR), from a checkpoint
or a model in memory: any image size (resized for the network by the resize rule, utils/resize.py, and the
keypoints scaled back), with a guard that refuses a pair too large for the device before anything is
allocated. The evaluation harness uses it too (resize 0: it gives images already resized). `match_many`
matches several images 0 against one image 1 in one forward (the affine simulation's views); `load_matcher(...,
affine=...)` wraps the matcher in the affine simulation (models/affine.py) behind `ResizedMatcher`.
"""

import math
import os
from collections.abc import Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from utils.images import as_grayscale
from utils.resize import resize_image, resize_longer_side, resized_size, scaled_side
from utils.values import check_number

from .affine import AffineSimulation, AffineSimulationConfig
from .checkpoint import CheckpointError, read_checkpoint, state_dict_of, stored_model_config
from .family import WeightOptions, check_fits_unbuilt, family_for_weights, family_of, model_for_weights
from .matches import ImageTooSmallError, Matches, check_grayscale

# At inference LoFTR's coarse matching holds two float32 matrices of (cells of image 0) x (cells of image 1)
# at once, the similarities and the row softmax that becomes the dual-softmax confidence
# (models/matching/coarse.py, dual_softmax); an (H, W) input has (H / 8) (W / 8) cells. Sinkhorn and full
# attention need more: this is the least a pair needs.
COARSE_MATCHING_BYTES_PER_CELL_PAIR = 2 * 4
# Precisions the forward may run in: float32, or autocast to bfloat16 / float16 on the model's device
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
IMAGES_KEPT = 16  # decoded images match_pairs keeps: a 12 MP photo is 12 MB in gray


class CoarseCellTooSmallError(ImageTooSmallError):
    """An input image (`index` 0 or 1) is smaller than one coarse cell once resized to `size` (width, height)."""

    def __init__(self, index: int, size: tuple[int, int], stride: int):
        self.index, self.size, self.stride, self.minimum = index, size, stride, stride
        ValueError.__init__(  # its own message: the base's names a matcher, this one the coarse cell
            self, f"image{index}: {size[0]}x{size[1]} px is smaller than one coarse cell ({stride} px on each side)")


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


# /proc/cpuinfo's flags of the bfloat16 instructions CPU autocast needs to be faster than float32: x86's AVX-512
# BF16 and AMX-BF16, ARM's BF16 (in aarch64's "Features")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has bfloat16 instructions, by the flags of `cpuinfo` (default: /proc/cpuinfo's text);
    None where that cannot be read (not Linux): unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = {flag for line in cpuinfo.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def checked_precision(precision: str, device: str | torch.device) -> str:
    """`precision` ("fp32", "bf16" or "fp16"); ValueError for another, and for bf16 on a CPU known to lack
    bfloat16 instructions, where autocast emulates them and runs slower than float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and torch.device(device).type == "cpu" and cpu_has_bf16() is False:
        raise ValueError("precision bf16: this CPU has no bfloat16 instructions (none of "
                         f"{', '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo), so bfloat16 would run slower than "
                         "float32: use fp32 here, or a GPU")
    return precision


def checked_device(name: str | torch.device) -> torch.device:
    """The torch device `name` says ("cpu", "cuda", "cuda:1", "mps"); ValueError unless it is one that images
    can be matched on and this machine has (meta, a missing GPU: a traceback in the first forward)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={name!r} is not a torch device: give cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name!r}: matching runs on cpu, cuda, cuda:N or mps")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and gpus == 0:
        raise ValueError(f"device={name!r}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= gpus:
        raise ValueError(f"device={name!r}: this machine has {gpus} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r}: MPS (Apple's GPU) is not available on this machine")
    return device


@contextmanager
def _eval_mode(model: torch.nn.Module):
    """`model` in eval mode inside the block, its previous mode restored after (a training model stays one)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _to_multiple(image: np.ndarray, scale: tuple[float, float], multiple: int
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` resized down to sides that are multiples of `multiple` (Efficient LoFTR's 32, as its demo does),
    and `scale` (x, y), network pixels -> original pixels, updated to match; unchanged for `multiple` 1."""
    height, width = image.shape[:2]
    size = (scaled_side(width, 1.0, multiple), scaled_side(height, 1.0, multiple))
    if size == (width, height):
        return image, scale
    return resize_image(image, size), (scale[0] * width / size[0], scale[1] * height / size[1])


def unturn(points: np.ndarray, turns: int, shape: tuple[int, ...]) -> np.ndarray:
    """(N, 2) (x, y) pixels of `np.rot90(image, turns)` (`turns` quarter turns counter-clockwise) taken back to
    the pixels of `image`, whose shape is `shape` (H, W)."""
    height, width = shape[:2]
    u, v = points[:, 0], points[:, 1]
    back = {0: (u, v), 1: (width - 1 - v, u), 2: (width - 1 - u, height - 1 - v), 3: (v, height - 1 - u)}[turns % 4]
    return np.stack(back, axis=1).astype(points.dtype, copy=False)


class LoFTRMatcher:
    """A family member as a matcher. `model` may be one in training (validation figures): it runs in eval mode
    and goes back to its mode afterwards.

    resize: longer side of the network input (0: the images as given, what the harness wants, since it has
    already resized them). precision: "fp32", or "bf16" / "fp16" to run the forward under autocast.
    rotations: quarter turns of image 1 to try, in degrees (multiples of 90): each turn is matched and the one
    whose matches have the largest summed confidence is kept, its keypoints taken back to image 1's pixels
    (the LoFTR maintainers' answer to rotated photos; SE2-LoFTR is rotation-equivariant instead)."""

    def __init__(self, model: torch.nn.Module, resize: int = 0, precision: str = "fp32",
                 rotations: Iterable[int] = (0,)):
        check_number("resize", resize, 0, integer=True)  # pixels; 0: as given
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        rotations = tuple(rotations)
        if not rotations or any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r % 90
                                for r in rotations):
            raise ValueError(f"rotations must be a non-empty list of multiples of 90 degrees, got {list(rotations)}")
        self.model, self.resize, self.precision, self.rotations = model, resize, precision, rotations
        self.family = family_of(model)

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def coarse_stride(self) -> int:
        """Network pixels per coarse cell: how far an unrefined keypoint (`match_many(refine=False)`) may be off."""
        return self.model.coarse_stride

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None,
        *,
        trusted: bool = False,
        pos_encoding: str = "auto",
        coarse_threshold: float | None = None,
        config=None,
        resize: int = 0,
        device: str | torch.device = "cpu",
        quadtree_topks: list[int] | None = None,
        precision: str = "fp32",
        rotations: Iterable[int] = (0,),
    ) -> "LoFTRMatcher":
        """The matcher of a checkpoint file (an official LoFTR, LoFTR-OT, QuadTree-LoFTR, SE2-LoFTR or Efficient
        LoFTR release, kornia's LoFTR, or one of ours: the keys choose the member, models/family.py), or of
        seeded random weights when `checkpoint` is None (pipeline checks only). `config`: the base
        configuration (a checkpoint of ours brings its own; the member's official one otherwise); the options
        are `WeightOptions`' and the class's.

        trusted: allow pickled objects besides tensors (only for files you trust). FileNotFoundError or
        CheckpointError naming the file when it cannot be read or does not fit the model; ValueError for
        precision bf16 on a CPU without bfloat16 instructions (`checked_precision`).
        """
        checked_precision(precision, device)  # before the file is read
        contents = None if checkpoint is None else read_checkpoint(checkpoint, trusted=trusted)
        state_dict = None if contents is None else state_dict_of(contents)
        stored = None
        if contents is not None:  # checked and bounded before a model is built from it: a small file may
            schema = family_for_weights(state_dict or {}).config_type  # declare a huge model
            stored = stored_model_config(contents, checkpoint, schema)
        if stored is not None and config is None:  # one of ours: its own architecture and encoding
            config = stored
            if pos_encoding == "auto":
                pos_encoding = family_of(config).positional_encoding(config) or pos_encoding
        topks = None if quadtree_topks is None else tuple(quadtree_topks)
        options = WeightOptions(pos_encoding, coarse_threshold, topks)
        try:
            if state_dict is not None:
                check_fits_unbuilt(state_dict, config, options)
            model = model_for_weights(state_dict, config, options)
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {checkpoint}: {error}") from None
        except ValueError as error:
            if stored is None:  # the caller's config
                raise
            raise CheckpointError(f"checkpoint {checkpoint}: its stored model config: {error}") from None
        return cls(model.to(device), resize, precision, rotations)

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

    def match(self, image0, image1) -> Matches:
        """The matches of two images (anything `utils.images.as_grayscale` takes: paths, gray or RGB numpy
        arrays, tensors): float32 keypoints (N, 2) (x, y) in each image's own pixels and coarse confidences
        (N,), readable as fields or by key (`result["keypoints0"]`). Any image size works. ImageTooLargeError
        first when the pair cannot fit the device (`check_memory`); CoarseCellTooSmallError (an
        ImageTooSmallError) when an image is smaller than one coarse cell once resized; ValueError naming an
        input that is no image."""
        return self.match_many([image0], image1, ["image0"])[0]

    def match_many(self, images0: list, image1, names: list[str] | None = None, refine: bool = True
                   ) -> list[Matches]:
        """`[match(image0, image1) for image0 in images0]` in one forward per rotation: the images 0 (any sizes;
        what `match` takes) resized as `match` resizes them, padded with black to the bottom and right to one
        size, with the masks that keep the model off the padding (each image's features are computed on its own
        region, no match falls in the padding), against image 1 repeated. The affine simulation's batches of
        views (models/affine.py). The same matches as `match` up to float rounding of the batched forward.
        names: of the images 0 in errors (default images0[k]). refine False: the coarse matches alone, each
        keypoint a coarse cell's pixel (up to `coarse_stride` pixels off), the fine stage skipped."""
        names = names or [f"images0[{index}]" for index in range(len(images0))]
        grays0 = [as_grayscale(image, name) for image, name in zip(images0, names)]
        gray1 = as_grayscale(image1, "image1")
        for gray0 in grays0:
            self.check_memory(gray0.shape, gray1.shape)
        best, best_scores = [None] * len(grays0), [-1.0] * len(grays0)
        for degrees in self.rotations:
            turns = degrees // 90 % 4
            turned = np.ascontiguousarray(np.rot90(gray1, turns)) if turns else gray1
            for index, matches in enumerate(self._match_many(grays0, turned, names, refine)):
                score = float(matches.confidence.sum())
                if score > best_scores[index]:
                    matches.keypoints1 = unturn(matches.keypoints1, turns, gray1.shape)
                    best[index], best_scores[index] = matches, score
        return best

    def match_pairs(self, pairs: Iterable[tuple[str, str]], image_root: str | Path = ".",
                    progress: bool = True) -> dict[tuple[str, str], Matches]:
        """{(name0, name1): matches} for image names relative to `image_root`, with a progress bar on stderr
        (`progress`). The images of the last few pairs are kept decoded: pairs listed image by image (every
        pair of one image, then the next) read each image about once."""
        pairs, root = list(pairs), Path(image_root)

        @lru_cache(maxsize=IMAGES_KEPT)
        def image(name: str) -> np.ndarray:
            return as_grayscale(root / name, name)

        return {(name0, name1): self.match(image(name0), image(name1))
                for name0, name1 in tqdm(pairs, desc="matching", unit="pair", disable=not progress)}

    def _network_input(self, image: np.ndarray, name: str, index: int) -> tuple[torch.Tensor, tuple[float, float]]:
        """(H, W) uint8 `image` resized by `self.resize` and to the member's input multiple: (h, w) float in
        [0, 1] on the model's device, and the factors (x, y) from its pixels back to the given ones."""
        check_grayscale(image, name)
        resized, scale = resize_longer_side(image, self.resize)
        resized, scale = _to_multiple(resized, scale, self.family.input_multiple)
        if min(resized.shape) < self.model.coarse_stride:
            raise CoarseCellTooSmallError(index, (resized.shape[1], resized.shape[0]), self.model.coarse_stride)
        device = next(self.model.parameters()).device
        return torch.from_numpy(resized).to(device, torch.float32) / 255, scale

    def _match_many(self, images0: list[np.ndarray], image1: np.ndarray, names: list[str], refine: bool = True
                    ) -> list[Matches]:
        """(H, W) uint8 images 0, each against image 1, in one forward (see `match_many`); keypoints scaled back
        to the given pixels."""
        model = self.model
        inputs0 = [self._network_input(image, name, 0) for image, name in zip(images0, names)]
        input1, scale1 = self._network_input(image1, "image1", 1)
        count = len(inputs0)
        height, width = (max(image.shape[axis] for image, _ in inputs0) for axis in (0, 1))
        stacked = input1.new_zeros(count, 1, height, width)  # black padding, bottom and right
        valid = torch.zeros(count, height, width, dtype=torch.bool, device=input1.device)
        for index, (image, _) in enumerate(inputs0):
            stacked[index, 0, :image.shape[0], :image.shape[1]] = image
            valid[index, :image.shape[0], :image.shape[1]] = True
        # image 1 repeated without copies: the models compute its backbone features once (models/inputs.repeated)
        batch = {"image0": stacked, "image1": input1.expand(count, 1, *input1.shape),
                 "scale0": torch.tensor([scale for _, scale in inputs0], dtype=torch.float32, device=input1.device),
                 "scale1": torch.tensor([scale1] * count, dtype=torch.float32, device=input1.device)}
        if not bool(valid.all()):
            batch["mask0"] = valid
        dtype = PRECISIONS[self.precision]
        autocast = nullcontext() if dtype is None else torch.autocast(input1.device.type, dtype=dtype)
        with _eval_mode(model), torch.inference_mode(), autocast:
            result = model(batch, refine=refine)
        keypoints0, keypoints1, confidence, index = (value.float().cpu().numpy() if value.is_floating_point()
                                                     else value.cpu().numpy() for value in
                                                     (result.keypoints0, result.keypoints1, result.confidence,
                                                      result.batch_index))
        return [Matches(keypoints0[index == k], keypoints1[index == k], confidence[index == k]) for k in range(count)]


class ResizedMatcher:
    """A matcher that takes images as given (`inner`: (H, W) uint8 in, keypoints in their pixels out, as the
    affine simulation) behind the Python API's front door: images as users hold them (what `as_grayscale`
    takes), both resized once by the resize rule to the longer side `resize` (0: as given), keypoints scaled
    back to the original pixels (x times original width / resized width, as `LoFTRMatcher`). Resizing the
    pair once, before the views are simulated, keeps the views' geometry: resizing each view and image 1 to one
    longer side would scale them differently."""

    def __init__(self, inner, resize: int):
        check_number("resize", resize, 0, integer=True)  # pixels; 0: as given
        self.inner, self.resize = inner, resize

    @property
    def name(self) -> str:
        return self.inner.name

    def match(self, image0, image1) -> Matches:
        """The inner matcher's matches of the pair, keypoints (N, 2) float64 in the original pixels of each image."""
        resized = [resize_longer_side(as_grayscale(image, name), self.resize)
                   for image, name in ((image0, "image0"), (image1, "image1"))]
        matches = self.inner.match(resized[0][0], resized[1][0])
        (_, scale0), (_, scale1) = resized
        return Matches(*(np.asarray(points, np.float64).reshape(-1, 2) * np.array(scale)
                         for points, scale in ((matches.keypoints0, scale0), (matches.keypoints1, scale1))),
                       np.asarray(matches.confidence).reshape(-1))


def affine_config(affine) -> AffineSimulationConfig | None:
    """load_matcher's `affine`: None or False (no simulation), True (the defaults), a dict of
    AffineSimulationConfig's fields or one; ValueError naming `affine` or the field otherwise."""
    if affine is None or affine is False:
        return None
    if affine is True:
        return AffineSimulationConfig()
    if isinstance(affine, AffineSimulationConfig):
        return affine
    if isinstance(affine, dict):
        unknown = sorted(set(affine) - {field.name for field in fields(AffineSimulationConfig)})
        if unknown:
            raise ValueError(f"affine: unknown option(s) {', '.join(map(str, unknown))}; valid: "
                             f"{', '.join(field.name for field in fields(AffineSimulationConfig))}")
        return AffineSimulationConfig(**affine)
    raise ValueError(f"affine={affine!r}: must be true, false, a dict of options or an AffineSimulationConfig")


def load_matcher(checkpoint: str | Path | None, *, device: str | torch.device = "cpu", resize: int = 640,
                 threshold: float | None = None, precision: str = "fp32", rotations: Iterable[int] | None = None,
                 trusted: bool = False, pos_encoding: str = "auto", quadtree_topks: list[int] | None = None,
                 affine: AffineSimulationConfig | dict | bool | None = None) -> LoFTRMatcher | ResizedMatcher:
    """The matcher of a checkpoint: ours (train.py's last.ckpt or best.ckpt), or an official release of any
    member (LoFTR outdoor/indoor, LoFTR-OT, QuadTree-LoFTR, SE2-LoFTR, Efficient LoFTR, kornia's LoFTR);
    None: seeded random weights, to try a pipeline.

    resize: each image's longer side for the network, aspect kept (LoFTR's 640 by default; 0: as given);
    keypoints come back in the original pixels either way. threshold: the coarse confidence a match needs
    (None: the model's own, 0.2 for the official ones). device: "cpu", "cuda", "cuda:N", "mps". precision:
    "fp32", "bf16" or "fp16" (autocast). rotations: e.g. [0, 90, 180, 270] to match rotated photos
    (`LoFTRMatcher`). trusted: allow a checkpoint with pickled objects (only files you trust);
    pos_encoding, quadtree_topks: `WeightOptions`. affine: match severe tilts by affine simulation
    (models/affine.py, IMAS): True for the defaults, or an AffineSimulationConfig or a dict of its fields
    (e.g. {"tolerance": 2.0, "max_tilt": 8}); both images are then resized once by `resize`, the simulated
    views of image 0 are matched against image 1 as they are (in batches), and the merged, filtered matches
    come back in the original pixels; `matcher.inner.last_stats` says how many views and seconds the last pair
    took. ValueError naming a bad option, FileNotFoundError or CheckpointError naming the file."""
    check_number("threshold", threshold, 0, 1, optional=True)  # a confidence
    check_number("resize", resize, 0, integer=True)  # pixels; 0: as given
    simulation = affine_config(affine)
    matcher = LoFTRMatcher.from_checkpoint(
        checkpoint, trusted=trusted, pos_encoding=pos_encoding, coarse_threshold=threshold,
        resize=resize if simulation is None else 0, device=checked_device(device), quadtree_topks=quadtree_topks,
        precision=precision, rotations=(0,) if rotations is None else rotations)
    if simulation is None:
        return matcher
    return ResizedMatcher(AffineSimulation(matcher, simulation), resize)
