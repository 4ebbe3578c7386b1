"""Run any recipe: resolve its config, build its dataset and task, hand them to the one trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from vidfm.recipes.base import Recipe
from vidfm.teachers.targets import LIVE
from vidfm.train.trainer import Trainer


def resolve(cfg: Recipe) -> Recipe:
    """The config a run starts from and saves: the recipe's :meth:`~vidfm.recipes.base.Recipe.prepare`
    (checks, derived fields). The lr rule stays as written (``train.lr`` or ``train.blr``); the trainer
    derives the peak lr from it."""
    return cfg.prepare()


def build_run_task(cfg: Recipe) -> nn.Module:
    """The run's task with its teacher targets: from its teacher cache (``train.teacher_cache``; the
    teachers are never loaded, the trainer serves each clip's cached views) or from the live teachers."""
    if not cfg.train.teacher_cache:
        return cfg.build_task(LIVE)
    from vidfm.teachers.cache import TeacherCache

    targets = TeacherCache(cfg.train.teacher_cache).targets()
    task = cfg.build_task(targets)
    targets.check_all_used()
    return task


def pretrain(
    cfg: Recipe, run_dir: str | Path, on_log: Callable[[dict], None] | None = None, force: bool = False
) -> dict:
    """Train ``cfg`` (a recipe config) into ``run_dir``; resumes when the folder holds a checkpoint.

    ``on_log`` receives every logged record (step, loss, lr, …), e.g. for a caller's own progress report.
    ``force``: resume even when the run was trained with a config that differs in more than its step
    budget (see :mod:`vidfm.train.run_config`); without it such a resume is refused.
    """
    cfg = resolve(cfg)
    dataset, collate_fn = cfg.training_data(seed=cfg.train.seed)
    torch.manual_seed(cfg.train.seed)  # the initial weights come from the run's seed, not from earlier work
    task = build_run_task(cfg)
    trainer = Trainer(
        task, cfg.train, Path(run_dir), dataset, collate_fn, config_to_save=cfg, on_log=on_log, force=force
    )
    return trainer.fit()
