"""Efficient LoFTR's coarse attention: RoPE's relative-position property, the pooling and upsampling of
aggregated attention, masks, and parity with upstream's layer (efficientloftr-inference) on the same weights."""

import pytest
import torch

from models.transformer.aggregated import AggregatedAttentionLayer
from models.transformer.position import RotaryPositionEncoding
from tests.eloftr_helpers import upstream_eloftr


def test_rope_dot_products_depend_on_relative_position_only():
    rope = RotaryPositionEncoding(16, table_dtype=torch.float64)
    torch.manual_seed(0)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    turned_q, turned_k = (rope(v.expand(1, 9, 9, 16))[0] for v in (q, k))  # (9, 9, 16): v at every position

    def score(a, b):
        return float(turned_q[a] @ turned_k[b])

    assert score((2, 3), (4, 1)) == pytest.approx(score((5, 6), (7, 4)), abs=1e-12)  # same offset (2, -2)
    assert score((0, 0), (0, 0)) == pytest.approx(float(q @ k), abs=1e-12)  # no offset: no turn
    assert score((2, 3), (4, 1)) != pytest.approx(score((2, 3), (4, 2)), abs=1e-6)
    assert torch.allclose(turned_q.norm(dim=-1), q.norm().expand(9, 9))  # a rotation keeps lengths


def test_pooling_and_upsampling_on_a_constant_map():
    """A map constant in space: every pooled query and key is that constant, so attention returns it, and
    the upsampled message is the same everywhere; the layer's output is then constant too."""
    torch.manual_seed(0)
    layer = AggregatedAttentionLayer(d_model=16, num_heads=2).double().eval()
    x = torch.randn(1, 16, 1, 1, dtype=torch.float64).expand(1, 16, 8, 12).contiguous()
    out = layer(x, x)
    assert out.shape == (1, 16, 8, 12)
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-12)
    with pytest.raises(ValueError, match="not a multiple of the query pooling 4"):
        layer(x[:, :, :6], x)


def test_padding_changes_nothing_on_the_image():
    """A map padded at the bottom and right, with its masks, gives the unpadded map's result on its cells
    (the pooled blocks lie wholly on the image or wholly on the padding), up to its border."""
    torch.manual_seed(0)
    layer = AggregatedAttentionLayer(d_model=16, num_heads=2, rope=RotaryPositionEncoding(16)).double().eval()
    x, source = torch.randn(1, 16, 8, 8, dtype=torch.float64), torch.randn(1, 16, 12, 8, dtype=torch.float64)
    padded_x = torch.nn.functional.pad(x, (0, 4, 0, 4), value=3.0)
    padded_source = torch.nn.functional.pad(source, (0, 8, 0, 0), value=-2.0)
    x_mask = torch.zeros(1, 12, 12, dtype=torch.bool)
    x_mask[:, :8, :8] = True
    source_mask = torch.zeros(1, 12, 16, dtype=torch.bool)
    source_mask[:, :, :8] = True
    plain = layer(x, source)
    masked = layer(padded_x, padded_source, x_mask, source_mask)
    assert torch.allclose(masked[:, :, :8, :8], plain, atol=1e-10)


@pytest.mark.parametrize("kind", ["self", "cross", "masked cross"])
def test_parity_with_upstream_on_the_same_weights(kind):
    upstream_eloftr()
    from efficientloftr_inference.loftr.loftr_module.transformer import AG_RoPE_EncoderLayer

    torch.manual_seed(0)
    theirs = AG_RoPE_EncoderLayer(256, 8, 4, 4, no_flash=False, rope=kind == "self", npe=[832] * 4, fp32=True).eval()
    ours = AggregatedAttentionLayer(256, 8, rope=RotaryPositionEncoding(256) if kind == "self" else None).eval()
    ours.load_state_dict(theirs.state_dict())  # strict: the same names
    x, source = torch.randn(2, 256, 16, 24), torch.randn(2, 256, 16, 24)
    if kind == "self":
        source = x
    if kind != "masked cross":
        with torch.no_grad():
            expected, got = theirs(x, source), ours(x, source)
        assert (got - expected).abs().max() < 1e-5
        return
    # padded samples: upstream's transformer crops each sample to its valid rectangle (its batch-of-one path);
    # ours masks, and must give the cropped result on the valid cells
    valid = [((12, 24), (16, 24)), ((16, 24), (16, 20))]  # (rows, columns) of x's and source's images
    x_mask, source_mask = torch.zeros(2, 16, 24, dtype=torch.bool), torch.zeros(2, 16, 24, dtype=torch.bool)
    for sample, ((h0, w0), (h1, w1)) in enumerate(valid):
        x_mask[sample, :h0, :w0], source_mask[sample, :h1, :w1] = True, True
    with torch.no_grad():
        got = ours(x, source, x_mask, source_mask)
        for sample, ((h0, w0), (h1, w1)) in enumerate(valid):
            expected = theirs(x[sample:sample + 1, :, :h0, :w0], source[sample:sample + 1, :, :h1, :w1])
            assert (got[sample:sample + 1, :, :h0, :w0] - expected).abs().max() < 1e-5
