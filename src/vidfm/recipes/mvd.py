"""Masked Video Distillation, stage 2 (Wang et al., CVPR 2023): a student distilled from an image teacher
(stage 1: ``mae_image``) and a video teacher (stage 1: ``videomae``).

Official defaults (``run_mvd_pretraining.py`` and ``scripts/mvd_vit_base_from_vit_base_teacher_epoch_400/
pretrain_mvd_base_on_k400.sh``): ViT-B/16 student with 3-D sincos positions, tubelet 2, 16 frames at stride 4,
224², tube mask 0.9, drop path 0.1; two feature decoders of depth 2 as wide as the encoder; targets = the
teachers' last block output before the final norm, no target normalisation; SmoothL1 (beta 1); λ_img =
λ_vid = 1; the image teacher sees ``frames[::2]``; AdamW betas (0.9, 0.95), weight decay 0.05, lr 1.5e-4 ×
batch / 256 at batch 1024 (16 per GPU × 2 accumulation × 32 GPUs), cosine with 40 warm-up epochs of 400.
Official MVD also scales min_lr (1e-4 × batch / 256, i.e. 4e-4 at 1024); here ``train.min_lr`` is absolute:
set it to 4e-4 to match at that batch. Expected (official ``MODEL_ZOO.md``, ViT-B student from ViT-B
teachers, 400 epochs): K400 82.7, SSv2 72.5 fine-tuned top-1.

Commands (stage 1, then stage 2)::

    vidfm pretrain --recipe mae_image --set data.manifest=M --out runs/img
    vidfm pretrain --recipe videomae --set data.manifest=M --out runs/vid
    vidfm pretrain --recipe mvd --set data.manifest=M --set teachers.image=runs/img \\
        --set teachers.video=runs/vid --out runs/mvd

A teacher is a vidfm run folder, a converted checkpoint, an HF ``ViTMAEModel``/``ViTModel``/VideoMAE folder
or an official VideoMAE ``.pth``. One teacher only: ``--set teachers.video_weight=0`` (no decoder, no
teacher forward). Tiny mode: ``--recipe mvd:tiny`` (digits-motion scale, teachers from the tiny stage-1 runs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.objectives.distill import FeatureLoss
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, gpu_train, mae_pretrain, pick_variant
from vidfm.teachers.targets import LIVE, TargetProvider, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class MVDTeachers:
    """image, video: teacher sources (paths, see the module docstring); empty where the weight is 0.
    image_weight, video_weight: λ_img, λ_vid. align: ``first`` (frames[::tubelet]) or ``concat``.
    layer: teacher block whose output is the target (-1 = last). final_norm: apply the teacher's final norm.
    norm_target: standardise target tokens (official ``--norm_feature``). loss: the feature loss.
    image_size, video_size: the teachers' input sides (None = each teacher's own).
    image_kind: ``vit`` (the image teacher from ``image``) or ``efficientnet_lite0`` (ImageNet EfficientNet-Lite0
    of the ``teachers`` extra, :mod:`vidfm.teachers.efficientnet`; ``image`` unused, ``layer``/``final_norm``
    do not apply) with its feature map at output stride ``image_stride``.
    """

    image: str = ""
    image_kind: Literal["vit", "efficientnet_lite0"] = "vit"
    image_stride: int = 16
    video: str = ""
    image_weight: float = 1.0
    video_weight: float = 1.0
    align: Literal["first", "concat"] = "first"
    layer: int = -1
    final_norm: bool = False
    norm_target: bool = False
    loss: FeatureLoss = "smooth_l1"
    image_size: int | None = None
    video_size: int | None = None


@dataclass
class MVDRecipe(Recipe):
    """Everything one MVD run needs; written to ``RUN/config.yaml``. ``train.blr`` as in the VideoMAE recipe."""

    recipe: str = "mvd"
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(
            size="B/16", tubelet=2, pos_embed="sincos_3d_mvd", drop_path=0.1
        )
    )
    # width/heads: the encoder's; in_bias: official ``down_img``/``down_vid`` are nn.Linear with a bias
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(depth=2, in_bias=True))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="tube", ratio=0.9))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224))
    data: DataConfig = field(default_factory=lambda: DataConfig(num_frames=16, stride=4, short_side=256))
    teachers: MVDTeachers = field(default_factory=MVDTeachers)
    train: TrainConfig = field(
        # 400 epochs of K400's ~240k clips at batch 1024
        default_factory=lambda: mae_pretrain(
            94_000, 9_400, batch_size=16, blr=1.5e-4, min_lr=1e-5, accum_steps=2
        )
    )

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        """The task with its teachers loaded (only those with a non-zero weight)."""
        from vidfm.tasks.mvd import MVDTask

        t = self.teachers
        return MVDTask(
            self.encoder,
            self.decoder,
            self.mask,
            self.augment,
            image_teacher=self._teacher(targets, "image", t.image, t.image_weight, t.image_size),
            video_teacher=self._teacher(targets, "video", t.video, t.video_weight, t.video_size),
            image_weight=t.image_weight,
            video_weight=t.video_weight,
            align=t.align,
            loss=t.loss,
            norm_target=t.norm_target,
        )

    def _teacher(
        self,
        targets: TargetSource,
        kind: Literal["image", "video"],
        path: str,
        weight: float,
        size: int | None,
    ) -> TargetProvider | None:
        if weight == 0:
            return None
        if kind == "image" and self.teachers.image_kind == "efficientnet_lite0":
            from vidfm.teachers.efficientnet import efficientnet_teacher

            stride = self.teachers.image_stride
            return targets.teacher("teacher_image", lambda: efficientnet_teacher(size or 128, stride))
        if not path:
            raise ValueError(
                f"teachers.{kind} is not set while teachers.{kind}_weight={weight}: give a run folder or "
                f"checkpoint (--set teachers.{kind}=PATH), or --set teachers.{kind}_weight=0"
            )
        from vidfm.teachers.vit import load_teacher

        t = self.teachers
        return targets.teacher(
            f"teacher_{kind}",
            lambda: load_teacher(
                path,
                kind=kind,
                size=size,
                layer=t.layer,
                final_norm=t.final_norm,
                num_frames=self.encoder.num_frames,
                img_size=self.encoder.img_size,
            ),
        )


def config(variant: str = "") -> MVDRecipe:
    """``""`` = the paper's ViT-B setting; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`);
    ``"effnet"``: the tiny student with ImageNet EfficientNet-Lite0 as its image teacher (:func:`effnet`);
    ``"gpu"``: the tiny student at a GPU schedule, co-taught by long-trained tiny teachers (:func:`gpu`)."""
    return pick_variant("mvd", variant, {"": MVDRecipe, "tiny": tiny, "effnet": effnet, "gpu": gpu})


def tiny() -> MVDRecipe:
    """The demo scale of ``videomae:tiny`` (4-block ViT-T/8, 16×64² clips, 300 steps of 16 clips) with MVD's
    parts: 3-D sincos positions and two 2-block decoders as wide as the encoder. Teachers: the
    ``mae_image:tiny`` and ``videomae:tiny`` runs."""
    return MVDRecipe(
        encoder=EncoderConfig(
            size="T/8", depth=4, tubelet=2, num_frames=16, img_size=64, pos_embed="sincos_3d_mvd"
        ),
        decoder=DecoderConfig(depth=2, in_bias=True),
        augment=AugmentConfig(size=64),
        data=DataConfig(num_frames=16, stride=1, short_side=64),
        # lr 1e-3 as videomae:tiny (the linear rule gives ~1e-5 at batch 16: nothing moves in 300 steps);
        # benchmarks/mvd_claims.py trains teachers and students at this rate.
        train=cpu_train(300, lr=1e-3),
    )


def effnet() -> MVDRecipe:
    """MVD's masked feature prediction from a real pretrained image teacher on a CPU: the ``tiny`` student
    (tubelet 2, 16 frames at 64², tube mask 0.9) predicts, at its masked tokens, ImageNet EfficientNet-Lite0's
    stride-8 map (40 channels) of ``frames[::2]`` at 64² — the student's 8×8 grid (``teachers`` extra). Image
    teacher only (λ_vid = 0): no video teacher worth distilling trains in CPU minutes (docs/mvd.md).
    Not yet measured (README "Measured" has ``umt:effnet`` only). Train from cached targets::

        vidfm data cache-targets --recipe mvd:effnet --set data.manifest=M --views 1 --out runs/mvd-cache
        vidfm pretrain --recipe mvd:effnet --set data.manifest=M \\
            --set train.teacher_cache=runs/mvd-cache --out runs/mvd-effnet
    """
    cfg = tiny()
    teachers = MVDTeachers(image_kind="efficientnet_lite0", image_size=64, image_stride=8, video_weight=0.0)
    return dataclasses.replace(cfg, teachers=teachers, train=cpu_train(300, lr=1e-3, ckpt_every=0))


def gpu() -> MVDRecipe:
    """The tiny student for a GPU: 800 epochs of digits-motion at batch 256, MVD's rule lr = 1.5e-4 × 256 /
    256, teachers trained long enough to be worth distilling: ``mae_image:gpu`` and ``videomae:gpu`` runs
    (``--set teachers.image=RUN --set teachers.video=RUN``). ``benchmarks/gpu_schedules.py`` runs the
    co-teaching claim with it. Prepared, not yet measured."""
    return dataclasses.replace(tiny(), train=gpu_train(800, lr=None, blr=1.5e-4))
