"""Vector quantizer and motion VQ-VAE: nearest codes, straight-through gradients, EMA, restarts, shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from vidfm.lavit.motion_vq import MotionVQConfig, MotionVQVAE, QuantizerConfig, VectorQuantizer
from vidfm.recipes.motion_vq import tiny_motion
from vidfm.tasks.motion_vq import MotionVQTask


def test_official_token_grid():
    # 24 x 20 x 36 -> 3 x 5 x 9 = 135 tokens (official reconstruct_from_token asserts seq_len == 135).
    assert MotionVQConfig().token_grid() == (3, 5, 9)
    with pytest.raises(ValueError, match="does not fit"):
        MotionVQConfig(num_frames=20, grid=(4, 4), stage_depths=(1,), strides=((8, 1, 1),)).token_grid()


def test_nearest_code_and_straight_through():
    q = VectorQuantizer(QuantizerConfig(num_codes=16, dim=8, ema=False, kmeans_init=False)).eval()
    x = torch.randn(5, 3, 8, requires_grad=True)
    out = q(x)
    z = F.normalize(x.detach(), dim=-1)
    brute = torch.cdist(z.reshape(-1, 8), F.normalize(q.codebook.detach(), dim=-1)).argmin(1)
    assert torch.equal(out.indices.reshape(-1), brute)
    assert torch.allclose(out.quantized, out.codes, atol=1e-6)  # forward value: the codes
    assert torch.allclose(out.codes.norm(dim=-1), torch.ones(5, 3))  # L2-normalised codebook
    out.quantized.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradient reaches the encoder through the codes
    assert 1.0 <= float(out.perplexity) <= 15.0 and 0 < float(out.usage) <= 1


def test_ema_moves_codes_and_dead_codes_restart():
    cfg = QuantizerConfig(
        num_codes=8, dim=4, decay=0.5, kmeans_init=False, restart_every=1, restart_ratio=0.5
    )
    torch.manual_seed(0)  # the random codebook: with two codes near-tied for ``target`` the batch would split
    q = VectorQuantizer(cfg).train()
    g = torch.Generator().manual_seed(0)
    # All vectors near one direction: one code gets them all, the others are dead.
    target = F.normalize(torch.tensor([1.0, 2.0, -1.0, 0.5]), dim=0)
    x = target + 0.01 * torch.randn(64, 4, generator=g)
    before = q.codebook.clone()
    out = q(x, g)
    used = int(out.indices[0])
    assert torch.allclose(out.indices, out.indices[0].expand_as(out.indices))
    # The used code moved halfway (decay 0.5) toward the mean of its vectors, then was renormalised.
    mean = F.normalize(F.normalize(x, dim=-1).mean(0), dim=0)
    expect = F.normalize(0.5 * before[used] + 0.5 * mean, dim=0)
    assert torch.allclose(q.codebook[used], expect, atol=1e-5)
    # Every other code was dead and was reset to a jittered input vector.
    others = [i for i in range(8) if i != used]
    assert (q.codebook[others] @ target > 0.99).all()
    assert not torch.allclose(q.codebook[others], before[others])


def test_kmeans_init_covers_clusters():
    g = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    x = (centres[torch.arange(400) % 4] + 0.02 * torch.randn(400, 6, generator=g)).reshape(400, 6)
    q = VectorQuantizer(QuantizerConfig(num_codes=4, dim=6, restart_every=0)).train()
    out = q(x, g)
    assert bool(q.initialized) and float(out.usage) == 1.0
    assert (q.codebook @ centres.t()).max(0).values.min() > 0.99  # every cluster has its code


def test_tiny_vqvae_learns_to_reconstruct():
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_motion(), width=48, quantizer=QuantizerConfig(num_codes=32, decay=0.9))
    task = MotionVQTask(cfg)
    # Fields of a few rigid translations: learnable from 8 tokens.
    g = torch.Generator().manual_seed(0)
    base = torch.randn(8, 2, 1, 1, 1, generator=g) * 2
    motion = base.expand(8, 2, 16, 4, 4).clone()
    motion[:, :, 0] = 0  # the keyframe has no motion
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        out = task({"motion": motion}, g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["recon"])
    assert float(out["recon"]) < 0.5 * first
    model = task.model.eval()
    ids = model.tokenize(motion)
    assert ids.shape == (8, 8) and ids.dtype == torch.long
    assert torch.allclose(model.detokenize(ids), model(motion).recon, atol=1e-5)
    with pytest.raises(ValueError, match="token ids"):
        model.detokenize(torch.full((1, 8), 32))
    with pytest.raises(ValueError, match="motion must be"):
        model(torch.zeros(1, 2, 8, 4, 4))


def test_codebook_by_gradient_has_a_codebook_loss():
    cfg = MotionVQConfig(num_frames=4, grid=(4, 4), width=32, heads=2, stage_depths=(1,), strides=((2, 2, 2),),
                         quantizer=QuantizerConfig(num_codes=8, dim=4, ema=False))  # fmt: skip
    task = MotionVQTask(cfg, beta=0.25)
    out = task({"motion": torch.randn(2, 2, 4, 4, 4)}, torch.Generator().manual_seed(0))
    assert set(out) >= {"loss", "recon", "commit", "codebook", "perplexity", "usage"}
    out["loss"].backward()
    assert task.model.quantizer.codebook.grad is not None
    assert MotionVQVAE(cfg).tokens_grid == (2, 2, 2)
