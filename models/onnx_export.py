"""A family member exported to ONNX whole, for ONNX Runtime (and what runs ONNX): backbone, coarse matching
(mutual nearest neighbours above the threshold) and both fine stages, with dynamic image height and width and a
data-dependent number of matches.

    export_onnx(model, path, example_size=(480, 640), opset=None)

The graph takes `image0`, `image1`: (1, 1, H, W) float32 grayscale in [0, 1], H and W multiples of the model's
`input_multiple` (each image its own size), and gives `keypoints0`, `keypoints1` (M, 2) in the input's pixels
and `confidence` (M,); M may be 0. The coarse threshold is the model's, fixed in the graph. Exported through
torch.export (`torch.onnx.export(dynamo=True)`): the model's code takes that path itself where it would
otherwise choose work by the data (models/eloftr.py's fine map: whole, not the tiles that hold matches).
Efficient LoFTR only, so far.
"""

from pathlib import Path

import torch
from torch import nn

from .eloftr import EfficientLoFTR

INPUTS, OUTPUTS = ("image0", "image1"), ("keypoints0", "keypoints1", "confidence")
MAX_SIDE_MULTIPLES = 256  # sides up to 256 input multiples (8192 px at 32): a bound torch.export asks for


class _Matches(nn.Module):
    """The model as a graph of two image tensors to three match tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor):
        result = self.model({"image0": image0, "image1": image1})
        return result.keypoints0, result.keypoints1, result.confidence


def export_onnx(model: nn.Module, path: str | Path, example_size: tuple[int, int] = (480, 640),
                opset: int | None = None) -> None:
    """Write `model` (in eval mode) to the ONNX file `path`, traced on two random images of `example_size`
    (height, width); the sizes stay dynamic. ValueError for a model this export does not cover, or an example
    size that is not a multiple of its input multiple."""
    if not isinstance(model, EfficientLoFTR):
        raise ValueError(f"ONNX export covers Efficient LoFTR so far, not {type(model).__name__}")
    multiple = model.input_multiple
    if any(side % multiple or side <= 0 for side in example_size):
        raise ValueError(f"example_size {example_size}: sides must be positive multiples of {multiple}")
    dims = {}
    for name in INPUTS:  # each image's height and width, each a multiple of the input multiple
        dims[name] = {2: multiple * torch.export.Dim(f"{name}_rows", min=1, max=MAX_SIDE_MULTIPLES),
                      3: multiple * torch.export.Dim(f"{name}_columns", min=1, max=MAX_SIDE_MULTIPLES)}
    example = tuple(torch.rand(1, 1, *example_size) for _ in INPUTS)
    model = model.eval()
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(_Matches(model), example, str(path), dynamo=True, external_data=False,
                          dynamic_shapes=(dims["image0"], dims["image1"]), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), opset_version=opset)
