"""VideoEncoder: the one video ViT every recipe uses.

video [B,C,T,H,W] -> tubelet tokens [B,N,D] (N = T/t·H/p·W/p, (t,h,w) row-major) -> + position embedding
-> keep the visible tokens (if given) -> [cls] + tokens -> blocks (joint space-time attention) -> final norm.

Variants are configuration, not copies: position embedding (1-D sincos as VideoMAE, 3-D sincos as MVD/UMT,
learned), class token, qkv-bias mode, LayerNorm/RMSNorm, drop path, LayerScale, attention logit soft-cap.
The block stack is run by :meth:`VideoEncoder.run_blocks`, where the factorized mode plugs in.

Factorized space-time (``space_time="factorized"``; VideoPrism, Zhao et al. ICML 2024 §3.1, the ViViT
"factorized encoder" without ViViT's pooling between the stages; official ``videoprism/encoders.py``
``FactorizedEncoder``): the first ``depth`` blocks attend within each frame ([B·T', H'W', D]), a norm, a learned
temporal table is added, and the next ``temporal_depth`` blocks attend along time at each spatial position
([B·H'W', T', D]); the output keeps all T'·H'·W' tokens in (t, h, w) order. Position tables are learned and
separate: spatial [H'W', D] (added to every frame) and temporal [T', D], each interpolated for other sizes.

Masked input in factorized mode: the visible set must be a tube, the same spatial positions in every frame
(:func:`vidfm.masking.tube_mask`). Then the spatial stage runs on [B·T', k, D] (k visible positions per frame)
and the temporal stage on [B·k, T', D], exactly the factorized encoder applied to the visible tokens, with no
padding. Other visible sets (random or per-frame masks) leave positions with missing frames and are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from vidfm.layers.attention import QkvBias
from vidfm.layers.block import Block, NormKind, make_norm
from vidfm.layers.patch_embed import PatchEmbed3D, gather_tokens
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
    depth, width, heads, mlp_ratio: override the size's values when set (tiny test and demo models); in
        factorized mode ``depth`` counts the spatial blocks only.
    tubelet: frames per token (2 in VideoMAE/MVD, 1 in UMT so each token belongs to one frame).
    num_frames, img_size: the clip the position embedding is built for; other sizes are interpolated.
    pos_embed: ``"sincos_1d"`` (VideoMAE), ``"sincos_3d"`` (MAE-ST/UMT order), ``"sincos_3d_mvd"`` (MVD's
        channel order, see :func:`~vidfm.layers.pos_embed.sincos_3d`), ``"learned"``.
    cls_token: prepend a class token (InternVideo2, image ViTs); VideoMAE/UMT use none.
    qkv_bias: ``"qv"`` (VideoMAE), ``"fused"``, ``"none"``.
    final_norm: apply the last norm to the output tokens (HF VideoMAEModel with mean pooling has none).
    attn_softcap: tanh soft-cap of the attention logits (VideoPrism: 50), None for none.
    space_time: ``"joint"`` (one stack over all tokens) or ``"factorized"`` (VideoPrism; see the module
        docstring): ``depth`` spatial blocks then ``temporal_depth`` temporal blocks; needs ``pos_embed="learned"``
        and no class token.
    temporal_depth: blocks of the temporal stage (VideoPrism-B and -g: 4); unused in joint mode.
    qk_norm: normalise q and k over the full width with the block norm (InternVideo2 1B/6B; see
        :class:`~vidfm.layers.attention.Attention`).
    pos_init: start of a ``learned`` table: ``"trunc_normal"`` (std 0.02) or ``"sincos_3d"`` (InternVideo2,
        official ``models/internvideo2_pretrain.py`` ``init_pos_embed``: a trainable table filled with the 3-D
        sincos table, the class-token row zero).
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
    pos_embed: Literal["sincos_1d", "sincos_3d", "sincos_3d_mvd", "learned"] = "sincos_1d"
    cls_token: bool = False
    qkv_bias: QkvBias = "qv"
    norm: NormKind = "layernorm"
    norm_eps: float = 1e-6
    drop_path: float = 0.0
    layer_scale: float | None = None
    final_norm: bool = True
    attn_softcap: float | None = None
    space_time: Literal["joint", "factorized"] = "joint"
    temporal_depth: int = 4
    qk_norm: bool = False
    pos_init: Literal["trunc_normal", "sincos_3d"] = "trunc_normal"

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


class VideoEncoder(nn.Module):
    """The video ViT. See :class:`EncoderConfig` for the arguments."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width, depth, heads, mlp_ratio, patch = cfg.dims()
        self.factorized = cfg.space_time == "factorized"
        if cfg.space_time not in ("joint", "factorized"):
            raise ValueError(f"unknown space_time {cfg.space_time!r}; use 'joint' or 'factorized'")
        self.spatial_depth = depth  # blocks before the temporal stage (all of them in joint mode)
        if self.factorized:
            if cfg.pos_embed != "learned" or cfg.cls_token:
                raise ValueError("the factorized encoder takes pos_embed='learned' and no class token")
            if cfg.temporal_depth < 1:
                raise ValueError(f"temporal_depth must be >= 1 in factorized mode, got {cfg.temporal_depth}")
            depth += cfg.temporal_depth  # one block list: spatial blocks 0..depth-1, then the temporal ones
        self.width, self.depth, self.patch = width, depth, patch
        self.patch_embed = PatchEmbed3D(cfg.in_chans, width, patch, cfg.tubelet)
        self.grid = cfg.grid()
        n = math.prod(self.grid)
        self.temporal_pos = None
        if self.factorized:
            t, h, w = self.grid
            self.pos_embed = nn.Parameter(torch.zeros(1, h * w, width))  # spatial table, every frame
            self.temporal_pos = nn.Parameter(torch.zeros(1, t, width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        elif cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n, width))
            if cfg.pos_init == "sincos_3d":
                with torch.no_grad():
                    self.pos_embed.copy_(sincos_3d(self.grid, width)[None])
            elif cfg.pos_init == "trunc_normal":
                nn.init.trunc_normal_(self.pos_embed, std=0.02)
            else:
                raise ValueError(f"unknown pos_init {cfg.pos_init!r}; use 'trunc_normal' or 'sincos_3d'")
        elif cfg.pos_embed in ("sincos_1d", "sincos_3d", "sincos_3d_mvd"):
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
                attn_softcap=cfg.attn_softcap,
                qk_norm=cfg.qk_norm,
            )
            for i in range(depth)
        )
        # Factorized: the norm between the stages (official ``FactorizedEncoder``'s spatial encoder ends with
        # its own LayerNorm; HF ``VideoPrismVisionModel.layernorm1``).
        self.spatial_norm = make_norm(cfg.norm, width, cfg.norm_eps) if self.factorized else None
        self.norm = make_norm(cfg.norm, width, cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.apply(_init_weights)

    def _sincos(self, grid: tuple[int, int, int]) -> torch.Tensor:
        if self.cfg.pos_embed == "sincos_1d":
            return sincos_1d(math.prod(grid), self.width)
        return sincos_3d(grid, self.width, time_first=self.cfg.pos_embed == "sincos_3d_mvd")

    def position_embedding(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """[1, T'·H'·W', D] for a token grid, interpolated (learned) or recomputed (sincos) if it differs.

        Factorized mode: the spatial table repeated over the T' frames (time enters after the spatial stage,
        :meth:`temporal_embedding`)."""
        if self.factorized:
            t, h, w = grid
            table = interpolate_grid(self.pos_embed[0], (1, *self.grid[1:]), (1, h, w))  # [H'W',D]
            return table.repeat(t, 1)[None]
        if tuple(grid) == tuple(self.grid):
            return self.pos_embed
        if self.cfg.pos_embed == "learned":
            return interpolate_grid(self.pos_embed[0], self.grid, grid)[None]
        return self._sincos(grid)[None].to(self.pos_embed)

    def temporal_embedding(self, frames: int) -> torch.Tensor:
        """Factorized mode: the temporal table [1, T', D], linearly interpolated when T' differs."""
        if self.temporal_pos is None:
            raise ValueError("a joint space-time encoder has no temporal table")
        return interpolate_grid(self.temporal_pos[0], (self.grid[0], 1, 1), (frames, 1, 1))[None]

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "cls_pos", "temporal_pos"}

    def embed(
        self, video: torch.Tensor, visible: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """video [B,C,T,H,W] -> tokens with position embedding [B,N,D] (only the ``visible`` [B,K] ones, [B,K,D],
        when given: masked tubes are never embedded), grid."""
        x, grid = self.patch_embed(video, visible)
        pos = self.position_embedding(grid).to(x.dtype)  # [1,N,D]
        if visible is not None:
            pos = gather_tokens(pos.expand(x.shape[0], -1, -1), visible)
        return x + pos, grid

    def run_blocks(
        self, x: torch.Tensor, keep: set[int], frames: int | None = None
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Blocks over x [B,(1+)N,D]; returns the output and {i: output of block i} for i in keep.

        ``frames`` (factorized mode only): T'; x [B, T'·k, D] holds k tokens per frame, frame-major, at the same
        spatial positions in every frame. Outputs (and ``hidden``) are always [B, T'·k, D] in that order.
        """
        if frames is None:
            hidden = {}
            for i, block in enumerate(self.blocks):
                x = block(x)
                if i in keep:
                    hidden[i] = x
            return x, hidden
        b, n, d = x.shape
        t, k = frames, n // frames
        x = x.reshape(b * t, k, d)  # spatial stage: [B·T', k, D], attention within each frame
        hidden = {}
        for i, block in enumerate(self.blocks):
            if i == self.spatial_depth:  # -> temporal stage: [B·k, T', D], attention along time
                x = self.spatial_norm(x).view(b, t, k, d).transpose(1, 2).reshape(b * k, t, d)
                x = x + self.temporal_embedding(t).to(x.dtype)
            x = block(x)
            if i in keep:
                hidden[i] = self._frame_major(x, b, t, temporal=i >= self.spatial_depth)
        return self._frame_major(x, b, t, temporal=True), hidden

    @staticmethod
    def _frame_major(x: torch.Tensor, b: int, t: int, temporal: bool) -> torch.Tensor:
        """[B·T',k,D] (spatial stage) or [B·k,T',D] (temporal stage) -> [B,T'·k,D] in (t, position) order."""
        d = x.shape[-1]
        if not temporal:
            return x.reshape(b, -1, d)
        return x.view(b, -1, t, d).transpose(1, 2).reshape(b, -1, d)

    def check_tube(self, visible: torch.Tensor, grid: tuple[int, int, int]) -> None:
        """Factorized mode: raise unless visible [B,K] (sorted) keeps the same positions in every frame."""
        t, h, w = grid
        b, k = visible.shape
        if k % t:
            raise ValueError(f"{k} visible tokens do not split evenly over {t} frames (factorized mode)")
        per_frame = visible.view(b, t, k // t) - torch.arange(t, device=visible.device)[None, :, None] * (
            h * w
        )
        # One device sync per masked forward: cheap next to the blocks, and a wrong grouping would be silent.
        if not bool(((per_frame == per_frame[:, :1]) & (per_frame >= 0) & (per_frame < h * w)).all()):
            raise ValueError(
                "the factorized encoder needs tube-shaped visible tokens (the same spatial positions in "
                "every frame, sorted, as vidfm.masking.tube_mask gives); random or per-frame masks are not "
                "supported"
            )

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
                mask generator); masked tokens are dropped before the first block (MAE-style). Factorized
                mode takes tube-shaped sets only (see the module docstring).
            return_layers: block indices (negative counts from the end) whose outputs go to ``hidden``.
        """
        x, grid = self.embed(video, visible)
        n_special = 0
        if self.cls_token is not None:
            cls = self.cls_token + (self.cls_pos if self.cls_pos is not None else 0)
            x = torch.cat([cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
            n_special = 1
        keep = {i % self.depth for i in return_layers}
        if self.factorized:
            if visible is not None:
                self.check_tube(visible, grid)
            x, hidden = self.run_blocks(x, keep, frames=grid[0])
        else:  # subclasses (the CLIP tower) override run_blocks(x, keep) for joint stacks
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
