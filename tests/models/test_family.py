"""The family's registry (models/family.py): the member is told from a config, a model or a state dict of any
naming, and nothing outside models/ decides by a model's class."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from data.synthetic.texture import make_texture
from losses.eloftr_loss import EfficientLoFTRLoss
from losses.for_model import loss_for
from losses.loftr_loss import LoFTRLoss, LossConfig
from models.eloftr import EfficientLoFTR, EfficientLoFTRConfig
from models.family import FAMILIES, build_model, family_for_weights, family_of, model_for_weights
from models.loftr import LoFTR, LoFTRConfig
from tests.helpers import tiny_eloftr_config, tiny_model_config

ROOT = Path(__file__).resolve().parents[2]
MODEL_TYPES = "|".join(t.__name__ for f in FAMILIES.values() for t in (f.config_type, f.model_type))


@pytest.mark.parametrize(("config", "name", "model_type", "loss_type", "multiple"), [
    (tiny_model_config(), "loftr", LoFTR, LoFTRLoss, 1),
    (tiny_eloftr_config(), "eloftr", EfficientLoFTR, EfficientLoFTRLoss, 32),
])
def test_a_member_is_told_by_its_config_its_model_and_its_weights(config, name, model_type, loss_type, multiple):
    model = build_model(config)
    assert type(model) is model_type
    assert family_of(config).name == family_of(model).name == name
    assert family_of(model).input_multiple == multiple
    assert type(loss_for(model, LossConfig())) is loss_type
    weights = model.state_dict()
    for prefix in ("", "matcher.", "model."):  # a plain state dict, an official Lightning file, our Lightning file
        assert family_for_weights({f"{prefix}{k}": v for k, v in weights.items()}).name == name


def test_weights_build_their_member_in_its_inference_form():
    torch.manual_seed(0)
    trained = build_model(tiny_eloftr_config())  # RepVGG in its multi-branch training form
    model = model_for_weights(trained.state_dict(), tiny_eloftr_config())
    assert type(model) is EfficientLoFTR and not model.training
    assert any(".fused." in key for key in model.state_dict())  # folded for inference
    official = model_for_weights({f"matcher.{k}": v for k, v in build_model(tiny_model_config()).state_dict().items()},
                                 tiny_model_config())
    assert type(official) is LoFTR and family_of(official).positional_encoding(official.config) == "legacy"
    # a config of the other member is not used for weights it does not describe
    assert type(model_for_weights(None, EfficientLoFTRConfig())) is EfficientLoFTR
    assert type(model_for_weights(None, LoFTRConfig())) is LoFTR


def test_something_else_is_refused_naming_the_schemas():
    with pytest.raises(ValueError, match="not a EfficientLoFTRConfig or LoFTRConfig.*loftr_schema or eloftr_schema"):
        build_model({"backbone": {}})


def test_nothing_outside_models_decides_by_a_models_class():
    """The registry is the one place that tells the members apart: no isinstance on a member's model or config
    type, and no getattr with a default for what only one member has, anywhere else."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in ("models", "tests", ".venv", "outputs") or "site-packages" in relative.parts:
            continue
        text = path.read_text()
        for pattern in (rf"isinstance\([^)]*\b({MODEL_TYPES})\b", r"getattr\([^)]*(input_multiple|query_radius|"
                        r"temp_bug_fix|export)"):
            offenders += [f"{relative}: {match.group(0)}" for match in re.finditer(pattern, text)]
    assert offenders == []


@pytest.mark.parametrize("config", [tiny_model_config(), tiny_eloftr_config()], ids=["loftr", "eloftr"])
def test_the_unbuilt_fit_check_is_silent(config, recwarn):
    """check_fits_unbuilt loads the weights into a model on the meta device; torch warns once per parameter
    that such a copy is a no-op, hundreds of lines on the stderr of every checkpoint a user loads."""
    from models.family import WeightOptions, check_fits_unbuilt

    check_fits_unbuilt(build_model(config).state_dict(), config, WeightOptions())
    assert not [str(warning.message) for warning in recwarn if "meta parameter" in str(warning.message)]


@pytest.mark.parametrize("config", [tiny_model_config(), tiny_eloftr_config()], ids=["loftr", "eloftr"])
def test_coarse_matches_alone_are_the_refined_ones_before_the_fine_stage(config):
    """refine=False (the affine simulation's screening): the same coarse matches as a full forward, each keypoint
    its cell's pixel, which the fine stage then moves by less than a cell; no fine stage output."""
    torch.manual_seed(0)
    config.match_coarse.threshold = 0.0  # random weights: low confidences
    model = build_model(config).eval()
    image0 = make_texture(96, 128, seed=3)
    batch = {"image0": torch.from_numpy(image0)[None, None].float() / 255,
             "image1": torch.from_numpy(np.ascontiguousarray(image0[4:, 8:]))[None, None].float() / 255}
    batch["image1"] = torch.nn.functional.pad(batch["image1"], (0, 8, 0, 4))
    with torch.no_grad():
        refined, coarse = model(batch), model(batch, refine=False)
    assert coarse.fine is None and len(coarse.keypoints0) > 0
    assert torch.equal(coarse.batch_index, refined.batch_index)
    assert torch.equal(coarse.confidence, refined.confidence)
    for points, cells, grid in ((coarse.keypoints0, refined.coarse.index0, refined.coarse_grid0),
                                (coarse.keypoints1, refined.coarse.index1, refined.coarse_grid1)):
        expected = torch.stack([cells % grid[1], cells // grid[1]], 1).float() * model.coarse_stride
        assert torch.equal(points, expected)
    stride = model.coarse_stride
    assert (refined.keypoints0 - coarse.keypoints0).abs().max() < stride
    assert (refined.keypoints1 - coarse.keypoints1).abs().max() < stride
