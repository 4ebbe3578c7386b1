"""Run any recipe: resolve its config, build its dataset and task, hand them to the one trainer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vidfm.data.config import build_dataset
from vidfm.train.trainer import Trainer, dist_info


def resolve(cfg: Any) -> Any:
    """Apply the linear lr scaling rule: train.lr = blr × effective batch / 256, when the recipe has a blr."""
    blr = getattr(cfg, "blr", None)
    if blr is None:
        return cfg
    _, world = dist_info()
    batch = cfg.train.batch_size * cfg.train.accum_steps * world
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=blr * batch / 256))


def pretrain(cfg: Any, run_dir: str | Path, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train ``cfg`` (a recipe config) into ``run_dir``; resumes when the folder holds a checkpoint.

    ``on_log`` receives every logged record (step, loss, lr, …), e.g. for a caller's own progress report.
    """
    from vidfm.data.datasets import collate

    cfg = resolve(cfg)
    if hasattr(cfg, "prepare"):  # recipe-specific checks and derived fields (Video-LaVIT stages)
        cfg = cfg.prepare()
    if hasattr(cfg, "build_dataset"):  # data that are not clips of a manifest (Video-LaVIT motion fields)
        dataset, collate_fn = cfg.build_dataset(seed=cfg.train.seed), None
    else:
        dataset, collate_fn = build_dataset(cfg.data, seed=cfg.train.seed), collate
    torch.manual_seed(cfg.train.seed)  # the initial weights come from the run's seed, not from earlier work
    task = cfg.build_task()
    trainer = Trainer(task, cfg.train, Path(run_dir), dataset, collate_fn, config_to_save=cfg, on_log=on_log)
    return trainer.fit()
