"""Feature-distillation losses: plain functions of tensors (prediction [..., D], target [..., D]) -> scalar.

Used by MVD (smooth L1 on masked tokens, official ``engine_for_pretraining.py``) and by the later recipes
(UMT's normalised L2 on unmasked tokens, VideoPrism's token and global distillation, InternVideo2's cosine).
Each computes in float32 whatever the autocast dtype: the targets of frozen teachers are small differences
of large features, which bf16 would round away.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

FeatureLoss = Literal["smooth_l1", "l1", "l2", "cosine", "normalized_l2"]


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Mean smooth L1 over all elements; beta 1.0 = ``torch.nn.SmoothL1Loss()`` as official MVD uses it."""
    return F.smooth_l1_loss(pred.float(), target.float(), beta=beta)


def cosine_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(pred, target) over tokens (the last dimension is the feature)."""
    return (1 - F.cosine_similarity(pred.float(), target.float(), dim=-1, eps=1e-6)).mean()


def normalized_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of ||p/|p| - t/|t|||² = 2 - 2·cos: L2 between unit-normalised features, the form of
    UMT's unmasked-token alignment."""
    return 2 * cosine_distance(pred, target)


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: FeatureLoss = "smooth_l1") -> torch.Tensor:
    """One of the feature losses by name; ``l1``/``l2`` are element means as ``torch.nn.L1Loss``/``MSELoss``
    (the other two choices of official MVD's ``--distill_loss_func``)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if kind == "smooth_l1":
        return smooth_l1(pred, target)
    if kind == "l1":
        return F.l1_loss(pred.float(), target.float())
    if kind == "l2":
        return F.mse_loss(pred.float(), target.float())
    if kind == "cosine":
        return cosine_distance(pred, target)
    if kind == "normalized_l2":
        return normalized_l2(pred, target)
    raise ValueError(f"unknown feature loss {kind!r}; use smooth_l1, l1, l2, cosine or normalized_l2")


def layer_norm_target(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-token standardisation of teacher features (official MVD ``--norm_feature``: a LayerNorm without
    affine parameters, eps 1e-6; off by default there)."""
    return F.layer_norm(target.float(), target.shape[-1:], eps=eps)
