"""Declared frozen modules: never optimised, never checkpointed, always in eval mode.

A module is frozen because of what it is, not what it is called: teachers derive from :class:`Frozen`
(:class:`vidfm.teachers.base.Teacher`), and any other module a task keeps fixed (a frozen text tower, the
motion VQ-VAE a detokenizer conditions on) is wrapped in :class:`FrozenModule`. The trainer, the optimizer's
parameter groups, checkpoints and the DDP/FSDP wrappers all leave out the submodules
:func:`frozen_module_names` finds.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class Frozen(nn.Module):
    """Base of frozen modules: ``train()`` keeps them in eval mode whatever their parent does."""

    def train(self, mode: bool = True) -> Frozen:
        return super().train(False)


class FrozenModule(Frozen):
    """``module`` frozen (no gradients, eval mode); calls and attribute reads go through to it.

    Args:
        module: the module to hold fixed; its weights come from its own source (a pre-trained folder or
            another run), never from the task's checkpoint.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)  # width, cfg, word_embeddings, ... as the task reads them


def frozen_module_names(model: nn.Module) -> tuple[str, ...]:
    """Names of the outermost :class:`Frozen` submodules of ``model`` (``model`` itself excluded)."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name and isinstance(module, Frozen) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return tuple(names)
