"""Image MAE on video frames: MAE's target, the step, the encoder it trains, and recipe checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidfm.layers.pos_embed import sincos_3d
from vidfm.recipes.mae_image import config, image_encoder
from vidfm.recipes.mae_image import tiny as mae_tiny
from vidfm.tasks.mae_image import MAEImageTask, mae_pixel_target
from vidfm.teachers.vit import is_image_encoder
from vidfm.utils import make_generator


def small_task() -> MAEImageTask:
    cfg = mae_tiny()
    torch.manual_seed(0)
    encoder = image_encoder("T/8", img_size=32, depth=1, width=32, heads=2)
    return MAEImageTask(encoder, cfg.decoder, cfg.mask, dataclasses.replace(cfg.augment, size=32))


def test_target_is_maes_per_patch_normalised_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(2, 3, 1, 16, 16, generator=g)
    # official models_mae.py: patchify 'nchpwq->nhwpqc', then (x - mean) / (var + 1e-6) ** .5 over the patch
    x = raw[:, :, 0].reshape(2, 3, 2, 8, 2, 8)
    ref = torch.einsum("nchpwq->nhwpqc", x).reshape(2, 4, 8 * 8 * 3)
    ref = (ref - ref.mean(-1, keepdim=True)) / (ref.var(-1, keepdim=True) + 1e-6) ** 0.5
    torch.testing.assert_close(mae_pixel_target(raw, 8), ref)
    plain = mae_pixel_target(raw, 8, normalize=False)
    torch.testing.assert_close(plain, torch.einsum("nchpwq->nhwpqc", x).reshape(2, 4, -1))


def test_step_trains_an_image_encoder_on_every_frame() -> None:
    task = small_task()
    assert is_image_encoder(task.encoder) and task.encoder.cls_token is not None
    torch.testing.assert_close(
        task.decoder.pos_embed[0], sincos_3d((1, 4, 4), task.decoder.pos_embed.shape[-1])
    )
    video = torch.randint(
        0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    out = task({"video": video}, make_generator(0, 0))
    assert set(out) == {"loss"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert task.encoder.cls_token.grad is not None and task.decoder.head.weight.grad is not None


def test_step_learns() -> None:
    # a few AdamW steps on one batch lower the loss: the target is learnable through the masked decoder
    task = small_task()
    video = torch.randint(
        0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    opt = torch.optim.AdamW(task.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = task({"video": video}, make_generator(0, 0))["loss"]  # same mask every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_video_encoder_is_rejected_and_variants() -> None:
    cfg = mae_tiny()
    with pytest.raises(ValueError, match="tubelet=1"):
        MAEImageTask(
            dataclasses.replace(cfg.encoder, tubelet=2, num_frames=16), cfg.decoder, cfg.mask, cfg.augment
        )
    assert config("").mask.ratio == 0.75 and config("").mask.kind == "random"
    assert config("").decoder.depth == 8 and config("").decoder.width == 512
    with pytest.raises(ValueError, match="variants"):
        config("huge")
