"""QuadTree attention against exact answers: full attention where top-K covers every key, a slow reference
written as loops over queries, padding, gradients, and no (L x S) tensor below the coarsest level."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from models.transformer.quadtree import QuadtreeAttention, QuadtreeConfig, pyramid

ALL = (10**6,) * 3  # top-K larger than any level: every key kept


def tokens(n, grid, heads=2, dim=4, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, grid[0] * grid[1], heads, dim, generator=generator, dtype=dtype)


def attention(kind, topks, dtype=torch.float64):
    module = QuadtreeAttention(QuadtreeConfig(kind=kind, topks=topks)).to(dtype)
    if kind == "B":
        with torch.no_grad():
            module.weight.copy_(torch.tensor([0.3, -0.5, 0.9][: len(topks)]))
    return module


def level_maps(x, grid, levels):
    """(N, L, H, D) -> per level (N * H, h, w, D) by plain 2x2 average pooling, finest first."""
    n, _, heads, dim = x.shape
    maps = [x.transpose(1, 2).reshape(n * heads, *grid, dim)]
    for _ in range(levels - 1):
        maps.append(F.avg_pool2d(maps[-1].permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1))
    return maps


def upsampled(x, times):
    return x.repeat_interleave(2**times, 1).repeat_interleave(2**times, 2)


def back(x, n, heads):
    """(N * H, h, w, D) -> (N, h * w, H, D)."""
    return x.reshape(n, heads, -1, x.shape[-1]).transpose(1, 2)


def test_kind_b_covering_every_key_is_the_mixture_of_full_attention_at_each_level():
    """out = sum_l softmax(w)_l * up_l(softmax(q_l k_l^T / sqrt(D)) v_l) on the 2x2-average pyramids."""
    q, k, v = tokens(2, (8, 8), seed=1), tokens(2, (8, 12), seed=2), tokens(2, (8, 12), seed=3)
    module = attention("B", ALL)
    out = module(q, k, v, query_grid=(8, 8), key_grid=(8, 12))
    qs, ks, vs = level_maps(q, (8, 8), 3), level_maps(k, (8, 12), 3), level_maps(v, (8, 12), 3)
    mix = module.weight.softmax(0)
    expected = 0
    for level in range(3):
        full = F.scaled_dot_product_attention(qs[level].flatten(1, 2), ks[level].flatten(1, 2), vs[level].flatten(1, 2))
        expected = expected + mix[2 - level] * upsampled(full.view_as(qs[level]), level)
    torch.testing.assert_close(out, back(expected, 2, 2), atol=1e-12, rtol=0)


def test_kind_a_covering_every_key_is_full_attention_with_the_tree_factored_weights():
    """out = sum_j P(j) v_0(j), P(j) = softmax_top(q_top . k_top)[anc(j)] * prod_l softmax over the four
    children of anc_{l+1}(j) of q_l . k_l: one distribution over the finest keys, nothing from coarse levels."""
    q, k, v = tokens(1, (4, 8), seed=4), tokens(1, (8, 4), seed=5), tokens(1, (8, 4), seed=6)
    out = attention("A", ALL)(q, k, v, query_grid=(4, 8), key_grid=(8, 4))
    qs, ks = level_maps(q, (4, 8), 3), level_maps(k, (8, 4), 3)
    scale = 4**-0.5
    log_p = 0
    for level in range(3):
        scores = torch.einsum("zhwd,zijd->zhwij", upsampled(qs[level], level), ks[level]) * scale
        if level == 2:
            log_p = log_p + upsampled_keys(scores.flatten(-2).log_softmax(-1).view_as(scores), level)
        else:  # softmax among each 2x2 block of siblings
            blocks = scores.unflatten(-2, (-1, 2)).unflatten(-1, (-1, 2))  # (..., i, 2, j, 2)
            siblings = blocks.transpose(-3, -2).flatten(-2).log_softmax(-1).view_as(blocks.transpose(-3, -2))
            log_p = log_p + upsampled_keys(siblings.transpose(-3, -2).reshape(scores.shape), level)
    p = log_p.exp().flatten(-2)  # (Z, h, w, S0)
    assert torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-12)
    expected = torch.einsum("zhws,zsd->zhwd", p, level_maps(v, (8, 4), 1)[0].flatten(1, 2))
    torch.testing.assert_close(out, back(expected, 1, 2), atol=1e-12, rtol=0)


def upsampled_keys(x, times):
    """(..., i, j) key maps of a level -> the finest keys' (each key's value given to its descendants)."""
    return x.repeat_interleave(2**times, -2).repeat_interleave(2**times, -1)


def slow_quadtree(qs, ks, vs, key_masks, topks, kind, mix):
    """One head, pyramids finest first ((h, w, D) maps and (h, w) key masks): each finest query walks down
    the tree on its own, with Python loops and lists."""
    top, dim = len(qs) - 1, qs[0].shape[-1]
    out = torch.zeros_like(qs[0])

    def softmax(pairs):  # [(key, score)] -> {key: weight}, padded keys weightless
        valid = [(key, s) for key, s in pairs if key_masks[level][key]]
        if not valid:
            return {key: torch.zeros((), dtype=qs[0].dtype) for key, _ in pairs}
        weights = torch.stack([s for _, s in valid]).softmax(0)
        result = {key: torch.zeros((), dtype=qs[0].dtype) for key, _ in pairs}
        result.update({key: w for (key, _), w in zip(valid, weights)})
        return result

    for r in range(qs[0].shape[0]):
        for c in range(qs[0].shape[1]):
            total = torch.zeros(dim, dtype=qs[0].dtype)
            kept, kept_weight = None, None
            for step, level in enumerate(range(top, -1, -1)):
                query = qs[level][r >> level, c >> level]
                if kept is None:
                    keys = [(i, j) for i in range(ks[level].shape[0]) for j in range(ks[level].shape[1])]
                    weight = softmax([(key, query @ ks[level][key] / dim**0.5) for key in keys])
                else:
                    keys, weight = [], {}
                    for i, j in kept:
                        children = [(2 * i + t1, 2 * j + t2) for t1 in (0, 1) for t2 in (0, 1)]
                        keys += children
                        if kind == "A":
                            siblings = softmax([(key, query @ ks[level][key] / dim**0.5) for key in children])
                            weight.update({key: w * kept_weight[(i, j)] for key, w in siblings.items()})
                    if kind == "B":
                        weight = softmax([(key, query @ ks[level][key] / dim**0.5) for key in keys])
                ranked = sorted(keys, key=lambda key: -float(weight[key]))
                kept = ranked[: topks[step]] if level > 0 else []
                kept_weight = {key: weight[key] for key in kept}
                message = sum((weight[key] * vs[level][key] for key in keys if not (kind == "A" and key in kept)),
                              torch.zeros(dim, dtype=qs[0].dtype))
                total = total + (mix[step] if kind == "B" else 1) * message
            out[r, c] = total
    return out


@pytest.mark.parametrize("kind", ["A", "B"])
def test_equals_the_slow_loop_reference(kind):
    """Small top-K ([3, 2, 2] of 4 coarse keys), padding inside the key grid (5 x 7 -> 8 x 8), float32 against
    the float64 loops: within 1e-5."""
    topks = (3, 2, 2)
    q, k, v = (tokens(1, grid, seed=s, dtype=torch.float32) for grid, s in (((8, 8), 7), ((5, 7), 8), ((5, 7), 9)))
    module = attention(kind, topks, torch.float32)
    out = module(q, k, v, query_grid=(8, 8), key_grid=(5, 7))
    mask = F.pad(torch.ones(1, 5, 7, dtype=torch.bool), (0, 1, 0, 3))
    padded = [F.pad(x.double().transpose(1, 2).reshape(2, 5, 7, 4), (0, 0, 0, 1, 0, 3)) for x in (k, v)]
    qs, _ = pyramid(q.double().transpose(1, 2).reshape(2, 8, 8, 4), torch.ones(2, 8, 8, dtype=torch.bool), 3)
    ks, key_masks = pyramid(padded[0], mask.expand(2, -1, -1), 3)
    vs, _ = pyramid(padded[1], mask.expand(2, -1, -1), 3)
    mix = module.weight.detach().double().softmax(0) if kind == "B" else None
    for head in range(2):
        expected = slow_quadtree([x[head] for x in qs], [x[head] for x in ks], [x[head] for x in vs],
                                 [m[head] for m in key_masks], topks, kind, mix)
        torch.testing.assert_close(out[0, :, head].double(), expected.flatten(0, 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["A", "B"])
def test_padding_leaves_the_valid_tokens_unchanged(kind):
    """A 6 x 7 query grid and a 5 x 9 key grid, alone and padded to 9 x 12 and 8 x 13 with noise and masks."""
    module = attention(kind, (4, 3, 2), torch.float32)
    q, k, v = (tokens(1, grid, seed=s, dtype=torch.float32) for grid, s in (((6, 7), 10), ((5, 9), 11), ((5, 9), 12)))
    alone = module(q, k, v, query_grid=(6, 7), key_grid=(5, 9))

    def pad(x, grid, big, seed):
        noise = tokens(1, big, seed=seed, dtype=torch.float32).view(1, *big, 2, 4)
        noise[:, : grid[0], : grid[1]] = x.view(1, *grid, 2, 4)
        mask = torch.zeros(1, *big, dtype=torch.bool)
        mask[:, : grid[0], : grid[1]] = True
        return noise.flatten(1, 2), mask.flatten(1)

    (pq, mq), (pk, mk), (pv, _) = pad(q, (6, 7), (9, 12), 13), pad(k, (5, 9), (8, 13), 14), pad(v, (5, 9), (8, 13), 15)
    padded = module(pq, pk, pv, mq, mk, query_grid=(9, 12), key_grid=(8, 13))
    valid = padded.view(1, 9, 12, 2, 4)[:, :6, :7].flatten(1, 2)
    torch.testing.assert_close(valid, alone, atol=1e-5, rtol=0)
    assert (padded[~mq] == 0).all()  # padded queries return zeros


@pytest.mark.parametrize("kind", ["A", "B"])
def test_gradients_are_finite_with_padding(kind):
    module = attention(kind, (4, 3, 2), torch.float32)
    q, k, v = (tokens(2, (8, 8), seed=s, dtype=torch.float32).requires_grad_() for s in (16, 17, 18))
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, :5, :6] = mask[1] = True  # image 0: whole 4x4 blocks of padding at the coarsest level
    module(q, k, v, mask.flatten(1), mask.flatten(1), query_grid=(8, 8), key_grid=(8, 8)).square().sum().backward()
    grads = [q.grad, k.grad, v.grad] + ([module.weight.grad] if kind == "B" else [])
    assert all(g.isfinite().all() and g.abs().sum() > 0 for g in grads)


class LargestTensor(TorchDispatchMode):
    """The most elements of any tensor an operation returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def test_no_tensor_the_size_of_all_query_key_pairs():
    """At 840 x 840 (105 x 105 = 11025 coarse tokens, LoFTR's width and heads) no operation returns a tensor
    of (L x S) entries: the largest is the finest level's gathered candidate keys, (L / 4) x 4K x D a head,
    K D / S = 8 x 32 / 11025 = 1 / 43 of it (1 / 41 measured, with the grid padded to 108 x 108)."""
    module = QuadtreeAttention(QuadtreeConfig())
    q, k, v = (tokens(1, (105, 105), heads=8, dim=32, seed=s, dtype=torch.float32) for s in (19, 20, 21))
    with torch.no_grad(), LargestTensor() as probe:
        out = module(q, k, v, query_grid=(105, 105), key_grid=(105, 105))
    assert out.shape == q.shape and out.isfinite().all()
    pairs = 8 * 11025 * 11025
    assert probe.largest < pairs / 35, probe.largest / pairs


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="quadtree.kind='C' is not one of A, B"):
        QuadtreeConfig(kind="C")
    with pytest.raises(ValueError, match=r"quadtree.topks=\[8, 0\]"):
        QuadtreeConfig(topks=(8, 0))
    with pytest.raises(ValueError, match="needs the token grids"):
        QuadtreeAttention(QuadtreeConfig())(*(tokens(1, (4, 4)).float() for _ in range(3)))


# ------------------------------------------------------------------------------------ the QuadTree-LoFTR layer


def quadtree_transformer(kind="B", d_model=32, heads=4, layer_names=("self", "cross") * 2):
    from models.transformer.encoder import LocalFeatureTransformer, TransformerConfig

    config = TransformerConfig(d_model=d_model, num_heads=heads, layer_names=layer_names,
                               attention="quadtree", block="quadtree",
                               quadtree=QuadtreeConfig(kind=kind, topks=(4, 3, 2)))
    return LocalFeatureTransformer(config).double().eval()


@pytest.mark.parametrize("kind", ["A", "B"])
def test_the_quadtree_layer_ignores_padding(kind):
    """Whole QuadTree-LoFTR layers (attention and the MLP's depthwise convolution over the grid) on two images
    of 6 x 7 and 5 x 9 tokens, alone and padded to 9 x 12 with noise and masks: the same valid tokens."""
    transformer = quadtree_transformer(kind)
    feat0, feat1 = torch.randn(1, 42, 32, dtype=torch.float64), torch.randn(1, 45, 32, dtype=torch.float64)
    with torch.no_grad():
        alone = transformer(feat0, feat1, grid0=(6, 7), grid1=(5, 9))

        def pad(x, grid):
            big = torch.randn(1, 9, 12, 32, dtype=torch.float64)
            big[:, : grid[0], : grid[1]] = x.view(1, *grid, 32)
            mask = torch.zeros(1, 9, 12, dtype=torch.bool)
            mask[:, : grid[0], : grid[1]] = True
            return big.flatten(1, 2), mask.flatten(1)

        (p0, m0), (p1, m1) = pad(feat0, (6, 7)), pad(feat1, (5, 9))
        padded = transformer(p0, p1, m0, m1, (9, 12), (9, 12))
    for out, reference, grid in zip(padded, alone, ((6, 7), (5, 9))):
        valid = out.view(1, 9, 12, 32)[:, : grid[0], : grid[1]].flatten(1, 2)
        torch.testing.assert_close(valid, reference, atol=1e-10, rtol=0)


def test_the_layer_has_the_official_parameter_names_and_updates_cross_layers_together():
    """Names and shapes from the official QuadtreeBlock; in its cross layers both images read the other's
    tokens from before the layer (the official `feat0, feat1 = layer(feat0, feat1), layer(feat1, feat0)`)."""
    transformer = quadtree_transformer("B", d_model=16, heads=2)
    shapes = {name: tuple(p.shape) for name, p in transformer.layers[0].named_parameters()}
    assert shapes == {
        "norm1.weight": (16,), "norm1.bias": (16,), "attn.q_proj.weight": (16, 16, 1, 1),
        "attn.k_proj.weight": (16, 16, 1, 1), "attn.v_proj.weight": (16, 16, 1, 1), "attn.py_att.weight": (3,),
        "attn.proj.weight": (16, 16), "attn.proj.bias": (16,), "norm2.weight": (16,), "norm2.bias": (16,),
        "mlp.fc1.weight": (64, 16), "mlp.fc1.bias": (64,), "mlp.dwconv.dwconv.weight": (64, 1, 3, 3),
        "mlp.dwconv.dwconv.bias": (64,), "mlp.fc2.weight": (16, 64), "mlp.fc2.bias": (16,)}
    assert "attn.py_att.weight" not in dict(quadtree_transformer("A", 16, 2).layers[0].named_parameters())
    feat0, feat1 = torch.randn(1, 16, 16, dtype=torch.float64), torch.randn(1, 16, 16, dtype=torch.float64)
    one_cross = quadtree_transformer("B", d_model=16, heads=2, layer_names=("cross",))
    layer = one_cross.layers[0]
    with torch.no_grad():
        out0, out1 = one_cross(feat0, feat1, grid0=(4, 4), grid1=(4, 4))
        torch.testing.assert_close(out0, layer(feat0, feat1, x_grid=(4, 4), source_grid=(4, 4)))
        torch.testing.assert_close(out1, layer(feat1, feat0, x_grid=(4, 4), source_grid=(4, 4)))


def test_an_official_quadtree_loftr_checkpoint_loads_with_its_layout(tmp_path):
    """A Lightning checkpoint under the official names (`matcher.loftr_coarse.layers.N.attn.py_att.weight`,
    ...) read with weights_only=True: QuadTree-LoFTR of kind B with the corrected positional encoding, the
    same matches as the model it was saved from; kind A when the level weights are absent."""
    from models.loftr import LoFTR, LoFTRConfig
    from models.matcher import LoFTRMatcher
    from models.transformer.encoder import TransformerConfig

    config = LoFTRConfig(coarse=TransformerConfig(attention="quadtree", block="quadtree"))
    source = LoFTR(config).eval()
    path = tmp_path / "outdoor_quadtree.ckpt"
    torch.save({"state_dict": {f"matcher.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = LoFTRMatcher.from_checkpoint(path).model
    assert loaded.config.coarse.block == "quadtree" and loaded.config.coarse.quadtree.kind == "B"
    assert loaded.config.temp_bug_fix and loaded.config.coarse.quadtree.topks == (16, 8, 8)
    image0, image1 = torch.rand(1, 1, 96, 128), torch.rand(1, 1, 96, 128)
    with torch.inference_mode():
        expected, got = source({"image0": image0, "image1": image1}), loaded({"image0": image0, "image1": image1})
    torch.testing.assert_close(got.coarse.confidence_matrix, expected.coarse.confidence_matrix)
    indoor = LoFTRMatcher.from_checkpoint(path, quadtree_topks=[32, 16, 16]).model
    assert indoor.config.coarse.quadtree.topks == (32, 16, 16)
    without = {f"matcher.{k}": v for k, v in source.state_dict().items() if not k.endswith("py_att.weight")}
    torch.save({"state_dict": without}, path)
    assert LoFTRMatcher.from_checkpoint(path).model.config.coarse.quadtree.kind == "A"


@pytest.mark.parametrize("kind", ["A", "B"])
def test_bf16_autocast_stays_finite_and_close(kind):
    """Mixed precision on a padded layer (blocks of padding only, the case where -inf would give NaN)."""
    transformer = quadtree_transformer(kind).float()
    feat = torch.randn(1, 64, 32)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :5, :3] = True
    with torch.no_grad():
        reference = transformer(feat, feat, mask.flatten(1), mask.flatten(1), (8, 8), (8, 8))[0]
        with torch.autocast("cpu", torch.bfloat16):
            mixed = transformer(feat, feat, mask.flatten(1), mask.flatten(1), (8, 8), (8, 8))[0]
    assert mixed.isfinite().all()
    valid = mask.flatten(1)
    assert (mixed.float()[valid] - reference[valid]).abs().max() < 0.1 * reference[valid].abs().max()
