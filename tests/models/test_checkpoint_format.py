"""Which LoFTR a state dict needs, from its keys alone (models/checkpoint.py)."""

import pytest
import torch

from models.checkpoint import needs_legacy_encoding, needs_sinkhorn

OURS = {"backbone.conv1.weight": torch.zeros(1)}
OFFICIAL = {"matcher.backbone.conv1.weight": torch.zeros(1)}
OPTIMAL_TRANSPORT = {**OFFICIAL, "matcher.coarse_matching.bin_score": torch.tensor(1.0)}


def test_official_lightning_keys_need_the_legacy_encoding_unless_told_otherwise():
    assert needs_legacy_encoding(OFFICIAL) and not needs_legacy_encoding(OURS)
    assert not needs_legacy_encoding({}) and not needs_legacy_encoding(OFFICIAL, "fixed")
    assert needs_legacy_encoding(OURS, "legacy")
    with pytest.raises(ValueError, match="pos_encoding must be 'auto', 'legacy' or 'fixed', got 'new'"):
        needs_legacy_encoding(OURS, "new")


def test_a_dustbin_score_means_sinkhorn():
    assert needs_sinkhorn(OPTIMAL_TRANSPORT) and needs_sinkhorn({"coarse_matching.bin_score": torch.tensor(1.0)})
    assert not needs_sinkhorn(OFFICIAL) and not needs_sinkhorn({})
