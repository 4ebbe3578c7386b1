"""AttentionPool: the folded single-pass computation equals ordinary multi-head cross-attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidfm.layers.pooling import AttentionPool


def _reference(pool: AttentionPool) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(pool.dim, pool.num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([pool.q.weight, pool.k.weight, pool.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([pool.q.bias, pool.k.bias, pool.v.bias]))
        ref.out_proj.weight.copy_(pool.proj.weight)
        ref.out_proj.bias.copy_(pool.proj.bias)
    return ref


@pytest.mark.parametrize("queries", [1, 3])
def test_equals_multihead_attention_with_padding(queries: int) -> None:
    torch.manual_seed(0)
    pool = AttentionPool(32, 4, num_queries=queries, mlp_ratio=None)
    for lin in (pool.q, pool.k, pool.v, pool.proj):
        nn.init.normal_(lin.bias)  # non-zero biases: the k bias must cancel, the v bias pass through once
    x = torch.randn(3, 10, 32)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 4:] = False
    ref, _ = _reference(pool)(pool.query.expand(3, -1, -1), x, x, key_padding_mask=~mask)
    torch.testing.assert_close(pool(x, mask), ref, atol=1e-5, rtol=1e-5)
    # padded tokens are ignored: changing them changes nothing
    y = x.clone()
    y[1, 4:] = 100.0
    torch.testing.assert_close(pool(y, mask)[1], pool(x, mask)[1], atol=1e-5, rtol=1e-5)


def test_map_head_and_videoprism_forms() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16)
    map_head = AttentionPool(16, 2, mlp_ratio=4.0)
    plain = AttentionPool(16, 2, mlp_ratio=None)
    plain.load_state_dict(map_head.state_dict(), strict=False)
    attn = plain(x)
    # big_vision MAPHead: y + mlp(norm(y)) on the attention output
    torch.testing.assert_close(map_head(x), attn + map_head.mlp(map_head.norm(attn)))
    # VideoPrism: the per-dimension query scale starts at exactly 1/sqrt(head_dim), then a LayerNorm
    vp = AttentionPool(16, 2, mlp_ratio=None, per_dim_scale=True, out_norm=True)
    vp.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(vp(x), vp.out_norm(attn), atol=1e-5, rtol=1e-5)
    out = vp(x)
    out.sum().backward()
    assert vp.per_dim_scale.grad is not None and vp.query.grad is not None and vp.k.weight.grad is not None
    assert out.shape == (2, 1, 16)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AttentionPool(30, 4)
    with pytest.raises(ValueError, match=r"\[B,N,16\]"):
        AttentionPool(16, 2)(torch.randn(2, 16))
