"""The audio encoder pools only real audio (the causal-LM wrapper is tested in tests/models/test_lm.py)."""

from __future__ import annotations

import torch

from vidfm.models.audio import AudioEncoder, AudioEncoderConfig

AUDIO = AudioEncoderConfig(width=32, depth=1, heads=2, max_frames=64)


def test_audio_encoder_pools_only_real_audio() -> None:
    torch.manual_seed(0)
    enc = AudioEncoder(AUDIO)
    fbank = torch.randn(2, 70, 64)  # 70 frames: cut to 64 = 4 time patches × 4 mel patches
    valid = torch.zeros(2, 70, dtype=torch.bool)
    valid[0, :20] = True  # clip 0: sound in the first 20 frames -> time patches 0 and 1
    out = enc(fbank, valid)
    assert out.tokens.shape == (2, 16, 32) and out.present.tolist() == [True, False]
    assert out.valid[0].view(4, 4).all(1).tolist() == [True, True, False, False]
    torch.testing.assert_close(out.pooled[0], out.tokens[0][out.valid[0]].mean(0))
    assert out.pooled[1].abs().sum() == 0  # no audio: zeros, flagged absent
    out.pooled[0].sum().backward()
    assert enc.patch_embed.weight.grad.abs().sum() > 0 and enc.pos_embed.grad.abs().sum() > 0
