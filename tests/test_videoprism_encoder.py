"""Factorized VideoEncoder: parity with HF transformers' VideoPrismVisionModel, masked (tube) input against an
independent reference computation, and checkpoint conversion through ``vidfm.convert``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidfm.masking import frame_mask, tube_mask
from vidfm.models.encoder import EncoderConfig, VideoEncoder

transformers = pytest.importorskip("transformers")


def hf_model(**overrides):
    from transformers import VideoPrismVisionConfig, VideoPrismVisionModel

    cfg = dict(
        image_size=32,
        num_frames=4,
        tubelet_size=[1, 8, 8],
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_spatial_layers=2,
        num_temporal_layers=2,
        attn_logit_softcapping=50.0,
    )
    cfg.update(overrides)
    torch.manual_seed(0)
    model = VideoPrismVisionModel(VideoPrismVisionConfig(**cfg)).eval()
    # HF initialises the LayerNorm offsets at 0 (scale 1): random offsets and biases test the +1 convention.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name:
                p.normal_(0, 0.3)
    return model


def converted(model) -> VideoEncoder:  # noqa: ANN001
    from vidfm.convert import build_models
    from vidfm.convert.hf_videoprism import from_hf_videoprism

    conv = from_hf_videoprism(model)
    return build_models(conv.encoder, None, conv.state_dict)[0]


def test_parity_with_hf_videoprism_vision_model():
    model = hf_model()
    encoder = converted(model)
    assert encoder.factorized and encoder.cfg.attn_softcap == 50.0 and encoder.depth == 4
    video = torch.randn(2, 3, 4, 32, 32)  # [B,C,T,H,W]
    with torch.no_grad():
        ref = model(pixel_values_videos=video.transpose(1, 2)).last_hidden_state  # HF takes [B,T,C,H,W]
        ours = encoder(video).tokens
    assert ours.shape == ref.shape == (2, 4 * 16, 32)
    assert (ours - ref).abs().max().item() <= 1e-5


def test_parity_softcap_binds():
    """Logits large enough that the cap changes the output: the soft-cap path is what matches."""
    model = hf_model(attn_logit_softcapping=0.5)
    encoder = converted(model)
    video = 3 * torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values_videos=video.transpose(1, 2)).last_hidden_state
        ours = encoder(video).tokens
        for block in encoder.blocks:
            block.attn.softcap = None
        uncapped = encoder(video).tokens
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (uncapped - ref).abs().max().item() > 1e-3


def test_parity_interpolated_positions():
    """A larger clip than the tables were built for (more frames, larger frames): both interpolate."""
    model = hf_model()
    encoder = converted(model)
    video = torch.randn(1, 3, 8, 48, 48)
    with torch.no_grad():
        ref = model(
            pixel_values_videos=video.transpose(1, 2), interpolate_pos_encoding=True
        ).last_hidden_state
        ours = encoder(video).tokens
    assert (ours - ref).abs().max().item() <= 1e-5


def test_convert_folder_and_load_encoder(tmp_path):
    from vidfm.convert import load_encoder, read_checkpoint, save_vidfm_checkpoint

    model = hf_model()
    model.save_pretrained(tmp_path / "hf")
    encoder = load_encoder(tmp_path / "hf")
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values_videos=video.transpose(1, 2)).last_hidden_state
        assert (encoder(video).tokens - ref).abs().max().item() <= 1e-5
    conv = read_checkpoint(tmp_path / "hf")
    save_vidfm_checkpoint(tmp_path / "vidfm", conv.encoder, None, conv.state_dict)
    again = load_encoder(tmp_path / "vidfm")
    assert again.cfg.space_time == "factorized"
    with torch.no_grad():
        assert torch.equal(again(video).tokens, encoder(video).tokens)


def small_factorized(**kw) -> VideoEncoder:
    torch.manual_seed(0)
    cfg = EncoderConfig(
        size="T/8", width=32, depth=2, heads=4, tubelet=1, num_frames=4, img_size=32,
        pos_embed="learned", qkv_bias="fused", space_time="factorized", temporal_depth=2, **kw,
    )  # fmt: skip
    return VideoEncoder(cfg).eval()


def reference_masked(encoder: VideoEncoder, video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Independent factorized computation on a tube: per sample, per frame attention over that frame's visible
    tokens, then per visible position attention over time; written with explicit loops and einsum."""
    from vidfm.layers.block import Block

    def block(blk: Block, x: torch.Tensor) -> torch.Tensor:  # x [L,D], plain softmax attention
        a = blk.attn
        h = blk.norm1(x)
        q, k, v = (h @ a.qkv.weight.t() + a.qkv.bias).chunk(3, dim=-1)
        q, k, v = (z.view(len(x), a.num_heads, a.head_dim).transpose(0, 1) for z in (q, k, v))
        att = torch.einsum("hid,hjd->hij", q, k).mul(a.head_dim**-0.5).softmax(-1)
        x = x + a.proj(torch.einsum("hij,hjd->hid", att, v).transpose(0, 1).reshape(len(x), -1))
        return x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))

    t, h, w = encoder.grid
    s = encoder.spatial_depth
    tokens = encoder.patch_embed(video)[0]  # [B,N,D] (t,h,w) order
    out = []
    for b in range(video.shape[0]):
        pos = visible[b].view(t, -1)[0]  # the tube's spatial positions
        x = tokens[b].view(t, h * w, -1)[:, pos] + encoder.pos_embed[0, pos]  # [T,k,D]
        frames = []
        for f in range(t):
            y = x[f]
            for blk in encoder.blocks[:s]:
                y = block(blk, y)
            frames.append(encoder.spatial_norm(y))
        x = torch.stack(frames, 1) + encoder.temporal_pos[0][None]  # [k,T,D]
        rows = []
        for j in range(x.shape[0]):
            y = x[j]
            for blk in encoder.blocks[s:]:
                y = block(blk, y)
            rows.append(encoder.norm(y))
        out.append(torch.stack(rows, 1).reshape(-1, x.shape[-1]))  # [T·k,D] frame-major
    return torch.stack(out)


def test_tube_masked_input_matches_reference():
    encoder = small_factorized()
    video = torch.randn(2, 3, 4, 32, 32)
    mask = tube_mask(2, encoder.grid, 0.75, torch.Generator().manual_seed(0), torch.device("cpu"))
    with torch.no_grad():
        out = encoder(video, visible=mask.visible, return_layers=(1, -1))
        ref = reference_masked(encoder, video, mask.visible)
        full = encoder(video).tokens
    assert out.tokens.shape == (2, 4 * 4, 32)
    assert (out.tokens - ref).abs().max().item() <= 1e-5
    assert set(out.hidden) == {1, 3}
    assert torch.allclose(encoder.norm(out.hidden[3]), out.tokens, atol=1e-6)
    # Masking changes what the visible tokens see: not the full-clip tokens gathered.
    gathered = torch.gather(full, 1, mask.visible[..., None].expand(-1, -1, 32))
    assert (gathered - out.tokens).abs().max().item() > 1e-3


def test_full_clip_is_the_all_visible_tube():
    encoder = small_factorized()
    video = torch.randn(1, 3, 4, 32, 32)
    everything = torch.arange(64)[None]
    with torch.no_grad():
        assert torch.allclose(encoder(video, visible=everything).tokens, encoder(video).tokens, atol=1e-6)
        assert (encoder(video).tokens - reference_masked(encoder, video, everything)).abs().max() <= 1e-5


def test_non_tube_masks_are_refused():
    encoder = small_factorized()
    video = torch.randn(2, 3, 4, 32, 32)
    mask = frame_mask(2, encoder.grid, 0.5, torch.Generator().manual_seed(1), torch.device("cpu"))
    with pytest.raises(ValueError, match="tube"):
        encoder(video, visible=mask.visible)


def test_factorized_config_checks_and_no_weight_decay():
    with pytest.raises(ValueError, match="learned"):
        VideoEncoder(EncoderConfig(size="T/8", depth=1, space_time="factorized", pos_embed="sincos_3d"))
    enc = small_factorized()
    names = dict(enc.named_parameters())
    assert names["pos_embed"].shape == (1, 16, 32) and names["temporal_pos"].shape == (1, 4, 32)
    assert "temporal_pos" in enc.no_weight_decay()
    # Drop path and the block list cover both stages.
    assert len(enc.blocks) == 4
