"""Pixel reconstruction target and loss of VideoMAE."""

from __future__ import annotations

import torch
from einops import rearrange


def patchify(video: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """video [B,C,T,H,W] -> [B, N, t·p·p, C] with tokens in the encoder's (t, h, w) order."""
    return rearrange(
        video, "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c", p0=tubelet, p1=patch, p2=patch
    )


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> torch.Tensor:
    """[B, N, t·p·p·C] -> video [B,C,T,H,W] (inverse of patchify followed by flattening (p c))."""
    t, h, w = grid
    return rearrange(
        tokens,
        "b (t h w) (p0 p1 p2 c) -> b c (t p0) (h p1) (w p2)",
        t=t,
        h=h,
        w=w,
        p0=tubelet,
        p1=patch,
        p2=patch,
    )


def pixel_target(
    video: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    tubelet: int,
    patch: int,
    normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Reconstruction target per token: [B, N, t·p·p·C].

    As official VideoMAE ``engine_for_pretraining.py``: undo the input normalisation, then (``normalize``)
    standardise each tubelet's pixels per channel with its own mean and unbiased std (+1e-6), and flatten
    (p c). Without ``normalize`` the target is the raw [0, 1] pixels.
    Args: video [B,C,T,H,W] normalised input; mean, std [C] of that normalisation.
    """
    raw = video.float() * std.view(1, -1, 1, 1, 1) + mean.view(1, -1, 1, 1, 1)
    patches = patchify(raw, tubelet, patch)  # [B,N,P,C]
    if normalize:
        patches = (patches - patches.mean(dim=-2, keepdim=True)) / (
            patches.var(dim=-2, keepdim=True).sqrt() + eps
        )
    return patches.flatten(2)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked tokens and values; pred, target [B,Nm,P]."""
    return torch.nn.functional.mse_loss(pred.float(), target.float())
