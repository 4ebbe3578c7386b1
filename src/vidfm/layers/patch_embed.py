"""Tubelet patch embedding: a Conv3d with kernel = stride = (t, p, p)."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed3D(nn.Module):
    """video [B,C,T,H,W] -> tokens [B, T/t·H/p·W/p, D] in (t, h, w) row-major order, and the grid.

    Args:
        in_chans: input channels C.
        dim: token width D.
        patch: spatial patch size p.
        tubelet: temporal tubelet length t (1 = one token per frame, as UMT).
    """

    def __init__(self, in_chans: int, dim: int, patch: int, tubelet: int) -> None:
        super().__init__()
        self.patch, self.tubelet = patch, tubelet
        self.proj = nn.Conv3d(
            in_chans, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch)
        )

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        b, c, t, h, w = video.shape
        if t % self.tubelet or h % self.patch or w % self.patch:
            raise ValueError(
                f"video {t}x{h}x{w} (T×H×W) is not divisible by the tubelet {self.tubelet}x{self.patch}x{self.patch}"
            )
        x = self.proj(video)  # [B,D,T',H',W']
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), grid
