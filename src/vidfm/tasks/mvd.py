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
from vidfm.teachers.targets import TargetProvider

BRANCHES = ("image", "video")


class MVDTask(nn.Module):
    """Student encoder + a feature decoder per teacher with a non-zero weight.

    Args:
        encoder: student encoder config (MVD: 3-D sincos positions, tubelet 2).
        decoder: decoder config for both decoders; width/heads None = the encoder's (official
            ``feat_decoder_embed_dim=None``), depth 2 in MVD.
        mask: mask config (tube, 0.9).
        augment: crop/normalise config; teachers receive the crop in [0, 1], the student its normalisation.
        image_teacher, video_teacher: target providers (:mod:`vidfm.teachers.targets`: a live
            :class:`~vidfm.teachers.vit.ViTTeacher`, cached targets, ...), or None where the weight is 0.
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
        image_teacher: TargetProvider | None,
        video_teacher: TargetProvider | None,
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

        def branch(
            name: str, teacher: TargetProvider | None, weight: float
        ) -> tuple[TargetProvider | None, MaskedDecoder | None]:
            if weight < 0:
                raise ValueError(f"teachers.{name}_weight must be >= 0, got {weight}")
            if weight == 0:
                return None, None  # no decoder, no teacher: the teacher's forward can never run
            if teacher is None:
                raise ValueError(f"teachers.{name}_weight is {weight} but no {name} teacher was given")
            out_dim = target_dim(teacher.spec.dim, self.tubelet, align, teacher.spec.per_frame)
            dec = MaskedDecoder(self.encoder.width, decoder, width, heads, out_dim, self.encoder.grid)
            return teacher, dec

        # Explicit attributes (state-dict keys ``decoder_image.*``/``decoder_video.*``, as official MVD's two
        # decoders); the providers are Frozen (vidfm.layers.frozen): never optimised, never saved.
        self.teacher_image, self.decoder_image = branch("image", image_teacher, image_weight)
        self.teacher_video, self.decoder_video = branch("video", video_teacher, video_weight)
        self.weights = {
            name: float(w) for name, w in (("image", image_weight), ("video", video_weight)) if w > 0
        }
        if not self.weights:
            raise ValueError("both teacher weights are 0: MVD has nothing to distil")

    def branches(self) -> dict[str, tuple[TargetProvider, MaskedDecoder]]:
        """Branch name -> (teacher, decoder), for the branches with a non-zero weight."""
        pairs = {
            "image": (self.teacher_image, self.decoder_image),
            "video": (self.teacher_video, self.decoder_video),
        }
        return {name: pairs[name] for name in self.weights}  # type: ignore[misc]

    def targets(
        self, teacher: TargetProvider, clip: torch.Tensor, batch: dict, grid: tuple[int, int, int]
    ) -> torch.Tensor:
        """A teacher's features on the student's token grid: clip [B,C,T,H,W] in [0,1] -> [B,N,D']."""
        per_frame = teacher.spec.per_frame
        out = teacher(teacher_frames(clip, self.tubelet, self.align) if per_frame else clip, batch)
        return align_tokens(out.tokens, out.grid, grid, mode=self.align if per_frame else "first")

    def predict(
        self, clip: torch.Tensor, batch: dict, visible: torch.Tensor, masked: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Crop [B,C,T,H,W] in [0, 1], the batch (for cached targets) and mask indices -> per branch
        (prediction, target), each [B,Nm,D']; the student sees the normalised crop, teachers the crop."""
        out = self.encoder(self.augment.normalize(clip), visible=visible)
        preds, targets = {}, {}
        for name, (teacher, decoder) in self.branches().items():
            target = gather_tokens(self.targets(teacher, clip, batch, out.grid), masked)
            targets[name] = layer_norm_target(target) if self.norm_target else target
            preds[name] = decoder(out.tokens, visible, masked)
        return preds, targets

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        mask = make_mask(self.mask_cfg, clip.shape[0], self.encoder.grid, generator, clip.device)
        preds, targets = self.predict(clip, batch, mask.visible, mask.masked)
        parts = {name: feature_loss(preds[name], targets[name], self.loss) for name in self.weights}
        loss = sum(self.weights[name] * part for name, part in parts.items())
        return {"loss": loss, **{f"loss_{name}": part.detach() for name, part in parts.items()}}
