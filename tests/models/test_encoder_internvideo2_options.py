"""The encoder options of the official InternVideo2 1B/6B students: qk-norm over the full width, learned
positions started from 3-D sincos; the defaults leave other encoders as they were."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from vidfm.layers.pos_embed import sincos_3d
from vidfm.models.encoder import EncoderConfig, VideoEncoder

STUDENT = EncoderConfig(
    size="T/8", num_frames=4, img_size=32, depth=3, width=32, heads=2, tubelet=1, cls_token=True,
    pos_embed="learned", pos_init="sincos_3d", qkv_bias="none", qk_norm=True, norm="rmsnorm", norm_eps=1e-6,
    layer_scale=1e-5, final_norm=False,
)  # fmt: skip


def test_qk_norm_is_rmsnorm_over_the_full_width() -> None:
    torch.manual_seed(0)
    enc = VideoEncoder(STUDENT)
    attn = enc.blocks[0].attn
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 32)
    q, k, v = attn.qkv_heads(x)  # [B,h,N,hd]
    raw_q, raw_k, raw_v = F.linear(x, attn.qkv.weight).chunk(3, dim=-1)  # no qkv bias
    rms = lambda t, w: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w  # noqa: E731
    heads = lambda t: t.view(2, 5, 2, 16).transpose(1, 2)  # noqa: E731
    assert torch.allclose(q, heads(rms(raw_q, attn.q_norm.weight)), atol=1e-5)
    assert torch.allclose(k, heads(rms(raw_k, attn.k_norm.weight)), atol=1e-5)
    assert torch.equal(v, heads(raw_v))
    assert attn.qkv.bias is None and attn.q_bias is None
    assert isinstance(enc.blocks[0].norm1, torch.nn.RMSNorm) and isinstance(enc.norm, torch.nn.Identity)


def test_position_table_starts_from_3d_sincos_and_the_class_row_is_zero() -> None:
    enc = VideoEncoder(STUDENT)
    assert isinstance(enc.pos_embed, torch.nn.Parameter)
    assert torch.equal(enc.pos_embed[0].detach(), sincos_3d(enc.grid, 32))
    assert enc.cls_pos is not None and enc.cls_pos.abs().sum() == 0
    plain = VideoEncoder(dataclasses.replace(STUDENT, qk_norm=False, pos_init="trunc_normal"))
    assert plain.blocks[0].attn.q_norm is None and not torch.equal(
        plain.pos_embed[0], sincos_3d(plain.grid, 32)
    )


def test_gradients_reach_the_new_parts() -> None:
    enc = VideoEncoder(STUDENT)
    out = enc(torch.randn(2, 3, 4, 32, 32))
    (out.tokens.pow(2).mean() + out.cls.pow(2).mean()).backward()
    for name in ("blocks.0.attn.q_norm.weight", "blocks.0.attn.k_norm.weight", "pos_embed", "cls_pos"):
        assert enc.get_parameter(name).grad.abs().sum() > 0, name
