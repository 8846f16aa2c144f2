"""The RepVGG backbone of Efficient LoFTR: re-parameterisation is exact, the grids are the ceil grids, and with
the same weights it equals upstream's (efficientloftr-inference, the official code packaged) before and after
re-parameterisation, official key names converted by models/checkpoint.py."""


import torch

from models.backbone.repvgg import RepVGG, RepVGGBlock, RepVGGConfig
from models.checkpoint import convert_state_dict
from tests.eloftr_helpers import randomize_norms_, upstream_eloftr

SMALL = RepVGGConfig(block_dims=(8, 16, 32), stage_blocks=(2, 2, 2))


def close(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float = 1e-5) -> bool:
    """Equal up to float32 rounding, relative to the map's largest value: random weights without trained
    normalisation grow the activations through 20 blocks, to 1e5 at 1/8."""
    return bool((ours - theirs).abs().max() <= tolerance * theirs.abs().max().clamp(min=1))


def test_a_block_folds_into_one_convolution_exactly():
    torch.manual_seed(0)
    for in_channels, out_channels, stride in ((6, 6, 1), (6, 10, 1), (6, 6, 2)):
        block = randomize_norms_(RepVGGBlock(in_channels, out_channels, stride)).double().eval()
        x = torch.randn(2, in_channels, 13, 11, dtype=torch.float64)
        before = block(x)
        block.reparameterize()
        assert [type(m) for m in block.modules()] == [RepVGGBlock, torch.nn.Conv2d]
        assert torch.allclose(block(x), before, atol=1e-12, rtol=0)
        assert (in_channels == out_channels and stride == 1) or before.shape[1] == out_channels


def test_the_backbone_is_unchanged_by_reparameterisation_and_gives_ceil_grids():
    torch.manual_seed(0)
    model = randomize_norms_(RepVGG(SMALL)).double().eval()
    image = torch.rand(1, 1, 61, 83, dtype=torch.float64)
    before = model(image)
    assert before.half.shape == (1, 8, 31, 42) and before.quarter.shape == (1, 16, 16, 21)
    assert before.coarse.shape == (1, 32, 8, 11)  # ceil(61 / 8), ceil(83 / 8)
    after = model.reparameterize()(image)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for name in ("half", "quarter", "coarse"):
        assert torch.allclose(getattr(after, name), getattr(before, name), atol=1e-10, rtol=0), name


def test_the_official_layout_and_its_parity_with_upstream_on_the_same_weights():
    eloftr = upstream_eloftr()
    torch.manual_seed(0)
    upstream = eloftr.LoFTR(eloftr.full_config()).backbone
    randomize_norms_(upstream, seed=1).eval()
    ours = RepVGG().eval()
    weights = convert_state_dict({f"backbone.{k}": v for k, v in upstream.state_dict().items()})
    ours.load_state_dict({k.removeprefix("backbone."): v for k, v in weights.items()})  # strict: every key fits
    image = torch.rand(1, 1, 96, 128)
    with torch.no_grad():
        theirs, mine = upstream(image), ours(image)
        for key, name in (("feats_x1", "half"), ("feats_x2", "quarter"), ("feats_c", "coarse")):
            assert close(getattr(mine, name), theirs[key]), name
        # both re-parameterised: the folded weights are upstream's, under its deploy-mode key names
        eloftr.reparameter(type("Matcher", (), {"backbone": upstream, "fine_preprocess": _NoFine()})())
        ours.reparameterize()
        deployed = convert_state_dict({f"backbone.{k}": v for k, v in upstream.state_dict().items()})
        fused = {k.removeprefix("backbone."): v for k, v in deployed.items()}
        assert set(fused) == set(ours.state_dict())
        for key, value in ours.state_dict().items():
            assert close(value, fused[key]), key
        theirs, mine = upstream(image), ours(image)
        for key, name in (("feats_x1", "half"), ("feats_x2", "quarter"), ("feats_c", "coarse")):
            assert close(getattr(mine, name), theirs[key]), name


class _NoFine:
    """upstream's `reparameter` also visits the fine stage's blocks; the backbone alone has none."""

    layer2_outconv2: tuple = ()
    layer1_outconv2: tuple = ()
