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

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from vidfm.data.transforms import AugmentConfig, resize
from vidfm.models.clip_vision import (  # noqa: F401 - the tower's names stay importable from here
    CLIP_MEAN,
    CLIP_STD,
    Activation,
    CLIPVisionConfig,
    CLIPVisionTower,
    clip_encoder_config,
    cls_attention,
)
from vidfm.runs import is_run, open_run
from vidfm.teachers.base import Teacher, TeacherOutput


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
    if is_run(path):
        run = open_run(path)
        if not run.has("vision"):
            raise ValueError(f"{path} is a {run.recipe!r} run, not a CLIP tower (a clip_image run)")
        tower = CLIPVisionTower(run.section("vision", CLIPVisionConfig))
        run.load(tower, "visual.")
        augment = run.section("augment", AugmentConfig)
        return tower.eval(), tuple(augment.mean), tuple(augment.std)
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
