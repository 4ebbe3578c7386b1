"""VideoEncoder: the one video ViT every recipe uses.

video [B,C,T,H,W] -> tubelet tokens [B,N,D] (N = T/t·H/p·W/p, (t,h,w) row-major) -> + position embedding
-> keep the visible tokens (if given) -> [cls] + tokens -> blocks (joint space-time attention) -> final norm.

Variants are configuration, not copies: position embedding (1-D sincos as VideoMAE, 3-D sincos as MVD/UMT,
learned), class token, qkv-bias mode, LayerNorm/RMSNorm, drop path, LayerScale. The block stack is built by
:meth:`VideoEncoder.run_blocks`, the one place a factorized (spatial then temporal) stack plugs in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from vidfm.layers.attention import QkvBias
from vidfm.layers.block import Block, NormKind, make_norm
from vidfm.layers.patch_embed import PatchEmbed3D
from vidfm.layers.pos_embed import interpolate_grid, sincos_1d, sincos_3d

# name -> (width, depth, heads, mlp_ratio); big_vision-style "B/16" strings add the patch size.
SIZES: dict[str, tuple[int, int, int, float]] = {
    "T": (192, 12, 3, 4.0),
    "S": (384, 12, 6, 4.0),
    "B": (768, 12, 12, 4.0),
    "L": (1024, 24, 16, 4.0),
    "H": (1280, 32, 16, 4.0),
    "g": (1408, 40, 16, 48 / 11),  # ViT-g/14: MLP 6144 (Zhai et al. 2022)
}


def decode_size(size: str) -> tuple[int, int, int, float, int]:
    """``"B/16"`` -> (width, depth, heads, mlp_ratio, patch)."""
    try:
        name, patch = size.split("/")
        width, depth, heads, mlp = SIZES[name]
        return width, depth, heads, mlp, int(patch)
    except (ValueError, KeyError):
        raise ValueError(f"unknown model size {size!r}; use NAME/PATCH with NAME in {list(SIZES)}") from None


@dataclass
class EncoderConfig:
    """Encoder hyper-parameters.

    size: ``"T/16"``, ``"S/16"``, ``"B/16"``, ``"L/16"`` … (width, depth, heads, patch).
    depth, width, heads, mlp_ratio: override the size's values when set (tiny test and demo models).
    tubelet: frames per token (2 in VideoMAE/MVD, 1 in UMT so each token belongs to one frame).
    num_frames, img_size: the clip the position embedding is built for; other sizes are interpolated.
    pos_embed: ``"sincos_1d"`` (VideoMAE), ``"sincos_3d"`` (MVD/UMT), ``"learned"``.
    cls_token: prepend a class token (InternVideo2, image ViTs); VideoMAE/UMT use none.
    qkv_bias: ``"qv"`` (VideoMAE), ``"fused"``, ``"none"``.
    final_norm: apply the last norm to the output tokens (HF VideoMAEModel with mean pooling has none).
    """

    size: str = "T/16"
    depth: int | None = None
    width: int | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    tubelet: int = 2
    num_frames: int = 16
    img_size: int = 224
    in_chans: int = 3
    pos_embed: Literal["sincos_1d", "sincos_3d", "learned"] = "sincos_1d"
    cls_token: bool = False
    qkv_bias: QkvBias = "qv"
    norm: NormKind = "layernorm"
    norm_eps: float = 1e-6
    drop_path: float = 0.0
    layer_scale: float | None = None
    final_norm: bool = True

    def dims(self) -> tuple[int, int, int, float, int]:
        width, depth, heads, mlp, patch = decode_size(self.size)
        return self.width or width, self.depth or depth, self.heads or heads, self.mlp_ratio or mlp, patch

    def grid(self) -> tuple[int, int, int]:
        patch = self.dims()[4]
        return (self.num_frames // self.tubelet, self.img_size // patch, self.img_size // patch)


@dataclass
class EncoderOutput:
    """Named outputs; the set of fields never depends on flags.

    tokens: [B,N,D] patch tokens after the final norm (N = visible count when ``visible`` was given).
    cls: [B,D] class token after the final norm, or None for encoders without one.
    hidden: {block index (0-based): [B,N,D] patch tokens output by that block, before the final norm}.
    grid: (T', H', W') token grid of the full clip.
    visible: [B,N] indices into the full grid of the tokens returned, or None (all tokens, grid order).
    """

    tokens: torch.Tensor
    cls: torch.Tensor | None
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    grid: tuple[int, int, int] = (0, 0, 0)
    visible: torch.Tensor | None = None

    def pooled(self, kind: Literal["mean", "cls"] = "mean") -> torch.Tensor:
        """[B,D] clip feature: mean of tokens, or the class token."""
        if kind == "cls":
            if self.cls is None:
                raise ValueError("this encoder has no class token; pool with 'mean'")
            return self.cls
        return self.tokens.mean(dim=1)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B,N,D], index [B,K] -> [B,K,D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class VideoEncoder(nn.Module):
    """The video ViT. See :class:`EncoderConfig` for the arguments."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width, depth, heads, mlp_ratio, patch = cfg.dims()
        self.width, self.depth, self.patch = width, depth, patch
        self.patch_embed = PatchEmbed3D(cfg.in_chans, width, patch, cfg.tubelet)
        self.grid = cfg.grid()
        n = math.prod(self.grid)
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n, width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        elif cfg.pos_embed in ("sincos_1d", "sincos_3d"):
            # Fixed tables are recomputed, not stored: they are not in checkpoints (as official VideoMAE).
            self.register_buffer("pos_embed", self._sincos(self.grid)[None], persistent=False)
        else:
            raise ValueError(f"unknown pos_embed {cfg.pos_embed!r}")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if cfg.cls_token else None
        self.cls_pos = (
            nn.Parameter(torch.zeros(1, 1, width)) if cfg.cls_token and cfg.pos_embed == "learned" else None
        )
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        rates = [
            cfg.drop_path * i / max(depth - 1, 1) for i in range(depth)
        ]  # stochastic depth rule of DeiT/VideoMAE
        self.blocks = nn.ModuleList(
            Block(
                width,
                heads,
                mlp_ratio,
                cfg.qkv_bias,
                cfg.norm,
                cfg.norm_eps,
                drop_path=rates[i],
                layer_scale=cfg.layer_scale,
            )
            for i in range(depth)
        )
        self.norm = make_norm(cfg.norm, width, cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.apply(_init_weights)

    def _sincos(self, grid: tuple[int, int, int]) -> torch.Tensor:
        if self.cfg.pos_embed == "sincos_1d":
            return sincos_1d(math.prod(grid), self.width)
        return sincos_3d(grid, self.width)

    def position_embedding(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """[1, T'·H'·W', D] for a token grid, interpolated (learned) or recomputed (sincos) if it differs."""
        if tuple(grid) == tuple(self.grid):
            return self.pos_embed
        if self.cfg.pos_embed == "learned":
            return interpolate_grid(self.pos_embed[0], self.grid, grid)[None]
        return self._sincos(grid)[None].to(self.pos_embed)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "cls_pos"}

    def embed(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """video [B,C,T,H,W] -> tokens with position embedding [B,N,D], grid."""
        x, grid = self.patch_embed(video)
        return x + self.position_embedding(grid).to(x.dtype), grid

    def run_blocks(self, x: torch.Tensor, keep: set[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Blocks over x [B,(1+)N,D]; returns the output and {i: output of block i} for i in keep."""
        hidden = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in keep:
                hidden[i] = x
        return x, hidden

    def forward(
        self,
        video: torch.Tensor,
        visible: torch.Tensor | None = None,
        return_layers: tuple[int, ...] | list[int] = (),
    ) -> EncoderOutput:
        """Encode a clip.

        Args:
            video: float [B,C,T,H,W], normalised.
            visible: optional long [B,K] indices of the tokens to encode (the same K for every sample, from a
                mask generator); masked tokens are dropped before the first block (MAE-style).
            return_layers: block indices (negative counts from the end) whose outputs go to ``hidden``.
        """
        x, grid = self.embed(video)
        if visible is not None:
            x = gather_tokens(x, visible)
        n_special = 0
        if self.cls_token is not None:
            cls = self.cls_token + (self.cls_pos if self.cls_pos is not None else 0)
            x = torch.cat([cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
            n_special = 1
        keep = {i % self.depth for i in return_layers}
        x, hidden = self.run_blocks(x, keep)
        x = self.norm(x)
        return EncoderOutput(
            tokens=x[:, n_special:],
            cls=x[:, 0] if n_special else None,
            hidden={i: h[:, n_special:] for i, h in hidden.items()},
            grid=grid,
            visible=visible,
        )


def _init_weights(m: nn.Module) -> None:
    # VideoMAE/MAE init: xavier-uniform linears, zero biases, unit norms; the patch conv as a linear.
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv3d):
        nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
        if m.weight is not None:
            nn.init.ones_(m.weight)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
