"""The typed recipe every method's config derives from: fixed sections, declared optional hooks.

A recipe is data (a dataclass written to ``RUN/config.yaml``) plus the few methods that turn it into
training parts. Callers (``pretrain``, eval, the demo) call these methods; they never probe a config for
attributes. Every recipe has:

- ``recipe``: its registry name (:data:`vidfm.recipes.RECIPES`);
- ``data``: what the training dataset reads; ``train``: the trainer's settings, including the lr rule
  (``train.lr`` or ``train.blr``, :class:`vidfm.train.config.TrainConfig`);
- method parts as further typed fields with fixed names where they exist: ``encoder`` (the student),
  ``decoder``, ``augment`` (crop and normalisation), ``mask``, ``teacher``/``teachers``.

Hooks with a default here (override to opt in): :meth:`Recipe.prepare`, :meth:`Recipe.training_data`,
:meth:`Recipe.dual_encoder` together with ``has_text_tower``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from torch import nn
from torch.utils.data import Dataset

from vidfm.data.config import DataConfig
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig

Collate = Callable[[list], dict]


@dataclass
class Recipe:
    """Base of every recipe config (see the module docstring)."""

    recipe: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # Whether :meth:`dual_encoder` rebuilds a video-language model (retrieval, zero-shot) from a run.
    has_text_tower: ClassVar[bool] = False

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        """The task ``(batch, generator) -> {"loss", parts}``; teachers come from ``targets`` (live teachers,
        or cached targets when the run has a teacher cache)."""
        raise NotImplementedError(f"{type(self).__name__} does not define build_task")

    def prepare(self) -> Self:
        """Checks and derived fields before a run starts (e.g. sizes read from another run); the result is
        what the run saves. Default: unchanged."""
        return self

    def training_data(self, seed: int) -> tuple[Dataset, Collate | None]:
        """(dataset, collate) the trainer draws batches from. Default: clips of ``data.manifest``."""
        from vidfm.data.config import build_dataset
        from vidfm.data.datasets import collate

        return build_dataset(self.data, seed=seed), collate

    def dual_encoder(self, run_dir: str | Path) -> nn.Module:
        """The :class:`~vidfm.models.heads.DualEncoder` of a trained run; only recipes with
        ``has_text_tower`` have one."""
        raise ValueError(
            f"{self.recipe!r} runs have no text tower (retrieval needs umt_stage2, clip_image, ...)"
        )
