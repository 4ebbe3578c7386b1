"""Audio encoder: a ViT over log-mel spectrogram patches (AST / BEATs layout).

InternVideo2 stage 2 (paper §3.2; official ``multi_modality/models/backbones/beats/BEATs.py``) encodes the
64-bin fbank of :mod:`vidfm.data.audio` with BEATs: 16×16 patches of the [frames, mel] image through a Conv2d,
a LayerNorm, then a 12-layer transformer; the clip embedding is the mean of the valid tokens. Here the blocks
are vidfm's pre-norm :class:`~vidfm.layers.block.Block`s with a learned position table over the (time, mel)
patch grid (AST's choice; BEATs uses a convolutional position embedding and relative position bias, so BEATs
weights do not load here). Padding tokens (frames past the audio's end, or a video without audio) still take
part in attention — the blocks have no attention mask — but never in the pooled embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidfm.layers.block import Block
from vidfm.layers.pos_embed import interpolate_grid


@dataclass
class AudioEncoderConfig:
    """width, depth, heads, mlp_ratio: the transformer (BEATs: 768, 12, 12, 4). patch: square patch over
    (frames, mel bins), 16 in BEATs. n_mels: fbank bins (64). max_frames: fbank frames the position table is
    built for (998 = 10 s; shorter inputs use its first rows)."""

    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    patch: int = 16
    n_mels: int = 64
    max_frames: int = 998
    norm_eps: float = 1e-5


@dataclass
class AudioOutput:
    """tokens: [B,N,D] after the final norm, N = (F/p)·(M/p) in (time, mel) order. valid: bool [B,N], tokens
    that cover at least one frame of real audio. pooled: [B,D] mean of the valid tokens (zeros where none).
    present: bool [B], the clip had audio at all."""

    tokens: torch.Tensor
    valid: torch.Tensor
    pooled: torch.Tensor
    present: torch.Tensor


class AudioEncoder(nn.Module):
    """fbank [B,F,M] (+ valid frames [B,F]) -> :class:`AudioOutput`. See :class:`AudioEncoderConfig`."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        if cfg.n_mels % cfg.patch or cfg.max_frames < cfg.patch:
            raise ValueError(
                f"{cfg.n_mels} mel bins / {cfg.max_frames} frames do not fit {cfg.patch}-patches"
            )
        self.cfg, self.width = cfg, cfg.width
        self.patch_embed = nn.Conv2d(1, cfg.width, cfg.patch, stride=cfg.patch)
        self.embed_norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)  # BEATs ``layer_norm`` after the patches
        self.grid = (cfg.max_frames // cfg.patch, cfg.n_mels // cfg.patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], cfg.width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, "fused", "layernorm", cfg.norm_eps)
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def forward(self, fbank: torch.Tensor, valid: torch.Tensor | None = None) -> AudioOutput:
        """fbank float [B,F,M] normalised (:func:`vidfm.data.audio.audio_features`); valid bool [B,F] (None =
        all frames real). F is cut to a multiple of the patch (BEATs does the same)."""
        b, f, m = fbank.shape
        p = self.cfg.patch
        if m != self.cfg.n_mels or f < p:
            raise ValueError(f"expected fbank [B, >={p}, {self.cfg.n_mels}], got {tuple(fbank.shape)}")
        f = f // p * p
        valid = torch.ones(b, f, dtype=torch.bool, device=fbank.device) if valid is None else valid[:, :f]
        x = self.patch_embed(fbank[:, None, :f])  # [B,D,F/p,M/p]
        gt, gm = x.shape[-2:]
        x = self.embed_norm(x.flatten(2).transpose(1, 2))  # [B,N,D], time-major
        x = x + self._positions(gt, gm).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        token_valid = valid.view(b, gt, p).any(-1)[:, :, None].expand(b, gt, gm).reshape(b, -1)  # [B,N]
        weights = token_valid.to(x.dtype)
        pooled = (x * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1)
        return AudioOutput(x, token_valid, pooled, token_valid.any(1))

    def _positions(self, gt: int, gm: int) -> torch.Tensor:
        """[1, gt·gm, D]: the first gt time rows of the table (interpolated when longer than it was built for)."""
        table = self.pos_embed[0].view(*self.grid, -1)
        if gt <= self.grid[0]:
            return table[:gt].reshape(1, gt * gm, -1)
        return interpolate_grid(self.pos_embed[0], (1, *self.grid), (1, gt, gm))[None]
