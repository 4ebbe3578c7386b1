"""The CLIP image tower as a UMT teacher: per-frame tokens of chosen layers and the class-token attention.

The tower is the one video ViT (:class:`~vidfm.models.encoder.VideoEncoder` as an image ViT: tubelet 1, one
frame, class token, learned positions, fused qkv bias, LayerNorm eps 1e-5) plus the three things OpenAI CLIP
adds: ``ln_pre`` after the position embedding, QuickGELU MLPs, and the ``proj`` matrix after ``ln_post`` (the
encoder's final norm). Weights come from the OpenAI layout, HF ``CLIPVisionModel``/``CLIPModel``
(:mod:`vidfm.convert.clip`) or a vidfm ``clip_image`` run.

Teacher outputs follow official UMT ``single_modality/models/clip.py`` (``VisionTransformer.forward``): each
returned layer's patch tokens go through ``ln_post`` and ``proj`` and are L2-normalised
(``clip_norm_type='l2'``); the importance for semantic masking is the last block's attention of the class
token over the patches, averaged over heads (``nn.MultiheadAttention(need_weights=True)`` averages heads;
``attn[:, 0, 1:]``), not renormalised after dropping the class column. Only that one row of one layer is
computed, never a full attention map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.data.transforms import resize
from vidfm.layers.attention import Attention
from vidfm.layers.block import QuickGELU
from vidfm.models.encoder import EncoderConfig, EncoderOutput, VideoEncoder
from vidfm.teachers.base import Teacher, TeacherOutput

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


class CLIPTeacher(Teacher):
    """A frozen CLIP tower applied to every frame alone.

    Args:
        tower: the tower, weights loaded.
        layers: blocks whose tokens are returned (negative counts from the end); the last one listed is
            also ``tokens``. UMT takes the last 6 (``clip_return_layer=6``).
        size: input side the frames are resized to (None = the tower's ``img_size``).
        mean, std: input normalisation (OpenAI CLIP's by default).
        norm: ``"l2"`` unit-normalise the projected tokens (``clip_norm_type``) or ``"none"``.
    """

    def __init__(
        self,
        tower: CLIPVisionTower,
        layers: tuple[int, ...] | list[int] = (-1,),
        size: int | None = None,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
        norm: Literal["l2", "none"] = "l2",
    ) -> None:
        super().__init__(size or tower.cfg.img_size, mean, std)
        if not layers:
            raise ValueError("a CLIP teacher needs at least one layer")
        bad = [i for i in layers if not -tower.depth <= i < tower.depth]
        if bad:
            raise ValueError(f"teacher layers {bad} out of range for a {tower.depth}-block tower")
        if norm not in ("l2", "none"):
            raise ValueError(f"unknown norm {norm!r}; use 'l2' or 'none'")
        self.tower = tower
        self.layers = tuple(i % tower.depth for i in layers)
        self.norm = norm
        self.dim = tower.embed_dim  # width of the returned tokens
        self.per_frame = True
        self.freeze()

    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        """[B,C,T,H,W] in [0,1] -> resized (antialiased, as CLIP's PIL preprocessing when shrinking) and
        normalised. A tower trained by ``clip_image`` at a smaller side saw antialiased frames too."""
        if self.size is not None and video.shape[-2:] != (self.size, self.size):
            video = resize(video, (self.size, self.size))
        return (video - self.mean.to(video.dtype)) / self.std.to(video.dtype)

    def finish(self, tokens: torch.Tensor) -> torch.Tensor:
        """A block's raw tokens [..., D] -> ln_post -> proj -> (L2) [..., E]."""
        x = self.tower.project(self.tower.norm(tokens))
        return F.normalize(x, dim=-1) if self.norm == "l2" else x

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        """video [B,C,T,H,W], resized and normalised -> tokens, hidden {layer: [B, T·h·w, E]}, attention
        [B, T, h·w], pooled [B, E] (the mean of the frames' projected class tokens)."""
        b, _, t = video.shape[:3]
        frames = video.transpose(1, 2).flatten(0, 1).unsqueeze(2)  # [B·T,C,1,H,W]
        out, attn = self.tower.forward_with_attention(frames, return_layers=self.layers)
        _, h, w = out.grid
        hidden = {i: self.finish(out.hidden[i]).reshape(b, t * h * w, -1) for i in self.layers}
        pooled = F.normalize(self.tower.project(out.cls), dim=-1).view(b, t, -1).mean(1)  # [B,E]
        return TeacherOutput(
            tokens=hidden[self.layers[-1]],
            grid=(t, h, w),
            pooled=pooled,
            attention=attn.view(b, t, h * w),
            hidden=hidden,
        )


def load_clip_tower(path: str | Path) -> tuple[CLIPVisionTower, tuple[float, ...], tuple[float, ...]]:
    """(tower in eval mode, mean, std) from a vidfm ``clip_image`` run folder, an HF CLIP folder
    (``CLIPVisionModel``, ``CLIPVisionModelWithProjection``, ``CLIPModel``) or an OpenAI CLIP state dict
    (``.pt``/``.pth``/``.bin``/``.safetensors``; full model or visual-only keys)."""
    from vidfm.convert.clip import read_clip

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CLIP teacher {path} does not exist")
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        from vidfm.recipes import load_run_config
        from vidfm.train.checkpoint import load_model_weights

        cfg = load_run_config(path)
        if not hasattr(cfg, "vision"):
            raise ValueError(f"{path} is a {cfg.recipe!r} run, not a CLIP tower (a clip_image run)")
        tower = CLIPVisionTower(cfg.vision)
        load_model_weights(path, tower, prefix="visual.")
        return tower.eval(), tuple(cfg.augment.mean), tuple(cfg.augment.std)
    cfg, state = read_clip(path)
    tower = CLIPVisionTower(cfg)
    tower.load_state_dict(state, strict=True)
    return tower.eval(), CLIP_MEAN, CLIP_STD


def load_clip_teacher(
    path: str | Path,
    layers: tuple[int, ...] | list[int] = (-1,),
    size: int | None = None,
    norm: Literal["l2", "none"] = "l2",
) -> CLIPTeacher:
    """A frozen :class:`CLIPTeacher` from any source :func:`load_clip_tower` reads."""
    tower, mean, std = load_clip_tower(path)
    return CLIPTeacher(tower, layers=layers, size=size, mean=mean, std=std, norm=norm)
