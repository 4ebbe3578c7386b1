"""Optimizer parameter groups (weight-decay exclusions, layer-wise lr decay) and AdamW.

Each group carries ``lr_scale`` and ``wd_scale`` so the trainer applies its per-step arrays as
``g["lr"] = lr[step] * g["lr_scale"]`` and ``g["weight_decay"] = wd[step] * g["wd_scale"]``
(VideoMAE ``engine_for_pretraining.py`` / ``engine_for_finetuning.py`` do the same with ``lr_scale``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch
from torch import nn

from vidfm.layers.frozen import frozen_module_names

# Parameters named like these never get weight decay (timm/VideoMAE ``no_weight_decay()`` lists them).
NO_DECAY_KEYWORDS = ("pos_embed", "cls_token", "mask_token")

_BLOCK_RE = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def frozen_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes (``"name."``) of the model's declared frozen submodules (:mod:`vidfm.layers.frozen`):
    never optimised, never checkpointed."""
    return tuple(f"{name}." for name in frozen_module_names(model))


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full parameter names listed by ``no_weight_decay()`` of the model or any submodule.

    Names a submodule returns are relative to it, so they are prefixed with its path; matching is by
    suffix anyway, so a task may also list a submodule's names without the prefix.
    """
    names: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            names.update(f"{prefix}.{n}" if prefix else n for n in fn())
    return names


def _matches_suffix(name: str, suffixes: Iterable[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def vit_layer_id(name: str, num_layers: int, prefix: str = "") -> int:
    """Layer index of a ViT parameter for layer-wise lr decay, as VideoMAE ``get_num_layer_for_vit``.

    Embeddings (patch/pos/cls/mask tokens) are layer 0, ``blocks.i`` is layer ``i + 1``, everything else
    (final norm, heads) is ``num_layers + 1``. With ``prefix`` (e.g. ``"encoder."``) only names under it
    are treated as encoder parameters; the rest count as heads.
    """
    if prefix:
        if not name.startswith(prefix):
            return num_layers + 1
        name = name[len(prefix) :]
    if name.startswith("patch_embed") or any(k in name.split(".")[0] for k in NO_DECAY_KEYWORDS):
        return 0
    m = _BLOCK_RE.search("." + name)
    if m is not None:
        return int(m.group(1)) + 1
    return num_layers + 1


def param_groups(
    model: nn.Module,
    weight_decay: float,
    extra_no_decay: Iterable[str] = (),
    layer_id: Callable[[str], int] | None = None,
    layer_decay: float = 1.0,
    num_layers: int | None = None,
) -> list[dict]:
    """Split trainable parameters into AdamW groups.

    Args:
        model: the task (or any module); parameters under :func:`frozen_prefixes` or with
            ``requires_grad=False`` are left out.
        weight_decay: initial decay of the decayed groups (the trainer overwrites it every step).
        extra_no_decay: more parameter names (suffix match) without weight decay.
        layer_id: ``name -> layer index`` enabling layer-wise lr decay (e.g. :func:`vit_layer_id`).
        layer_decay: the decay factor; group ``lr_scale = layer_decay ** (num_layers + 1 - layer_id)``
            as BEiT/VideoMAE ``optim_factory.py`` (``LayerDecayValueAssigner``).
        num_layers: number of transformer blocks; required when ``layer_id`` is given.

    No weight decay (``wd_scale = 0``) for tensors with ``ndim <= 1`` (norms, biases, scalars), names
    containing :data:`NO_DECAY_KEYWORDS` in any dotted component, names from ``no_weight_decay()``
    of any submodule and ``extra_no_decay`` (suffix match). Every group has ``params``, ``param_names``,
    ``lr_scale``, ``wd_scale`` and ``weight_decay``.
    """
    if layer_id is not None and num_layers is None:
        raise ValueError("param_groups: layer_id needs num_layers")
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    frozen = frozen_prefixes(model)
    skip = no_weight_decay_names(model) | set(extra_no_decay)
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or name.startswith(frozen):
            continue
        no_decay = (
            p.ndim <= 1
            or any(k in part for part in name.split(".") for k in NO_DECAY_KEYWORDS)
            or _matches_suffix(name, skip)
        )
        wd_scale = 0.0 if no_decay else 1.0
        lr_scale = 1.0
        if layer_id is not None and layer_decay < 1.0:
            assert num_layers is not None
            lr_scale = layer_decay ** (num_layers + 1 - layer_id(name))
        g = groups.setdefault(
            (lr_scale, wd_scale),
            {
                "params": [],
                "param_names": [],
                "lr_scale": lr_scale,
                "wd_scale": wd_scale,
                "weight_decay": weight_decay * wd_scale,
            },
        )
        g["params"].append(p)
        g["param_names"].append(name)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters outside {frozen}")
    # Deterministic order (by lr scale, then decay) so the optimizer state maps back on resume.
    return [groups[k] for k in sorted(groups)]


def build_optimizer(
    groups: list[dict],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``groups`` (from :func:`param_groups`); ``fused=None`` means fused when all on CUDA."""
    if fused is None:
        fused = all(p.is_cuda for g in groups for p in g["params"])
    for g in groups:
        g.setdefault("lr_scale", 1.0)
        g.setdefault("wd_scale", 1.0 if g.get("weight_decay", 0.0) > 0 else 0.0)
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def set_lr_wd(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Apply one step's schedule values to every group through its ``lr_scale``/``wd_scale``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_scale"]
        g["weight_decay"] = weight_decay * g["wd_scale"]
