"""V-JEPA end to end on a tiny digits-motion set: the EMA target never gets gradients and follows the rule
exactly inside the trainer, and a killed run resumes with the target restored bit-identically."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_clips import CLIPS_32, small_run

from vidfm.config import apply_overrides
from vidfm.recipes.vjepa import tiny
from vidfm.train.checkpoint import latest_checkpoint
from vidfm.train.ema import EMA, EMAConfig
from vidfm.train.pretrain import pretrain
from vidfm.train.schedule import momentum_schedule

RECIPE = [
    "train.warmup_steps=1",
    "train.ema.momentum=0.9",  # far from 1, so an update that is skipped or doubled shows
]


SMALL = [*CLIPS_32, *RECIPE]


def small_cfg(manifest, steps: int):
    return small_run(tiny(), manifest, steps, RECIPE)


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_momentum_schedule_is_the_official_ramp():
    m = momentum_schedule(0.998, 1.0, 400, horizon=1.25)
    # official: (ema[0] + i*(ema[1]-ema[0])/(ipe*num_epochs*ipe_scale) for i in range(...))
    expected = [0.998 + i * (1.0 - 0.998) / (400 * 1.25) for i in range(400)]
    assert np.array_equal(m, np.array(expected))
    assert m[-1] < 1.0


def test_ema_update_is_the_rule():
    src, tgt = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    task = torch.nn.ModuleDict({"context_encoder": src, "encoder": tgt})
    ema = EMA(task, EMAConfig(momentum=0.9, momentum_end=0.5, horizon=1.0), steps=4)
    before = params(tgt)
    ema.update(2)  # momentum 0.9 - 2 * 0.4 / 4 = 0.7
    m = 0.9 + 2 * (0.5 - 0.9) / 4
    for name, p in tgt.named_parameters():
        assert torch.equal(p, before[name].mul(m).add((1 - m) * dict(src.named_parameters())[name]))
    assert not any(p.requires_grad for p in tgt.parameters())


def test_ema_refuses_mismatched_modules():
    task = torch.nn.ModuleDict({"context_encoder": torch.nn.Linear(3, 4), "encoder": torch.nn.Linear(3, 5)})
    with pytest.raises(ValueError, match="weight is"):
        EMA(task, EMAConfig(), steps=2)
    with pytest.raises(ValueError, match="no submodule 'teacher'"):
        EMA(task, EMAConfig(target="teacher"), steps=2)


def test_target_gets_no_gradient_and_follows_the_rule_in_the_trainer(manifest, tmp_path):
    cfg = small_cfg(manifest, 4)
    seen = []  # (context, target) parameters after each step, as the trainer leaves them

    torch.manual_seed(cfg.train.seed)
    task = cfg.build_task()
    start_target, start_context = params(task.encoder), params(task.context_encoder)
    assert all(torch.equal(start_target[k], start_context[k]) for k in start_target)  # a copy at step 0

    from vidfm.data.config import build_dataset
    from vidfm.data.datasets import collate
    from vidfm.train.trainer import Trainer

    trainer = Trainer(
        task,
        cfg.train,
        tmp_path / "run",
        build_dataset(cfg.data, seed=cfg.train.seed),
        collate,
        config_to_save=cfg,
        on_log=lambda r: seen.append((params(task.context_encoder), params(task.encoder), r["momentum"])),
    )
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in optimised for p in task.encoder.parameters())
    trainer.fit()
    assert len(seen) == 4
    assert all(p.grad is None and not p.requires_grad for p in task.encoder.parameters())
    assert all(p.grad is None for p in task.context_encoder.parameters())  # zeroed after each step
    momentum = momentum_schedule(0.9, 1.0, 4, horizon=1.25)
    target = start_target
    for i, (context, new_target, logged) in enumerate(seen):
        m = float(momentum[i])
        assert logged == m
        for k in target:  # the rule with the context weights just updated, bit for bit
            assert torch.equal(new_target[k], target[k].mul(m).add((1 - m) * context[k])), (i, k)
        target = new_target
    assert not torch.equal(target["blocks.0.mlp.fc1.weight"], start_target["blocks.0.mlp.fc1.weight"])


def losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("loss") is not None]


def test_kill_and_resume_restores_the_target_bit_identically(manifest, tmp_path):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    pretrain(small_cfg(manifest, 6), full)

    def kill_at_step_4(record: dict) -> None:
        if record["step"] == 4:
            raise KeyboardInterrupt  # dies after step 4; its last checkpoint is step 3

    with pytest.raises(KeyboardInterrupt):
        pretrain(small_cfg(manifest, 6), stopped, on_log=kill_at_step_4)
    at3 = load_file(str(latest_checkpoint(stopped) / "model.safetensors"))
    assert any(k.startswith("encoder.") for k in at3) and any(k.startswith("context_encoder.") for k in at3)
    assert not torch.equal(
        at3["encoder.blocks.0.attn.proj.weight"], at3["context_encoder.blocks.0.attn.proj.weight"]
    )
    summary = pretrain(small_cfg(manifest, 6), stopped)
    assert summary["resumed"] and summary["step"] == 6
    a, b = losses(full), losses(stopped)
    assert len(a) == len(b) == 6 and all(np.isfinite(a))
    assert a[3:] == b[3:]  # steps 4-6 repeat exactly, which needs the step-3 target back as it was
    wa = load_file(str(full / "checkpoints/step_00000006/model.safetensors"))
    wb = load_file(str(stopped / "checkpoints/step_00000006/model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_predictor_and_context_encoder_learn_a_fixed_batch():
    """Gradients reach the context encoder and the predictor; on one batch the loss falls."""
    cfg = apply_overrides(tiny(), SMALL)
    torch.manual_seed(0)
    task = cfg.build_task()
    batch = {"video": torch.randint(0, 256, (4, 8, 32, 32, 3), dtype=torch.uint8)}
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=2e-3)
    first = None
    for _ in range(30):
        out = task(batch, torch.Generator().manual_seed(0))  # the same crop and masks every time
        first = first if first is not None else out["loss"].item()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["loss"].item() < 0.7 * first, (first, out["loss"].item())
    assert all(p.grad is not None for p in task.context_encoder.parameters())
    assert all(p.grad is not None for n, p in task.predictor.named_parameters())
    assert all(p.grad is None for p in task.encoder.parameters())


def test_config_round_trips_through_yaml(tmp_path):
    from vidfm.config import config_from_dict, save_config
    from vidfm.recipes import load_run_config

    cfg = apply_overrides(tiny(), ["train.ema.momentum=0.95"])
    save_config(cfg, tmp_path / "config.yaml")
    back = load_run_config(tmp_path)
    assert back == cfg and back.train.ema.momentum == 0.95 and back.masks[1].num_blocks == 2
    assert config_from_dict(type(cfg), {"train": {"ema": None}}).train.ema is None
    with pytest.raises(ValueError, match="needs train.ema"):
        apply_overrides(tiny(), ["train.ema=none"]).build_task()
