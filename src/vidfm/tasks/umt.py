"""Unmasked Teacher, stage 1: semantic masking from a CLIP teacher, then unmasked token alignment (UTA).

Li et al., "Unmasked Teacher", ICCV 2023; official ``single_modality/engines/engine_for_pretraining_umt.py``
and ``models/modeling_pretrain_umt.py``:

1. The frozen CLIP teacher sees every frame; its last block's class-token attention is each frame's
   importance, and ``N - int(0.8·N)`` visible tokens per frame (``N_vis = N - int(N * mask_ratio)``: 13 of
   64, 40 of 196) are drawn from it by multinomial sampling without replacement (``mask_type='attention'``,
   ratio 0.8; :func:`vidfm.masking.semantic_mask`); not a tube.
2. The student (tubelet 1, no class token, no decoder) encodes only the visible tokens.
3. Its last K blocks' outputs (K = ``clip_return_layer`` = 6) pass the shared final norm, get a fixed 1-D
   sincos position table added (``clip_pos_embed`` at the visible positions), then one head per layer
   (Linear -> LayerNorm), and are aligned with the teacher's last K layers at the same tokens:
   loss = mean(2 - 2·cos) over layers and visible tokens (``clip_loss_type='l2'``, both sides L2-normalised).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.pos_embed import sincos_1d
from vidfm.masking import Mask, MaskConfig, make_mask
from vidfm.models.encoder import EncoderConfig, EncoderOutput, VideoEncoder, gather_tokens
from vidfm.models.heads import AlignHead
from vidfm.objectives.distill import normalized_l2
from vidfm.teachers.align import align_tokens
from vidfm.teachers.base import Teacher


class UMTTask(nn.Module):
    """Student encoder + one alignment head per aligned layer + the frozen teacher.

    Args:
        encoder: student config; tubelet must be 1 (each token belongs to one frame of the teacher).
        mask: ``semantic`` (UMT, ratio 0.8) or ``tube``/``random``/``frame`` for ablations.
        augment: crop/normalise config; the teacher receives the crop un-normalised, in [0, 1].
        teacher: a frozen teacher returning ``hidden`` for ``align_layers`` layers and (for semantic masking)
            ``attention`` [B,T,h·w] — a :class:`~vidfm.teachers.clip.CLIPTeacher`; None = no alignment (the
            student then sees the tokens ``mask`` keeps, all of them for ratio 0).
        align_layers: K, the number of last student blocks aligned with the teacher's returned layers.
        resize: allow a teacher patch grid other than the student's (bilinear resize of its token maps).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        teacher: Teacher | None,
        align_layers: int = 6,
        resize: bool = False,
    ) -> None:
        super().__init__()
        if encoder.tubelet != 1:
            raise ValueError(f"UMT needs tubelet 1 (one frame per token), got {encoder.tubelet}")
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg, self.resize = mask, resize
        depth = self.encoder.depth
        if not 1 <= align_layers <= depth:
            raise ValueError(f"align_layers must be in [1, {depth}] for a {depth}-block student")
        self.student_layers = tuple(range(depth - align_layers, depth))
        self.teacher_layers: tuple[int, ...] = ()
        self.teacher: Teacher | None = None  # None: no alignment (see ``align``)
        if teacher is not None:
            layers = tuple(getattr(teacher, "layers", ()))
            if len(layers) != align_layers:
                raise ValueError(
                    f"the teacher returns {len(layers)} layer(s), the student aligns {align_layers}"
                )
            self.teacher = teacher  # a Frozen module: never optimised, never saved
            self.teacher_layers = layers
            self.align_heads = nn.ModuleList(AlignHead(self.encoder.width, int(teacher.dim)) for _ in layers)
            n = math.prod(self.encoder.grid)
            # Official ``clip_pos_embed``: a 1-D sincos table over the flattened grid at the student width.
            self.register_buffer("align_pos", sincos_1d(n, self.encoder.width)[None], persistent=False)
        elif mask.kind == "semantic":
            raise ValueError("semantic masking needs a teacher (its class-token attention)")

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def _to_student(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return align_tokens(x, grid, self.encoder.grid, resize=self.resize)

    def align(
        self, video: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, EncoderOutput, Mask]:
        """Normalised video [B,C,T,H,W] -> (UTA loss, the student's output on its visible tokens, the mask).

        Without a teacher the loss is 0 and the student sees what ``mask`` keeps.
        """
        b = video.shape[0]
        grid = self.encoder.grid
        if self.teacher is None:
            mask = make_mask(self.mask_cfg, b, grid, generator, video.device)
            out = self.encoder(video, visible=mask.visible)
            return video.new_zeros(()), out, mask
        target = self.teacher(self.augment.unnormalize(video))  # no grad, eval mode
        importance = None
        if target.attention is not None:  # [B,T,h·w] -> [B,N] on the student's grid
            importance = self._to_student(target.attention.flatten(1)[..., None], target.grid)[..., 0]
        mask = make_mask(self.mask_cfg, b, grid, generator, video.device, importance=importance)
        out = self.encoder(video, visible=mask.visible, return_layers=self.student_layers)
        pos = gather_tokens(self.align_pos.expand(b, -1, -1), mask.visible).to(out.tokens.dtype)  # [B,Nv,D]
        losses = []
        for head, s, t in zip(self.align_heads, self.student_layers, self.teacher_layers, strict=True):
            pred = head(self.encoder.norm(out.hidden[s]) + pos)  # [B,Nv,E]
            goal = gather_tokens(self._to_student(target.hidden[t], target.grid), mask.visible)
            losses.append(normalized_l2(pred, goal))
        return torch.stack(losses).mean(), out, mask

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        video = self.augment(batch["video"], generator=generator, train=True)  # [B,C,T,H,W]
        loss, _, _ = self.align(video, generator)
        return {"loss": loss}
