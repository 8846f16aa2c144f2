"""Attention kernels: exact properties shared by linear and softmax attention, and padding masks."""

import pytest
import torch

from models.transformer.attention import FullAttention, LinearAttention, build_attention

KERNELS = [LinearAttention(), FullAttention()]
IDS = ["linear", "full"]


def qkv(n=2, length=11, source=13, heads=4, dim=8):
    return (torch.randn(n, length, heads, dim, dtype=torch.float64),
            torch.randn(n, source, heads, dim, dtype=torch.float64),
            torch.randn(n, source, heads, dim, dtype=torch.float64))


@pytest.mark.parametrize("attention", KERNELS, ids=IDS)
def test_equivariant_to_query_order_and_invariant_to_key_order(attention):
    q, k, v = qkv()
    out = attention(q, k, v)
    perm_q, perm_k = torch.randperm(q.shape[1]), torch.randperm(k.shape[1])
    assert torch.allclose(attention(q[:, perm_q], k, v), out[:, perm_q], atol=1e-12)
    assert torch.allclose(attention(q, k[:, perm_k], v[:, perm_k]), out, atol=1e-12)


@pytest.mark.parametrize("attention", KERNELS, ids=IDS)
def test_identical_keys_average_the_values(attention):
    """With all keys equal every key gets the same weight in both kernels: the output is the mean value."""
    q, k, v = qkv()
    k = k[:, :1].expand_as(k)
    expected = v.mean(dim=1, keepdim=True).expand(-1, q.shape[1], -1, -1)
    assert torch.allclose(attention(q, k, v), expected, atol=1e-10)


@pytest.mark.parametrize("attention", KERNELS, ids=IDS)
def test_padded_keys_are_ignored_and_padded_queries_are_zero(attention):
    q, k, v = qkv()
    q_mask = torch.arange(11)[None].expand(2, -1) < torch.tensor([[8], [11]])
    k_mask = torch.arange(13)[None].expand(2, -1) < torch.tensor([[9], [13]])
    garbage = k.clone()
    garbage[0, 9:] = 1e3  # whatever sits in the padding must not matter
    out = attention(q, garbage, v, q_mask, k_mask)
    alone = attention(q[:1, :8], k[:1, :9], v[:1, :9])
    assert torch.allclose(out[0, :8], alone[0], atol=1e-10)
    assert out[0, 8:].abs().max() == 0
    assert torch.allclose(out[1], attention(q[1:], k[1:], v[1:])[0], atol=1e-10)


def test_full_attention_is_softmax_attention():
    q, k, v = qkv()
    weights = torch.softmax(torch.einsum("nlhd,nshd->nhls", q, k) / q.shape[-1] ** 0.5, dim=-1)
    expected = torch.einsum("nhls,nshd->nlhd", weights, v)
    assert torch.allclose(FullAttention()(q, k, v), expected, atol=1e-10)


def test_linear_attention_is_the_elu_kernel_formula():
    q, k, v = qkv()
    def phi(x):
        return torch.nn.functional.elu(x) + 1
    weights = torch.einsum("nlhd,nshd->nhls", phi(q), phi(k))
    expected = torch.einsum("nhls,nshd->nlhd", weights / weights.sum(-1, keepdim=True), v)
    assert torch.allclose(LinearAttention()(q, k, v), expected, atol=1e-6)


def test_unknown_attention_names_the_choices():
    with pytest.raises(ValueError, match="full.*linear"):
        build_attention("flash")
