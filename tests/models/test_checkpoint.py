"""Loading official LoFTR checkpoints, kornia state dicts and refusing bad files."""

import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, read_state_dict
from models.loftr import LoFTR, LoFTRConfig

kornia_loftr = pytest.importorskip("kornia.feature.loftr.loftr")


@pytest.fixture(scope="module")
def official_state_dict():
    """Random weights under the official names (kornia keeps them)."""
    torch.manual_seed(0)
    return kornia_loftr.LoFTR(pretrained=None).state_dict()


def test_official_lightning_checkpoint_loads(tmp_path, official_state_dict):
    path = tmp_path / "outdoor_ds.ckpt"
    torch.save({"epoch": 29, "state_dict": {f"matcher.{k}": v for k, v in official_state_dict.items()}}, path)
    model = load_checkpoint(LoFTR(), path)
    assert torch.equal(model.backbone.lateral3.weight, official_state_dict["backbone.layer3_outconv.weight"])
    assert torch.equal(
        model.backbone.merge1.norm.running_var, official_state_dict["backbone.layer1_outconv2.1.running_var"]
    )


def test_plain_kornia_state_dict_loads(tmp_path, official_state_dict):
    path = tmp_path / "kornia.pth"
    torch.save(official_state_dict, path)
    model = load_checkpoint(LoFTR(), path)
    assert torch.equal(
        model.loftr_fine.layers[1].mlp[2].weight, official_state_dict["loftr_fine.layers.1.mlp.2.weight"]
    )


def test_sinkhorn_checkpoint_needs_its_bin_score(tmp_path, official_state_dict):
    path = tmp_path / "ds_weights_into_ot_model.ckpt"
    torch.save({"state_dict": official_state_dict}, path)
    config = LoFTRConfig()
    config.match_coarse.match_type = "sinkhorn"
    with pytest.raises(CheckpointError, match=r"missing \(1\): coarse_matching.bin_score"):
        load_checkpoint(LoFTR(config), path)


def test_mismatched_and_unexpected_keys_are_all_listed(tmp_path, official_state_dict):
    state = dict(official_state_dict)
    state["backbone.conv1.weight"] = torch.zeros(64, 1, 7, 7)
    state["extra_head.weight"] = torch.zeros(3)
    del state["loftr_coarse.layers.0.q_proj.weight"]
    path = tmp_path / "bad.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(LoFTR(), path)
    message = str(error.value)
    assert str(path) in message
    assert "loftr_coarse.layers.0.q_proj.weight" in message
    assert "extra_head.weight" in message
    assert "backbone.conv1.weight: checkpoint (64, 1, 7, 7) vs model (128, 1, 7, 7)" in message


class NotATensor:
    pass


def test_pickled_objects_are_refused_unless_trusted(tmp_path, official_state_dict):
    path = tmp_path / "with_objects.ckpt"
    torch.save({"state_dict": official_state_dict, "hyper_parameters": NotATensor()}, path)
    with pytest.raises(
        CheckpointError, match=r"not plain tensors \(tests.models.test_checkpoint.NotATensor\).*weights_only"
    ):
        read_state_dict(path)
    assert set(read_state_dict(path, trusted=True)) == set(official_state_dict)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        read_state_dict(tmp_path / "nowhere.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.ckpt"):
        read_state_dict(corrupt)
