"""Efficient LoFTR exported to ONNX whole (models/onnx_export.py) matches as the PyTorch model does, in ONNX
Runtime, at sizes other than the one it was traced at; a pair with no match gives zero matches."""

import numpy as np
import pytest
import torch

from models.eloftr import EfficientLoFTR
from models.loftr import LoFTR
from models.onnx_export import export_onnx
from tests.helpers import calibrate_norms_, shifted_pair, tiny_eloftr_config, tiny_model_config

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = EfficientLoFTR(tiny_eloftr_config())
    batch = {key: image.float() for key, image in shifted_pair(256, 320).items()}
    calibrate_norms_(model, lambda: model(batch))  # random RepVGG weights match by the hundreds once calibrated
    path = tmp_path_factory.mktemp("onnx") / "eloftr.onnx"
    export_onnx(model, path, example_size=(256, 320))
    return model, onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("height, width", [(192, 256), (320, 448)])  # neither is the traced 256x320
def test_onnx_runtime_gives_pytorchs_matches(exported, height, width):
    model, session = exported
    pair = {key: image.float() for key, image in shifted_pair(height, width).items()}
    with torch.no_grad():
        result = model(pair)
    keypoints0, keypoints1, confidence = session.run(None, {key: image.numpy() for key, image in pair.items()})
    ours = torch.cat([result.keypoints0, result.keypoints1], 1).numpy()
    theirs = np.concatenate([keypoints0, keypoints1], 1)
    assert len(ours) >= 50 and abs(len(theirs) - len(ours)) <= 0.01 * len(ours)
    distance = np.linalg.norm(ours[:, None] - theirs[None], axis=-1).min(1)  # to the nearest ONNX match
    assert (distance < 0.05).mean() >= 0.99
    assert confidence.shape == (len(theirs),) and confidence.dtype == np.float32


def test_a_pair_without_matches_gives_zero_matches(exported):
    """Blank images: no coarse confidence above the threshold, so M = 0 through both fine stages."""
    _, session = exported
    blank = np.zeros((1, 1, 192, 256), np.float32)
    keypoints0, keypoints1, confidence = session.run(None, {"image0": blank, "image1": blank})
    assert keypoints0.shape == keypoints1.shape == (0, 2) and confidence.shape == (0,)


def test_what_the_export_does_not_cover_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Efficient LoFTR so far"):
        export_onnx(LoFTR(tiny_model_config()), tmp_path / "loftr.onnx")
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(EfficientLoFTR(tiny_eloftr_config()), tmp_path / "odd.onnx", example_size=(250, 320))
    assert not list(tmp_path.iterdir())
