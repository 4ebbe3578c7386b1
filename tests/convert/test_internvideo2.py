"""Official InternVideo2 vision checkpoints <-> vidfm: key-by-key round trips and the same forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidfm.convert import build_models, read_checkpoint
from vidfm.convert.internvideo2 import (
    CLS_ROW,
    internvideo2_encoder_config,
    official_to_vidfm,
    vidfm_to_official,
    vision_state,
)
from vidfm.layers.pooling import MeanQueryPool
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.models.heads import AlignHead

# 1B layout at toy size: 2 blocks, width 48 (3 heads), 4 frames of 28² with 14-pixel patches.
STUDENT = EncoderConfig(
    size="g/14", num_frames=4, img_size=28, depth=2, width=48, heads=3, tubelet=1, cls_token=True,
    pos_embed="learned", pos_init="sincos_3d", qkv_bias="none", qk_norm=True, norm="rmsnorm", norm_eps=1e-6,
    layer_scale=1e-5, final_norm=False,
)  # fmt: skip


def random_task_state() -> dict[str, torch.Tensor]:
    """Every tensor of the vidfm stage-1 layout (encoder, attention pool, a 2-layer image-teacher branch of
    width 40 with its final head, a 1-layer MLP video-teacher branch of width 24, their position tables), with
    non-trivial random values."""
    parts = {
        "encoder": VideoEncoder(STUDENT),
        "pool": MeanQueryPool(48, 3, 48),
        "heads.clip.0": AlignHead(48, 40, eps=1e-5),
        "heads.clip.1": AlignHead(48, 40, eps=1e-5),
        "heads.video.0": AlignHead(48, 24, eps=1e-5, mlp=True),
        "final_heads.clip": AlignHead(48, 40, eps=1e-5),
    }
    shapes = {f"{p}.{k}": v.shape for p, m in parts.items() for k, v in m.state_dict().items()}
    shapes |= {"pos.clip": (1, 16, 48), "pos.video": (1, 16, 48)}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=g) for k, shape in shapes.items()}


def test_official_stage1_keys_and_round_trip() -> None:
    sd = random_task_state()
    official = vidfm_to_official(sd, {CLS_ROW: torch.randn(1, 1, 48)})
    expected = {
        "patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "clip_pos_embed",
        "mae_pos_embed", "final_clip_decoder.head.weight", "final_clip_decoder.head.bias",
        "final_clip_decoder.norm.weight", "final_clip_decoder.norm.bias",
    }  # fmt: skip
    expected |= {
        f"clip_projector.{n}.{p}" for n in ("norm1_q", "norm1_k", "norm1_v") for p in ("weight", "bias")
    }
    expected |= {f"clip_projector.cross_attn.{n}" for n in ("q.weight", "k.weight", "v.weight", "q_bias")}
    expected |= {f"clip_projector.cross_attn.{n}" for n in ("k_bias", "v_bias", "proj.weight", "proj.bias")}
    for i in range(2):
        expected |= {f"clip_decoder.{i}.{n}.{p}" for n in ("head", "norm") for p in ("weight", "bias")}
        expected |= {f"blocks.{i}.{n}.weight" for n in ("norm1", "norm2", "attn.q_norm", "attn.k_norm")}
        expected |= {f"blocks.{i}.{n}" for n in ("attn.qkv.weight", "ls1.gamma", "ls2.gamma")}
        expected |= {
            f"blocks.{i}.{n}.{p}" for n in ("attn.proj", "mlp.fc1", "mlp.fc2") for p in ("weight", "bias")
        }
    expected |= {
        f"mae_decoder.0.{n}" for n in ("head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias")
    }
    expected |= {"mae_decoder.0.norm.weight", "mae_decoder.0.norm.bias"}
    assert set(official) == expected
    assert official["pos_embed"].shape == (1, 1 + 4 * 2 * 2, 48)
    assert torch.equal(official["pos_embed"][:, 0], sd["encoder.cls_pos"][:, 0])
    back, extras = official_to_vidfm(official)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    again = vidfm_to_official(back, extras)
    assert set(again) == set(official) and all(torch.equal(again[k], official[k]) for k in official)


def test_official_stage2_keys_round_trip() -> None:
    sd = {k: v for k, v in random_task_state().items() if not k.startswith(("heads.video", "pos.video"))}
    official = vidfm_to_official(sd, stage=2)
    assert (
        all(k.startswith("vision_encoder.") for k in official)
        and "vision_encoder.blocks.1.ls2.gamma" in official
    )
    full = {**official, "text_encoder.bert.embeddings.word_embeddings.weight": torch.zeros(3, 2)}
    vision, stage = vision_state(full)
    assert stage == 2 and len(vision) == len(official)
    back, extras = official_to_vidfm(vision)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    assert extras[CLS_ROW].abs().sum() == 0  # no class row given: the official sincos row, zeros


def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def official_forward(
    sd: dict[str, torch.Tensor], video: torch.Tensor, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official forward written from ``internvideo2_pretrain.py`` (naive attention, unfused RMSNorm):
    block output [B,1+N,D] and the attention-pooled embedding [B,D']."""
    w = sd["patch_embed.proj.weight"]
    x = F.conv3d(video, w, sd["patch_embed.proj.bias"], stride=w.shape[2:]).flatten(2).transpose(1, 2)
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd["pos_embed"]
    b, n, d = x.shape
    for i in range(2):
        p = lambda name, i=i: sd[f"blocks.{i}.{name}"]  # noqa: E731
        q, k, v = (rms(x, p("norm1.weight")) @ p("attn.qkv.weight").t()).chunk(3, -1)
        q, k = rms(q, p("attn.q_norm.weight")), rms(k, p("attn.k_norm.weight"))
        q, k, v = (t.view(b, n, heads, -1).transpose(1, 2) for t in (q, k, v))
        a = ((q * (d // heads) ** -0.5) @ k.transpose(-1, -2)).softmax(-1) @ v
        x = x + p("ls1.gamma") * F.linear(
            a.transpose(1, 2).reshape(b, n, d), p("attn.proj.weight"), p("attn.proj.bias")
        )
        h = F.gelu(F.linear(rms(x, p("norm2.weight")), p("mlp.fc1.weight"), p("mlp.fc1.bias")))
        x = x + p("ls2.gamma") * F.linear(h, p("mlp.fc2.weight"), p("mlp.fc2.bias"))
    c = lambda name: sd[f"clip_projector.{name}"]  # noqa: E731
    ln = lambda t, name: F.layer_norm(t, (d,), c(f"{name}.weight"), c(f"{name}.bias"), 1e-5)  # noqa: E731
    pq = F.linear(ln(x.mean(1, keepdim=True), "norm1_q"), c("cross_attn.q.weight"), c("cross_attn.q_bias"))
    pk = F.linear(ln(x, "norm1_k"), c("cross_attn.k.weight"), c("cross_attn.k_bias"))
    pv = F.linear(ln(x, "norm1_v"), c("cross_attn.v.weight"), c("cross_attn.v_bias"))
    pq, pk, pv = (t.view(b, -1, heads, d // heads).transpose(1, 2) for t in (pq, pk, pv))
    pooled = ((pq * (d // heads) ** -0.5) @ pk.transpose(-1, -2)).softmax(-1) @ pv
    return x, F.linear(
        pooled.transpose(1, 2).reshape(b, d), c("cross_attn.proj.weight"), c("cross_attn.proj.bias")
    )


def test_converted_weights_compute_what_the_official_model_computes(tmp_path) -> None:  # noqa: ANN001
    sd = random_task_state()
    sd = {k: v * 0.2 if k.startswith("encoder.blocks") and "norm" not in k else v for k, v in sd.items()}
    official = vidfm_to_official(sd)
    torch.save({"module": official}, tmp_path / "1B_pt.pth")  # DeepSpeed's wrapping
    conv = read_checkpoint(tmp_path / "1B_pt.pth", num_frames=4, img_size=28, heads=3)  # layout detected
    assert conv.encoder == internvideo2_encoder_config(official, 4, 28, heads=3)
    assert conv.encoder.qk_norm and conv.encoder.qkv_bias == "none" and conv.encoder.cls_token
    assert {"pool.q.weight", "heads.clip.1.fc.weight", "pos.video", CLS_ROW} <= set(conv.extras)
    encoder = build_models(conv.encoder, None, conv.state_dict)[0]
    video = torch.randn(2, 3, 4, 28, 28)
    ref_tokens, ref_pooled = official_forward(official, video, heads=3)
    out = encoder(video)
    torch.testing.assert_close(out.cls, ref_tokens[:, 0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.tokens, ref_tokens[:, 1:], rtol=1e-4, atol=1e-4)
    from vidfm.layers.pooling import MeanQueryPool

    pool = MeanQueryPool(48, 3, 48)
    pool.load_state_dict({k[len("pool.") :]: v for k, v in conv.extras.items() if k.startswith("pool.")})
    pooled, _ = pool(torch.cat([out.cls[:, None], out.tokens], 1))
    torch.testing.assert_close(pooled, ref_pooled, rtol=1e-4, atol=1e-4)


def test_heads_come_from_the_official_size_or_the_argument() -> None:
    official = vidfm_to_official(random_task_state())
    with pytest.raises(ValueError, match="pass --heads"):  # width 48, 2 blocks: no official size
        internvideo2_encoder_config(official, 4, 28)
    # The 1B's width with another depth is not the 1B: its 16 heads are not assumed.
    fake = {"patch_embed.proj.weight": torch.zeros(1408, 3, 1, 14, 14), "pos_embed": torch.zeros(1, 17, 1408)}
    fake |= {f"blocks.{i}.mlp.fc1.weight": torch.zeros(6144, 1) for i in range(2)}
    with pytest.raises(ValueError, match="pass --heads"):
        internvideo2_encoder_config(fake, 4, 28)
    assert internvideo2_encoder_config(fake, 4, 28, heads=11).dims()[2] == 11
    fake |= {f"blocks.{i}.mlp.fc1.weight": torch.zeros(6144, 1) for i in range(40)}
    assert internvideo2_encoder_config(fake, 4, 28).dims()[2] == 16  # the registered 1B
