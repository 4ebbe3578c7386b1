"""Masked Video Distillation step: tube-masked clip -> student on visible tokens -> one decoder per teacher
-> the teachers' features at the masked positions.

Wang et al., "Masked Video Distillation", CVPR 2023; official ``modeling_student.py`` (two decoders of the
same shape with separate weights, ``decoder_img``/``decoder_vid``, each with its own mask token and 3-D
sincos positions) and ``engine_for_pretraining.py`` (targets from frozen teachers under ``no_grad``, gathered
at ``bool_masked_pos``; ``loss = image_loss_weight · L_img + video_loss_weight · L_vid``, SmoothL1 each).

A branch whose weight is 0 builds no decoder and never calls its teacher, so single-teacher students are the
same recipe with one λ at 0.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.masking import MaskConfig, make_mask
from vidfm.models.decoder import DecoderConfig, MaskedDecoder, sincos_3d_like
from vidfm.models.encoder import EncoderConfig, VideoEncoder, gather_tokens
from vidfm.objectives.distill import FeatureLoss, feature_loss, layer_norm_target
from vidfm.teachers.align import AlignMode, align_tokens, target_dim, teacher_frames
from vidfm.teachers.base import Teacher

BRANCHES = ("image", "video")


class MVDTask(nn.Module):
    """Student encoder + a feature decoder per teacher with a non-zero weight.

    Args:
        encoder: student encoder config (MVD: 3-D sincos positions, tubelet 2).
        decoder: decoder config for both decoders; width/heads None = the encoder's (official
            ``feat_decoder_embed_dim=None``), depth 2 in MVD.
        mask: mask config (tube, 0.9).
        augment: crop/normalise config; teachers receive the crop un-normalised, in [0, 1].
        image_teacher, video_teacher: frozen teachers (:class:`~vidfm.teachers.vit.ViTTeacher` or any
            :class:`Teacher` with a ``dim`` attribute), or None where the weight is 0.
        image_weight, video_weight: λ_img and λ_vid (1 and 1 in MVD).
        align: how the image teacher's frames meet the tubelets (:mod:`vidfm.teachers.align`).
        loss: feature loss (``smooth_l1`` in MVD).
        norm_target: standardise each target token first (official ``--norm_feature``; off in MVD).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        decoder: DecoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        image_teacher: Teacher | None,
        video_teacher: Teacher | None,
        image_weight: float = 1.0,
        video_weight: float = 1.0,
        align: AlignMode = "first",
        loss: FeatureLoss = "smooth_l1",
        norm_target: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg, self.align, self.loss, self.norm_target = mask, align, loss, norm_target
        self.tubelet = encoder.tubelet
        width = decoder.width or self.encoder.width
        heads = decoder.heads or encoder.dims()[2]
        # Official MVD's decoder tables come from its get_3d_sincos_pos_embed (pos_embed_img/pos_embed_vid,
        # time channels first); an encoder with vidfm's own 3-D order gets decoders in that order.
        decoder = replace(decoder, pos_embed=sincos_3d_like(encoder.pos_embed))
        self.weights: dict[str, float] = {}
        for name, teacher, weight in (
            ("image", image_teacher, image_weight),
            ("video", video_teacher, video_weight),
        ):
            if weight < 0:
                raise ValueError(f"teachers.{name}_weight must be >= 0, got {weight}")
            if weight == 0:
                continue  # no decoder, no teacher: the teacher's forward can never run
            if teacher is None:
                raise ValueError(f"teachers.{name}_weight is {weight} but no {name} teacher was given")
            per_frame = bool(getattr(teacher, "per_frame", False))
            out_dim = target_dim(int(teacher.dim), self.tubelet, align, per_frame)
            dec = MaskedDecoder(self.encoder.width, decoder, width, heads, out_dim, self.encoder.grid)
            # Teachers are Frozen modules (vidfm.layers.frozen): never optimised, never saved.
            setattr(self, f"teacher_{name}", teacher)
            setattr(self, f"decoder_{name}", dec)
            self.weights[name] = float(weight)
        if not self.weights:
            raise ValueError("both teacher weights are 0: MVD has nothing to distil")

    def targets(self, name: str, clip: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Teacher ``name``'s features on the student's token grid: clip [B,C,T,H,W] in [0,1] -> [B,N,D']."""
        teacher = getattr(self, f"teacher_{name}")
        per_frame = bool(getattr(teacher, "per_frame", False))
        out = teacher(teacher_frames(clip, self.tubelet, self.align) if per_frame else clip)
        return align_tokens(out.tokens, out.grid, grid, mode=self.align if per_frame else "first")

    def predict(
        self, video: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Normalised video [B,C,T,H,W] and mask indices -> per branch (prediction, target), each [B,Nm,D']."""
        out = self.encoder(video, visible=visible)
        clip = self.augment.unnormalize(video)  # [B,C,T,H,W] in [0,1], what teachers take
        preds, targets = {}, {}
        for name in self.weights:
            target = gather_tokens(self.targets(name, clip, out.grid), masked)
            targets[name] = layer_norm_target(target) if self.norm_target else target
            preds[name] = getattr(self, f"decoder_{name}")(out.tokens, visible, masked)
        return preds, targets

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        video = self.augment(batch["video"], generator=generator, train=True)  # [B,C,T,H,W]
        mask = make_mask(self.mask_cfg, video.shape[0], self.encoder.grid, generator, video.device)
        preds, targets = self.predict(video, mask.visible, mask.masked)
        parts = {name: feature_loss(preds[name], targets[name], self.loss) for name in self.weights}
        loss = sum(self.weights[name] * part for name, part in parts.items())
        return {"loss": loss, **{f"loss_{name}": part.detach() for name, part in parts.items()}}
