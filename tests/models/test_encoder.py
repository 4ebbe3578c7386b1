"""VideoEncoder and its layers: shapes, visible-token path, hidden layers, variants, position tables, and an
attention written out by hand against the SDPA block."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidfm.layers.block import Block
from vidfm.layers.pos_embed import interpolate_grid, sincos_1d, sincos_3d
from vidfm.models.encoder import EncoderConfig, VideoEncoder, decode_size, gather_tokens

TINY = dict(size="T/16", width=64, depth=2, heads=4, num_frames=4, img_size=32)


def tiny(**overrides) -> VideoEncoder:
    torch.manual_seed(0)
    model = VideoEncoder(EncoderConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # non-trivial biases and norm weights (they init to 0 and 1)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def clip(frames: int = 4, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "size,width,heads,patch",
    [("T/16", 192, 3, 16), ("S/16", 384, 6, 16), ("B/16", 768, 12, 16), ("B/8", 768, 12, 8)],
)
def test_sizes_by_string(size: str, width: int, heads: int, patch: int) -> None:
    model = VideoEncoder(EncoderConfig(size=size, depth=1, num_frames=4, img_size=32)).eval()
    assert (model.width, model.patch, model.blocks[0].attn.num_heads) == (width, patch, heads)
    assert decode_size(size)[:3] == (width, 12, heads) and len(model.blocks) == 1  # depth overridden
    with torch.no_grad():
        out = model(clip(batch=1))
    grid = (2, 32 // patch, 32 // patch)
    assert out.grid == grid and out.tokens.shape == (1, math.prod(grid), width) and out.cls is None


def test_bad_sizes_and_clips_are_errors() -> None:
    for bad in ("X/16", "B16", "B/x"):
        with pytest.raises(ValueError, match="unknown model size"):
            decode_size(bad)
    with pytest.raises(ValueError, match="not divisible"):
        tiny()(clip(frames=3))
    with pytest.raises(ValueError, match="pos_embed"):
        VideoEncoder(EncoderConfig(**{**TINY, "pos_embed": "rope"}))


def test_visible_path_equals_encoding_the_gathered_tokens() -> None:
    model, x = tiny(), clip()
    visible = torch.tensor([[0, 2, 5], [7, 1, 4]])
    with torch.no_grad():
        out = model(x, visible=visible)
        tokens, _ = model.embed(x)  # [B,8,D] with positions
        h = gather_tokens(tokens, visible)
        for block in model.blocks:
            h = block(h)
        assert (out.tokens - model.norm(h)).abs().max() <= 1e-6
        assert torch.equal(out.visible, visible)
        # All tokens in a shuffled order: attention is permutation-equivariant, positions travel with tokens.
        perm = torch.stack([torch.randperm(8, generator=torch.Generator().manual_seed(s)) for s in (3, 4)])
        full = model(x).tokens
        assert (model(x, visible=perm).tokens - gather_tokens(full, perm)).abs().max() <= 1e-5
        # Fewer tokens is a different context: the visible path is not the full path gathered.
        assert (out.tokens - gather_tokens(full, visible)).abs().max() > 1e-3


@pytest.mark.parametrize("cls_token", [False, True])
def test_return_layers_with_negative_indices(cls_token: bool) -> None:
    model, x = tiny(depth=3, cls_token=cls_token), clip()
    with torch.no_grad():
        out = model(x, return_layers=(-1, 0, -2))
        assert set(out.hidden) == {0, 1, 2}
        assert all(h.shape == (2, 8, 64) for h in out.hidden.values())  # the class token is never in hidden
        # tokens = final norm (token-wise) of the last block's output
        assert (model.norm(out.hidden[2]) - out.tokens).abs().max() <= 1e-6
        first, _ = model.embed(x)
        if cls_token:
            first = torch.cat([model.cls_token.expand(2, -1, -1), first], 1)
        assert (model.blocks[0](first)[:, int(cls_token) :] - out.hidden[0]).abs().max() <= 1e-6
        assert model(x).hidden == {}


def test_class_token() -> None:
    model, x = tiny(cls_token=True, pos_embed="learned"), clip()
    assert model.cls_token.shape == (1, 1, 64) and model.cls_pos is not None
    with torch.no_grad():
        out = model(x, visible=torch.tensor([[1, 2], [3, 4]]))
    assert out.cls.shape == (2, 64) and out.tokens.shape == (2, 2, 64)
    assert torch.equal(out.pooled("cls"), out.cls) and torch.allclose(out.pooled(), out.tokens.mean(1))
    with torch.no_grad():
        plain = tiny()(x)
    with pytest.raises(ValueError, match="no class token"):
        plain.pooled("cls")
    assert tiny(cls_token=True).cls_pos is None  # sincos positions: the class token carries none


@pytest.mark.parametrize("mode", ["fused", "qv", "none"])
def test_qkv_bias_modes(mode: str) -> None:
    attn = tiny(qkv_bias=mode).blocks[0].attn
    assert (attn.qkv.bias is not None) == (mode == "fused")
    assert (attn.q_bias is not None) == (attn.v_bias is not None) == (mode == "qv")
    x = torch.randn(2, 5, 64)
    w = attn.qkv.weight
    bias = {
        "fused": attn.qkv.bias,
        "qv": None if attn.q_bias is None else torch.cat([attn.q_bias, torch.zeros(64), attn.v_bias]),
        "none": torch.zeros(192),
    }[mode]
    with torch.no_grad():
        q, k, v = attn.qkv_heads(x)
        ref = (x @ w.T + bias).view(2, 5, 3, 4, 16).permute(2, 0, 3, 1, 4)
    assert all((a - b).abs().max() <= 1e-6 for a, b in zip((q, k, v), ref.unbind(0), strict=True))
    if mode == "qv":  # no key bias: k is the bare projection
        assert (k - (x @ w[64:128].T).view(2, 5, 4, 16).transpose(1, 2)).abs().max() <= 1e-6


def test_rmsnorm() -> None:
    model = tiny(norm="rmsnorm")
    norms = [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.RMSNorm))]
    assert norms and all(isinstance(m, nn.RMSNorm) for m in norms) and len(norms) == 2 * 2 + 1
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(2)) + 5.0
    with torch.no_grad():
        assert torch.isfinite(model(clip()).tokens).all()
        y = model.norm(z) / model.norm.weight  # undo the learned scale
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(3), atol=1e-4)  # unit RMS per token
    assert (y.mean(-1) > 0.9).all()  # not centred, unlike LayerNorm
    with pytest.raises(ValueError, match="unknown norm"):
        tiny(norm="batchnorm")


def test_layer_scale() -> None:
    torch.manual_seed(0)
    model = VideoEncoder(EncoderConfig(**TINY, layer_scale=1e-3)).eval()
    assert all(torch.equal(b.ls1.gamma, torch.full((64,), 1e-3)) for b in model.blocks)
    assert isinstance(tiny().blocks[0].ls1, nn.Identity)
    # A tiny scale makes every residual branch negligible: the blocks pass their input through.
    model = VideoEncoder(EncoderConfig(**TINY, layer_scale=1e-9)).eval()
    with torch.no_grad():
        x = clip()
        embedded, _ = model.embed(x)
        assert (model(x, return_layers=(-1,)).hidden[1] - embedded).abs().max() <= 1e-6


def test_drop_path_only_in_train_mode() -> None:
    model = tiny(depth=4, drop_path=0.5)
    assert [b.drop_path.prob for b in model.blocks] == pytest.approx([0, 1 / 6, 2 / 6, 0.5])
    reference = tiny(depth=4)  # same seed, same weights, no drop path
    x = clip()
    with torch.no_grad():
        assert torch.equal(model(x).tokens, model(x).tokens)
        assert (model(x).tokens - reference(x).tokens).abs().max() <= 1e-6
        model.train()
        torch.manual_seed(5)
        a = model(x).tokens
        torch.manual_seed(6)
        b = model(x).tokens
    assert (a - b).abs().max() > 1e-3


def test_learned_position_interpolation() -> None:
    model = tiny(pos_embed="learned")
    assert model.position_embedding((2, 2, 2)) is model.pos_embed
    new = (4, 4, 4)
    table = model.position_embedding(new)
    assert table.shape == (1, 64, 64)
    assert torch.equal(table[0], interpolate_grid(model.pos_embed[0], (2, 2, 2), new))
    # A table constant over the grid stays constant; each output is a convex mix of the old positions.
    const = torch.ones(8, 3) * torch.tensor([1.0, -2.0, 0.5])
    assert torch.allclose(interpolate_grid(const, (2, 2, 2), new), torch.ones(64, 3) * const[0])
    old = model.pos_embed[0]
    assert (table[0].max(0).values <= old.max(0).values + 1e-6).all()
    with torch.no_grad():
        out = model(clip(frames=8, size=64, batch=1))
    assert out.grid == new and out.tokens.shape == (1, 64, 64)


@pytest.mark.parametrize("kind", ["sincos_1d", "sincos_3d"])
def test_sincos_positions_are_recomputed_for_new_grids(kind: str) -> None:
    model = tiny(pos_embed=kind)
    assert "pos_embed" not in model.state_dict()  # fixed tables are not stored in checkpoints
    expected = sincos_1d(96, 64) if kind == "sincos_1d" else sincos_3d((6, 4, 4), 64)
    assert torch.equal(model.position_embedding((6, 4, 4))[0], expected)
    with torch.no_grad():
        assert model(clip(frames=12, size=64, batch=1)).tokens.shape == (1, 96, 64)


def test_sincos_1d_matches_the_official_formula() -> None:
    # official VideoMAE get_sinusoid_encoding_table (modeling_finetune.py), written out with numpy
    n, d = 10, 16
    angle = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(n)])
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    assert torch.allclose(sincos_1d(n, d), torch.tensor(angle, dtype=torch.float32), atol=1e-6)


def test_sincos_3d_table_properties() -> None:
    t, h, w, d = 3, 4, 5, 64
    table = sincos_3d((t, h, w), d)
    assert table.shape == (t * h * w, d) and table.abs().max() <= 1
    grid = table.view(t, h, w, d)
    ds, dt = 3 * d // 8, d // 4
    parts = {"w": grid[..., :ds], "h": grid[..., ds : 2 * ds], "t": grid[..., 2 * ds :]}
    assert parts["t"].shape[-1] == dt
    # each part depends on its own axis only
    assert torch.equal(parts["w"], parts["w"][:1, :1].expand(t, h, w, ds))
    assert torch.equal(parts["h"], parts["h"][:1, :, :1].expand(t, h, w, ds))
    assert torch.equal(parts["t"], parts["t"][:, :1, :1].expand(t, h, w, dt))
    # [sin | cos] halves: sin² + cos² = 1, and position 0 is all sin 0 / cos 1
    for part in parts.values():
        half = part.shape[-1] // 2
        assert torch.allclose(part[..., :half] ** 2 + part[..., half:] ** 2, torch.ones(()), atol=1e-6)
        assert torch.equal(part[0, 0, 0], torch.cat([torch.zeros(half), torch.ones(half)]))
    assert len({tuple(r.tolist()) for r in table}) == t * h * w  # every position distinct
    with pytest.raises(ValueError, match="divisible by 16"):
        sincos_3d((2, 2, 2), 40)


@pytest.mark.parametrize("qkv_bias,layer_scale", [("qv", None), ("fused", 0.5), ("none", None)])
def test_block_equals_attention_written_out(qkv_bias: str, layer_scale: float | None) -> None:
    torch.manual_seed(0)
    block = Block(64, 4, 4.0, qkv_bias, "layernorm", 1e-6, layer_scale=layer_scale).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 7, 64)
    a = block.attn
    bias = {
        "qv": torch.cat([a.q_bias, torch.zeros(64), a.v_bias]) if a.q_bias is not None else None,
        "fused": a.qkv.bias,
        "none": torch.zeros(192),
    }[qkv_bias]
    gamma1 = block.ls1.gamma if layer_scale else 1.0
    gamma2 = block.ls2.gamma if layer_scale else 1.0
    with torch.no_grad():
        y = F.layer_norm(x, (64,), block.norm1.weight, block.norm1.bias, 1e-6)
        q, k, v = (y @ a.qkv.weight.T + bias).split(64, dim=-1)
        q, k, v = (t.reshape(2, 7, 4, 16).transpose(1, 2) for t in (q, k, v))  # [B,h,N,hd]
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16), dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(2, 7, 64) @ a.proj.weight.T + a.proj.bias
        x1 = x + gamma1 * o
        y = F.layer_norm(x1, (64,), block.norm2.weight, block.norm2.bias, 1e-6)
        m = (
            F.gelu(y @ block.mlp.fc1.weight.T + block.mlp.fc1.bias) @ block.mlp.fc2.weight.T
            + block.mlp.fc2.bias
        )
        ref = x1 + gamma2 * m
        assert (block(x) - ref).abs().max() <= 1e-5
