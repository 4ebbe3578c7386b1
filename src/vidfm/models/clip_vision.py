"""The CLIP image tower: the one video ViT as an image ViT plus what OpenAI CLIP adds.

:class:`~vidfm.models.encoder.VideoEncoder` with tubelet 1, one frame, class token, learned positions, fused
qkv bias, LayerNorm eps 1e-5, plus ``ln_pre`` after the position embedding, QuickGELU MLPs, and the ``proj``
matrix after ``ln_post`` (the encoder's final norm). The teacher built on it is
:class:`vidfm.teachers.clip.CLIPTeacher`; converters read weights into it (:mod:`vidfm.convert.clip`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from vidfm.layers.attention import Attention
from vidfm.layers.block import QuickGELU
from vidfm.models.encoder import EncoderConfig, EncoderOutput, VideoEncoder

# OpenAI CLIP input normalisation (``clip/clip.py`` ``_transform``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
Activation = Literal["quick_gelu", "gelu"]


def clip_encoder_config(
    size: str = "B/16", img_size: int = 224, **overrides: int | float | str | None
) -> EncoderConfig:
    """The EncoderConfig of a CLIP image tower: ``"B/16"`` at 224² is OpenAI's ViT-B/16 (heads = width/64)."""
    base = EncoderConfig(
        size=size,
        tubelet=1,
        num_frames=1,
        img_size=img_size,
        pos_embed="learned",
        cls_token=True,
        qkv_bias="fused",
        norm_eps=1e-5,
        final_norm=True,
    )
    return dataclasses.replace(base, **overrides)


@dataclass
class CLIPVisionConfig:
    """encoder: the image ViT (see :func:`clip_encoder_config`). embed_dim: width of ``proj`` (512 for ViT-B/16;
    None = no projection, as HF ``CLIPVisionModel``). act: MLP activation (QuickGELU in OpenAI CLIP)."""

    encoder: EncoderConfig = field(default_factory=clip_encoder_config)
    embed_dim: int | None = 512
    act: Activation = "quick_gelu"


class CLIPVisionTower(VideoEncoder):
    """A VideoEncoder with CLIP's ``ln_pre``, activation and ``proj``; ``norm`` is CLIP's ``ln_post``.

    Args:
        cfg: the tower config; ``cfg.encoder`` must describe an image ViT with a class token.
    """

    def __init__(self, cfg: CLIPVisionConfig) -> None:
        enc = cfg.encoder
        if not (enc.cls_token and enc.tubelet == 1 and enc.num_frames == 1 and enc.final_norm):
            raise ValueError("a CLIP tower is an image ViT: cls_token, tubelet 1, num_frames 1, final_norm")
        if cfg.act not in ("quick_gelu", "gelu"):
            raise ValueError(f"unknown activation {cfg.act!r}; use 'quick_gelu' or 'gelu'")
        super().__init__(enc)
        self.clip_cfg = cfg
        if cfg.act == "quick_gelu":
            for block in self.blocks:
                block.mlp.act = QuickGELU()  # the MLP's only parameter-free part; weights are unchanged
        self.ln_pre = nn.LayerNorm(self.width, eps=enc.norm_eps)
        self.proj = None
        if cfg.embed_dim is not None:
            self.proj = nn.Parameter(torch.empty(self.width, cfg.embed_dim))
            nn.init.normal_(self.proj, std=self.width**-0.5)  # OpenAI ``scale * randn(width, output_dim)``
        self.embed_dim = cfg.embed_dim or self.width

    def run_blocks(self, x: torch.Tensor, keep: set[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        # CLIP normalises [cls] + patches (+ positions) once before the first block (``ln_pre``).
        return super().run_blocks(self.ln_pre(x), keep)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] after ``ln_post`` -> [..., E] (identity without ``proj``)."""
        return x if self.proj is None else x @ self.proj.to(x.dtype)

    def forward_with_attention(
        self, video: torch.Tensor, return_layers: tuple[int, ...] | list[int] = ()
    ) -> tuple[EncoderOutput, torch.Tensor]:
        """The encoder's output and the last block's class-token attention over patches [B, N] (head mean).

        The attention row is computed from the last block's normalised input, caught by a forward hook,
        so the blocks keep running through SDPA kernels that never build attention maps.
        """
        caught: list[torch.Tensor] = []
        last = self.blocks[-1]
        handle = last.norm1.register_forward_hook(lambda _m, _i, out: caught.append(out))
        try:
            out = self(video, return_layers=return_layers)
        finally:
            handle.remove()
        return out, cls_attention(last.attn, caught[0])


def cls_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Class-token attention of ``attn`` on x [B, 1+N, D]: softmax(q_cls·kᵀ/√d) averaged over heads -> [B, N].

    One query row per head: [B,h,1,N+1] instead of the [B,h,N+1,N+1] map.
    """
    q, k, _ = attn.qkv_heads(x)  # each [B,h,1+N,hd]
    logits = (q[:, :, :1].float() @ k.float().transpose(-1, -2)) * attn.head_dim**-0.5  # [B,h,1,1+N]
    return logits.softmax(dim=-1).mean(dim=1)[:, 0, 1:]  # drop the class column, keep raw weights
