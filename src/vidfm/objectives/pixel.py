"""Pixel reconstruction target and loss of VideoMAE."""

from __future__ import annotations

import torch
from einops import rearrange

from vidfm.layers.patch_embed import gather_tubes


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
    tubelet: int,
    patch: int,
    normalize: bool = True,
    eps: float = 1e-6,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reconstruction target per token: [B, N, t·p·p·C], or [B, K, t·p·p·C] for the tokens in ``index`` [B,K].

    As official VideoMAE ``engine_for_pretraining.py``: the un-normalised [0, 1] clip (the official code undoes
    the input normalisation; here the crop is taken before it), then (``normalize``) each tubelet's pixels
    standardised per channel with their own mean and unbiased std (+``eps``), flattened (p c). Without
    ``normalize`` the target is the raw [0, 1] pixels. Each token's target depends on its own tubelet only, so
    gathering the masked ones first (``index``) gives the same values for a tenth of the work.
    Args: video [B,C,T,H,W] in [0, 1] (the crop before the student's normalisation).
    """
    b, c, t, h, w = video.shape
    if index is None:
        index = torch.arange((t // tubelet) * (h // patch) * (w // patch), device=video.device).expand(b, -1)
    tubes = gather_tubes(video.float(), index, tubelet, patch).flatten(3)  # [B,K,C,P] [0, 1] pixels
    if normalize:  # mean and unbiased variance written out: torch.var is several times slower on CPU here
        centred = tubes - tubes.mean(dim=-1, keepdim=True)
        var = (centred * centred).sum(dim=-1, keepdim=True) / (tubes.shape[-1] - 1)
        tubes = centred / (var.sqrt() + eps)
    return tubes.transpose(-1, -2).flatten(2)  # [B,K,P·C], (p c) order


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked tokens and values; pred, target [B,Nm,P]."""
    return torch.nn.functional.mse_loss(pred.float(), target.float())
