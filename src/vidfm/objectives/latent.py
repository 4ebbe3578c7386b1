"""Latent prediction loss (V-JEPA, Bardes et al. 2024): predicted tokens against layer-normalised target tokens.

A plain function of tensors, like the other objectives; the target encoder that produced ``target`` and the
masks that chose the tokens live in the task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_target(tokens: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """[..., D] target-encoder tokens standardised over the feature dimension, in float32.

    Official V-JEPA ``app/vjepa/train.py`` (``forward_target``): ``F.layer_norm(h, (h.size(-1),))`` on the
    full-clip output, before the masked tokens are picked, with layer_norm's default eps 1e-5 and no affine.
    """
    return F.layer_norm(tokens.float(), tokens.shape[-1:], eps=eps)


def latent_l1(pred: torch.Tensor, target: torch.Tensor, exponent: float = 1.0) -> torch.Tensor:
    """mean |pred − target|^p / p over all elements; p = 1 is V-JEPA's L1 (``loss_exp`` 1.0 in every config).

    Computed in float32 whatever the autocast dtype. ``target`` must already be normalised
    (:func:`latent_target`) and carry no gradient.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if exponent <= 0:
        raise ValueError(f"exponent must be > 0, got {exponent}")
    diff = (pred.float() - target.float()).abs()
    return (diff if exponent == 1.0 else diff.pow(exponent)).mean() / exponent
