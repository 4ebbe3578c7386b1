"""Run any recipe: resolve its config, build its dataset and task, hand them to the one trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vidfm.recipes.base import Recipe
from vidfm.train.trainer import Trainer


def resolve(cfg: Recipe) -> Recipe:
    """The config a run starts from and saves: the recipe's :meth:`~vidfm.recipes.base.Recipe.prepare`
    (checks, derived fields). The lr rule stays as written (``train.lr`` or ``train.blr``); the trainer
    derives the peak lr from it."""
    return cfg.prepare()


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
    task = cfg.build_task()
    trainer = Trainer(
        task, cfg.train, Path(run_dir), dataset, collate_fn, config_to_save=cfg, on_log=on_log, force=force
    )
    return trainer.fit()
