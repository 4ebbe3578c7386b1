"""The VideoMAE recipe end to end on a tiny real digits-motion set: steps run, the loss learns, resume repeats."""

import json

import pytest
import torch
from tiny_clips import CLIPS_32, small_run

from vidfm.config import apply_overrides
from vidfm.masking import tube_mask
from vidfm.recipes.videomae import tiny
from vidfm.train.pretrain import pretrain

RECIPE = [
    "train.lr=1e-3",
    "train.warmup_steps=1",
]


SMALL = [*CLIPS_32, *RECIPE]


def small_cfg(manifest, steps: int):
    return small_run(tiny(), manifest, steps, RECIPE)


def losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("loss") is not None]


def test_recipe_trains_and_resume_repeats_the_losses(manifest, tmp_path):
    full = tmp_path / "full"
    pretrain(small_cfg(manifest, 6), full)
    stopped = tmp_path / "stopped"

    def kill_at_step_4(record: dict) -> None:
        if record["step"] == 4:
            raise KeyboardInterrupt  # the run dies after step 4; its last checkpoint is step 3

    with pytest.raises(KeyboardInterrupt):
        pretrain(small_cfg(manifest, 6), stopped, on_log=kill_at_step_4)
    summary = pretrain(small_cfg(manifest, 6), stopped)  # resumes by default
    assert summary["resumed"] and summary["step"] == 6
    a, b = losses(full), losses(stopped)
    assert len(a) == len(b) == 6
    assert all(torch.isfinite(torch.tensor(a)))
    assert a[3:] == b[3:]  # fp32 on CPU: the resumed steps are bit-identical


def test_decoder_learns_a_fixed_batch():
    """Gradients reach every part: on one fixed batch and mask the loss must fall far below its start."""
    cfg = apply_overrides(tiny(), SMALL)
    torch.manual_seed(0)
    task = cfg.build_task()
    g = torch.Generator().manual_seed(0)
    video = task.augment(torch.randint(0, 256, (4, 8, 32, 32, 3), dtype=torch.uint8), g, train=False)
    mask = tube_mask(4, task.encoder.grid, 0.9, g, torch.device("cpu"))
    opt = torch.optim.AdamW(task.parameters(), lr=2e-3)
    first = None
    for _ in range(40):
        pred, target = task.reconstruct(video, mask)
        loss = torch.nn.functional.mse_loss(pred, target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first, (first, loss.item())
    assert all(p.grad is not None for p in task.parameters() if p.requires_grad)
