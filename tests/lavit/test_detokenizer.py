"""Video detokenizer: EDM preconditioning and schedule, sampling, inversion, the training step."""

from __future__ import annotations

import pytest
import torch

from vidfm.lavit.detokenizer import Detokenizer, DetokenizerConfig, drop_motion, to_uint8, to_unit
from vidfm.lavit.warp import warp_keyframe
from vidfm.tasks.detokenizer import DetokenizerTask, edm_loss

CFG = DetokenizerConfig(num_frames=4, size=16, channels=(8, 16), blocks=1, heads=2, steps=12)


def batch(b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.randint(0, 256, (b, 4, 16, 16, 3), generator=g, dtype=torch.uint8),
        "motion": torch.randn(b, 2, 4, 2, 2, generator=g),
    }


def test_schedule_is_edm():
    det = Detokenizer(CFG)
    s = det.schedule()
    assert len(s) == 13 and float(s[-1]) == 0.0
    assert torch.isclose(s[0], torch.tensor(80.0)) and torch.isclose(s[-2], torch.tensor(0.002))
    assert (s[1:] < s[:-1]).all()


def test_untrained_denoiser_is_the_skip_connection():
    # The output layer starts at zero, so D(x; sigma) = c_skip x = sigma_d^2 / (sigma^2 + sigma_d^2) x.
    det = Detokenizer(CFG)
    b = batch()
    cond = det.condition(b["frames"][:, 0], b["motion"])
    assert cond.shape == (2, 6, 4, 16, 16)
    x = torch.randn(2, 3, 4, 16, 16)
    sigma = torch.tensor([0.5, 3.0])
    expect = x * (0.25 / (sigma**2 + 0.25)).view(-1, 1, 1, 1, 1)
    assert torch.allclose(det.denoise(x, sigma, cond), expect, atol=1e-6)
    with pytest.raises(ValueError, match="keyframe"):
        det.condition(b["frames"][:, 0, :8], b["motion"])


def test_inversion_then_sampling_returns_the_frame():
    det = Detokenizer(CFG).eval()
    b = batch(1)
    frame = b["frames"][:, 2]
    noise = det.invert(frame, b["frames"][:, 0], b["motion"], steps=18)
    assert noise.shape == (1, 3, 4, 16, 16) and float(noise.std()) > 10  # out at sigma_max
    out = det.sample(b["frames"][:, 0], b["motion"], noise=noise, steps=18)
    assert out.shape == (1, 4, 16, 16, 3) and out.dtype == torch.uint8
    err = (out.float() - frame[:, None].float()).abs().mean()
    assert err < 1.5  # every frame regenerates the inverted one (mean error in 0..255 levels)
    fresh = det.sample(b["frames"][:, 0], b["motion"], steps=4, generator=torch.Generator().manual_seed(0))
    assert (fresh.float() - frame[:, None].float()).abs().mean() > 20


def test_unit_round_trip():
    frames = batch()["frames"]
    assert torch.equal(to_uint8(to_unit(frames)), frames)


def test_training_step_overfits_a_fixed_draw():
    torch.manual_seed(0)
    task = DetokenizerTask(CFG)
    b = batch()
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = task(b, torch.Generator().manual_seed(3))  # the same sigma and noise every step
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert set(out) == {"loss", "mse"} and losses[-1] < 0.75 * losses[0]
    with pytest.raises(ValueError, match="frames"):
        task({"frames": b["frames"][:, :3], "motion": b["motion"]}, torch.Generator())


def test_edm_loss_weight():
    clean, den = torch.zeros(1, 4), torch.ones(1, 4)
    sigma = torch.tensor([1.0])
    assert torch.isclose(edm_loss(den, clean, sigma, 0.5), torch.tensor((1 + 0.25) / 0.25))


@pytest.mark.parametrize("base", ["repeat", "warp"])
def test_residual_denoiser_starts_at_its_base(base):
    # D(x; sigma) = b + c_skip (x - b) + c_out F with F = 0 at init: the base clip is a fixed point at every
    # noise level, so the untrained detokenizer already reproduces keyframe-repeat (or the warped keyframe).
    cfg = DetokenizerConfig(**{**CFG.__dict__, "base": base, "sigma_data": 0.1})
    det = Detokenizer(cfg)
    b = batch()
    key = b["frames"][:, 0]
    cond = det.condition(key, b["motion"])
    repeat = to_unit(key[:, None]).expand(-1, -1, 4, -1, -1)
    want = repeat if base == "repeat" else warp_keyframe(repeat[:, :, 0], b["motion"])
    assert torch.allclose(det.base(cond), want, atol=1e-6)
    assert base == "repeat" or (want - repeat).abs().mean() > 0.01  # the motion moved it
    for sigma in (0.01, 0.5, 20.0):
        s = torch.full((2,), sigma)
        assert torch.allclose(det.denoise(want, s, cond), want, atol=1e-5)
    # the sampler started at the base (temperature 0) stays there
    out = det.sample(key, b["motion"], steps=4, temperature=0.0)
    assert (out.float() - to_uint8(want).float()).abs().max() <= 1
    # dropping the motion gives what zero motion gives: the repeat as base
    assert torch.allclose(drop_motion(cond), det.condition(key, torch.zeros_like(b["motion"])), atol=1e-6)


def test_residual_training_reaches_the_unet():
    cfg = DetokenizerConfig(**{**CFG.__dict__, "base": "warp", "sigma_data": 0.1, "p_mean": -2.8})
    torch.manual_seed(0)
    task = DetokenizerTask(cfg)
    unet = task.detokenizer.unet
    opt = torch.optim.SGD(task.parameters(), lr=0.1)
    # Zero-initialised layers (output, temporal convs, attention projection) pass gradients on from the
    # step after they first move: three steps reach every layer named below.
    for _ in range(3):
        opt.zero_grad()
        task(batch(), torch.Generator().manual_seed(1))["loss"].backward()
        opt.step()
    for p in (unet.out.conv.weight, unet.stem.conv.weight, unet.mid_attn.attn.qkv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
