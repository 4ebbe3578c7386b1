"""Fine-tuning: batch mixup/cutmix and smoothed targets, layer-wise lr decay groups, and a short run
through the one trainer from a pre-trained run, tested with multi-view averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidfm.tasks.classify import MixupConfig, cutmix_box, mix_batch, smooth_one_hot


def test_smoothed_targets() -> None:
    y = smooth_one_hot(torch.tensor([0, 2]), 4, 0.1)
    torch.testing.assert_close(y.sum(1), torch.ones(2))
    assert y[0, 0] == pytest.approx(0.9 + 0.025) and y[0, 1] == pytest.approx(0.025)


def test_mixup_mixes_clips_and_targets_with_one_lambda() -> None:
    video = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 3, 2, 8, 8).contiguous()
    labels = torch.tensor([0, 1, 2, 3])
    g = torch.Generator().manual_seed(0)
    mixed, target, lam = mix_batch(video, labels, 4, MixupConfig(cutmix=0.0), 0.0, g)
    assert 0 < lam < 1
    # clip i is lam * clip i + (1 - lam) * clip B-1-i, and so is its target
    torch.testing.assert_close(
        mixed[:, 0, 0, 0, 0], lam * torch.arange(4.0) + (1 - lam) * torch.arange(3.0, -1, -1)
    )
    torch.testing.assert_close(target[0], torch.tensor([lam, 0, 0, 1 - lam]))
    torch.testing.assert_close(target.sum(1), torch.ones(4))


def test_cutmix_pastes_a_tube_and_corrects_lambda() -> None:
    video = torch.zeros(2, 3, 4, 16, 16)
    video[1] = 1.0
    g = torch.Generator().manual_seed(3)
    mixed, target, lam = mix_batch(video, torch.tensor([0, 1]), 2, MixupConfig(mixup=0.0), 0.0, g)
    pasted = mixed[0, 0].mean(dim=(1, 2))  # per frame: the pasted fraction of clip 0
    assert torch.allclose(pasted, pasted[0].expand(4))  # the same box through every frame
    assert float(pasted[0]) == pytest.approx(1 - lam)  # λ is the area actually kept
    assert target[0, 0] == pytest.approx(lam)
    rng = np.random.default_rng(0)
    top, bottom, left, right = cutmix_box(16, 16, 0.75, rng)
    assert 0 <= top <= bottom <= 16 and 0 <= left <= right <= 16


def test_no_mixing_when_off() -> None:
    video = torch.randn(2, 3, 2, 8, 8)
    out, target, lam = mix_batch(video, torch.tensor([1, 0]), 2, MixupConfig(prob=0.0), 0.1, None)
    assert lam == 1.0 and torch.equal(out, video)
    torch.testing.assert_close(target, smooth_one_hot(torch.tensor([1, 0]), 2, 0.1))


def test_layer_decay_groups(tiny_run, digits) -> None:
    from vidfm.eval.finetune import finetune_config
    from vidfm.train.optim import param_groups

    task = finetune_config(tiny_run, str(digits), "motion").build_task()
    groups = param_groups(task, 0.05, layer_id=task.layer_id, layer_decay=0.75, num_layers=task.num_layers)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    assert task.num_layers == 1  # embeddings 0.75², block 0 0.75, fc_norm and head 1 (VideoMAE's rule)
    assert scale["encoder.patch_embed.proj.weight"] == pytest.approx(0.75**2)
    assert scale["encoder.blocks.0.attn.qkv.weight"] == pytest.approx(0.75)
    assert scale["head.weight"] == 1.0 and scale["fc_norm.weight"] == 1.0
    assert finetune_config(tiny_run, str(digits), "motion", overrides=["encoder.depth=2"]).encoder.depth == 2


def test_finetune_run_through_the_trainer(tiny_run, digits, tmp_path) -> None:
    import json

    from vidfm.eval.finetune import evaluate_classifier, finetune_config, run_finetune
    from vidfm.recipes import load_run_config, load_run_encoder

    fast = [
        "train.steps=2",
        "train.batch_size=4",
        "train.warmup_steps=0",
        "train.workers=0",
        "train.ckpt_every=0",
    ]
    cfg = finetune_config(tiny_run, str(digits), "motion", overrides=fast)
    assert cfg.num_classes == 8 and not cfg.encoder.final_norm and cfg.encoder.drop_path == 0.1
    task = cfg.build_task()
    pretrained, _ = load_run_encoder(tiny_run)
    assert torch.equal(task.encoder.blocks[0].mlp.fc1.weight, pretrained.blocks[0].mlp.fc1.weight)

    res = run_finetune(cfg, tmp_path / "ft", progress=False)
    assert 0.0 <= res.top1 <= 1.0 and res.views == "2x1" and res.top5 is not None
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and {"loss", "acc"} <= set(rows[-1])
    assert load_run_config(tmp_path / "ft").num_classes == 8
    tuned, _ = load_run_encoder(tmp_path / "ft")  # a fine-tuned run is a checkpoint like any other
    assert not torch.equal(tuned.blocks[0].mlp.fc1.weight, pretrained.blocks[0].mlp.fc1.weight)
    again = run_finetune(cfg, tmp_path / "ft", progress=False)  # finished: only tested again
    assert again.top1 == res.top1
    other = finetune_config(tiny_run, str(digits), "motion", overrides=fast + ["label_smoothing=0.2"])
    with pytest.raises(ValueError, match="another config"):  # never resume a run with other settings
        run_finetune(other, tmp_path / "ft", progress=False)
    top1, _ = evaluate_classifier(task.eval(), cfg, clips=1, crops=3, progress=False)
    assert 0.0 <= top1 <= 1.0


def test_finetune_errors(tiny_run, digits) -> None:
    from vidfm.eval.finetune import finetune_config

    with pytest.raises(KeyError, match="nope"):
        finetune_config(tiny_run, str(digits), "nope")
    with pytest.raises(ValueError, match="does not fit"):  # another architecture cannot start the encoder
        finetune_config(tiny_run, str(digits), "motion", overrides=["encoder.width=64"]).build_task()
