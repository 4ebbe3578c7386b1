"""An exponential-moving-average target the trainer steps: ``target ← m·target + (1 − m)·source``.

Self-distillation methods (V-JEPA, BYOL, DINO) predict the output of a *target* network whose weights are a
slow average of the trained one. The task builds both modules (it needs the target in its forward) and the
recipe declares them by name in ``TrainConfig.ema``; the trainer, not the task's forward, applies the rule
after every optimizer update. The target's parameters never require gradients and are never optimised, but
they are model weights like any other: they go into every checkpoint and a resumed run restores them
bit-identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vidfm.train.schedule import momentum_schedule


@dataclass
class EMAConfig:
    """Which submodule of the task follows which, and the momentum schedule.

    source: dotted name of the trained module (``task.get_submodule(source)``).
    target: dotted name of its average; same parameter names and shapes as ``source``.
    momentum, momentum_end: the linear ramp of :func:`~vidfm.train.schedule.momentum_schedule`.
    horizon: the ramp spans ``horizon × steps`` updates (V-JEPA ``ipe_scale`` 1.25).
    """

    source: str = "context_encoder"
    target: str = "encoder"
    momentum: float = 0.998
    momentum_end: float = 1.0
    horizon: float = 1.25


class EMA:
    """Holds the (source, target) parameter pairs of a task and applies one update per optimizer step.

    Args:
        task: the raw task module (not a DDP wrapper); both submodules must exist in it.
        cfg: names and schedule.
        steps: the run's optimizer updates; ``momentum[i]`` is used after update ``i``.
    """

    def __init__(self, task: nn.Module, cfg: EMAConfig, steps: int) -> None:
        self.source, self.target = _submodule(task, cfg.source), _submodule(task, cfg.target)
        src = dict(self.source.named_parameters())
        tgt = dict(self.target.named_parameters())
        if src.keys() != tgt.keys():
            diff = sorted(src.keys() ^ tgt.keys())[:6]
            raise ValueError(f"EMA: {cfg.source!r} and {cfg.target!r} differ in parameters, e.g. {diff}")
        for name, p in src.items():
            if p.shape != tgt[name].shape:
                raise ValueError(
                    f"EMA: {name} is {tuple(p.shape)} in the source, {tuple(tgt[name].shape)} in the target"
                )
            if p is tgt[name]:
                raise ValueError(f"EMA: {cfg.source!r} and {cfg.target!r} share parameter {name}")
        self.target.requires_grad_(
            False
        )  # declared frozen: the optimizer skips it, backward never reaches it
        self.names = list(src)
        self.momentum: np.ndarray = momentum_schedule(cfg.momentum, cfg.momentum_end, steps, cfg.horizon)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Apply the rule with ``momentum[step]`` to every parameter (buffers are constants and stay).

        Parameters are looked up now, not at construction, so a wrapper that replaced them in place (FSDP2
        DTensors) is followed. The arithmetic is official V-JEPA's ``param_k.mul_(m).add_((1 - m) · param_q)``.
        """
        m = float(self.momentum[step])
        src = dict(self.source.named_parameters())
        tgt = dict(self.target.named_parameters())
        targets = [tgt[n] for n in self.names]
        torch._foreach_mul_(targets, m)
        torch._foreach_add_(targets, torch._foreach_mul([src[n].detach() for n in self.names], 1.0 - m))


def _submodule(task: nn.Module, name: str) -> nn.Module:
    try:
        return task.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in task.named_children()]
        raise ValueError(
            f"EMA: {type(task).__name__} has no submodule {name!r}; its children: {names}"
        ) from None
