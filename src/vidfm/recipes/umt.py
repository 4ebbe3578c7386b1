"""Unmasked Teacher, stage 1 (Li et al., ICCV 2023): a student aligned with a CLIP teacher on the unmasked
tokens, masked semantically by the teacher's attention.

Official defaults (``single_modality/exp/pretraining/b16_ptk710_f8_res224.sh`` and
``models/modeling_pretrain_umt.py``): ViT-B/16 student from scratch, tubelet 1, no class token, fused qkv bias,
LayerNorm eps 1e-6, fixed 1-D sincos positions (``get_sinusoid_encoding_table``), drop path 0.1; 8 frames,
one per segment (``--num_segments 8 --sampling_rate 1``), 224²; teacher CLIP ViT-B/16 (``clip_b16``), its last
6 layers (``clip_return_layer 6``) projected and L2-normalised, attention masking 0.8; heads 768 -> 512;
loss 2 - 2·cos; AdamW betas (0.9, 0.95), weight decay 0.05, lr 1.5e-4 × batch / 256 at batch 2048 (64 × 32
GPUs), cosine with 40 warm-up epochs of 200. Expected (official ``MODEL_ZOO.md``): ViT-B/16 pre-trained 200
epochs on K710 reaches 85.7 K400 top-1 after fine-tuning, with about 6x fewer GPU-hours than VideoMAE (paper
Table 1). One difference: the official engine feeds CLIP the student's ImageNet-normalised clip; here the
teacher normalises its [0, 1] input with CLIP's own constants (the vidfm teacher interface).

Commands::

    vidfm pretrain --recipe umt --set data.manifest=M --set teacher.path=CLIP --out runs/umt

``CLIP``: an OpenAI CLIP ``.pt``/``.pth``, an HF CLIP folder, or a ``clip_image`` run (a CLIP-style teacher
trained on your own frames and captions). Tiny mode: ``--recipe umt:tiny`` (digits-motion, teacher from
``clip_image:tiny``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, mae_pretrain, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class UMTTeacherConfig:
    """path: a CLIP source (OpenAI weights, HF CLIP folder, ``clip_image`` run). size: its input side (None =
    its own). norm: ``l2`` unit tokens (``clip_norm_type``). resize: allow a patch grid other than the
    student's (token maps resized bilinearly)."""

    path: str = ""
    size: int | None = None
    norm: Literal["l2", "none"] = "l2"
    resize: bool = False

    def build(self, layers: int):
        """The frozen CLIP teacher returning its last ``layers`` blocks."""
        if not self.path:
            raise ValueError(
                "teacher.path is not set: give OpenAI CLIP weights, an HF CLIP folder or a clip_image run "
                "(--set teacher.path=PATH)"
            )
        from vidfm.teachers.clip import load_clip_teacher

        return load_clip_teacher(self.path, layers=tuple(range(-layers, 0)), size=self.size, norm=self.norm)


def umt_encoder(size: str = "B/16", num_frames: int = 8, img_size: int = 224, **fields) -> EncoderConfig:
    """The UMT student: tubelet 1, no class token, fused qkv bias, 1-D sincos positions."""
    return EncoderConfig(
        size=size,
        tubelet=1,
        num_frames=num_frames,
        img_size=img_size,
        pos_embed="sincos_1d",
        qkv_bias="fused",
        **fields,
    )


@dataclass
class UMTRecipe(Recipe):
    """Everything one UMT stage-1 run needs; written to ``RUN/config.yaml``.

    align_layers: K, the last K student blocks aligned with the teacher's last K (6 in UMT).
    train.blr: base lr; effective lr = blr × global batch / 256.
    """

    recipe: str = "umt"
    encoder: EncoderConfig = field(default_factory=lambda: umt_encoder(drop_path=0.1))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="semantic", ratio=0.8))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=8, short_side=256)
    )
    teacher: UMTTeacherConfig = field(default_factory=UMTTeacherConfig)
    align_layers: int = 6
    train: TrainConfig = field(
        # 200 epochs of K710's ~0.65M clips at batch 2048; 40 warm-up epochs
        default_factory=lambda: mae_pretrain(63_500, 12_700, batch_size=64, blr=1.5e-4, min_lr=1e-6)
    )

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.umt import UMTTask

        teacher = targets.teacher("teacher", lambda: self.teacher.build(self.align_layers))
        return UMTTask(
            encoder=self.encoder,
            mask=self.mask,
            augment=self.augment,
            teacher=teacher,
            align_layers=self.align_layers,
            resize=self.teacher.resize,
        )


def config(variant: str = "") -> UMTRecipe:
    """``""`` = the paper's ViT-B/16 setting; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("umt", variant, {"": UMTRecipe, "tiny": tiny})


def tiny() -> UMTRecipe:
    """The demo scale of ``videomae:tiny`` (4-block ViT-T/8 at 64²) with UMT's parts: 8 frames one per
    segment, tubelet 1, semantic masking 0.8 from the ``clip_image:tiny`` teacher (which sees the frames at
    32², its own size, on the same 8×8 grid), its last 2 of 4 blocks aligned with the student's last 2 (UMT
    aligns half of the depth: 6 of 12); 150 steps of 16 clips."""
    return UMTRecipe(
        encoder=umt_encoder("T/8", num_frames=8, img_size=64, depth=4),
        augment=AugmentConfig(size=64),
        data=DataConfig(sampling="segment", num_frames=8, short_side=64),
        align_layers=2,
        train=cpu_train(150, lr=None, blr=1.5e-4 * 8, ckpt_every=0),
    )
