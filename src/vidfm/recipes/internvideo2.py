"""InternVideo2, stage 1 (Wang et al., ECCV 2024, §3.1): a student aligned on its unmasked tokens with an
image-language teacher and a video teacher at once (:mod:`vidfm.tasks.internvideo2`).

Official defaults (``single_modality/scripts/pretraining/1B_pt.sh``, ``run_pretraining.py``,
``models/internvideo2_pretrain.py`` ``pretrain_internvideo2_1B_patch14_224``): ViT-g/14 student (width 1408, 40
blocks, 16 heads, MLP 48/11) with a class token, learned positions started from 3-D sincos, no qkv bias,
qk-norm, RMSNorm (eps 1e-6), LayerScale 1e-5, drop path 0.25, tubelet 1, no final norm; clips of 16 frames
(``--num_frames 16 --sampling_rate 1``, one per segment) of which the student and the image teacher see every
2nd (``td_ratio`` = teacher tubelet 2 / student tubelet 1), 224²; semantic masking 0.8 from the image teacher's
attention; image teacher InternVL-6B's vision tower, last 6 layers (``clip_return_layer 6``) and its 768-d
clip embedding (``clip_teacher_final_dim 768``), loss ratios 1, 1; video teacher VideoMAE v2-g
(``mae_g14_hybrid``), last 4 layers, ratio 1; attention pool 16 heads -> 768; AdamW betas (0.9, 0.98), eps
1e-6, weight decay 0.05, clip_grad 3.0, lr 1.5e-4 × batch / 256 at batch 4096 (32 × 128 GPUs), cosine with
40 warm-up epochs of 301 on 1.1M clips. Neither teacher's weights are public in a form vidfm reads yet; any
CLIP source and any VideoMAE source take their places.

Commands::

    vidfm pretrain --recipe internvideo2 --set data.manifest=M --set teachers.image.path=CLIP \\
        --set teachers.video.path=VIDEOMAE --out runs/iv2

Tiny mode (``internvideo2:tiny``): digits-motion on a CPU, ImageNet EfficientNet-Lite0 as the image teacher
and a ``videomae:tiny`` run as the video teacher (see :func:`tiny`). One teacher only:
``--set teachers.video_weight=0`` or ``--set teachers.image_weight=0 --set teachers.final_weight=0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.errors import ConfigError
from vidfm.masking import MaskConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, mae_pretrain, pick_variant
from vidfm.recipes.umt import UMTTeacherConfig
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class VideoTeacherConfig:
    """path: a video teacher source (``videomae`` run, converted/official VideoMAE checkpoint, HF VideoMAE
    folder; :func:`vidfm.teachers.vit.load_teacher`). size: its input side (None = its own). final_norm: the
    encoder's final norm on its last block (VideoMAE v2 teachers norm the last block only).
    num_frames, img_size: an official checkpoint's clip size (it does not store it)."""

    path: str = ""
    size: int | None = None
    final_norm: bool = True
    num_frames: int = 16
    img_size: int = 224

    def build(self, layers: int) -> nn.Module:
        """The frozen video teacher returning its last ``layers`` blocks."""
        if not self.path:
            raise ConfigError(
                "teachers.video.path is not set: give a videomae run or a VideoMAE checkpoint "
                "(--set teachers.video.path=PATH), or --set teachers.video_weight=0"
            )
        from vidfm.teachers.vit import load_teacher

        return load_teacher(
            self.path, kind="video", size=self.size, final_norm=self.final_norm, num_frames=self.num_frames,
            img_size=self.img_size, layers=tuple(range(-layers, 0)),
        )  # fmt: skip


@dataclass
class InternVideo2Teachers:
    """image: the image-language teacher (a CLIP source or EfficientNet-Lite0, as UMT's). image_layers: its
    last K layers aligned with the student's last K (6). video: the video teacher. video_layers: its last K
    aligned (4). image_weight, final_weight, video_weight: α of the image teacher's tokens, of its clip
    embedding, of the video teacher's tokens (official 1, 1, 1); a 0 leaves that head out (and the teacher
    when nothing else needs it)."""

    image: UMTTeacherConfig = field(default_factory=UMTTeacherConfig)
    image_layers: int = 6
    image_weight: float = 1.0
    final_weight: float = 1.0
    video: VideoTeacherConfig = field(default_factory=VideoTeacherConfig)
    video_layers: int = 4
    video_weight: float = 1.0


def internvideo2_encoder(
    size: str = "g/14", num_frames: int = 8, img_size: int = 224, **fields
) -> EncoderConfig:
    """The InternVideo2 student: tubelet 1, class token, sincos-started learned positions, no qkv bias,
    qk-norm, RMSNorm, LayerScale 1e-5, no final norm (official ``PretrainInternVideo2``)."""
    base = dict(
        size=size, tubelet=1, num_frames=num_frames, img_size=img_size, cls_token=True, pos_embed="learned",
        pos_init="sincos_3d", qkv_bias="none", qk_norm=True, norm="rmsnorm", norm_eps=1e-6, layer_scale=1e-5,
        final_norm=False,
    )  # fmt: skip
    return EncoderConfig(**(base | fields))


@dataclass
class InternVideo2Recipe(Recipe):
    """Everything one InternVideo2 stage-1 run needs; written to ``RUN/config.yaml``.

    frame_ratio: frames read per student frame (the video teacher sees them all; ``data.num_frames`` must be
    ``encoder.num_frames × frame_ratio``). pool_heads, pool_dim: the attention pool (16 heads, 768).
    """

    recipe: str = "internvideo2"
    encoder: EncoderConfig = field(default_factory=lambda: internvideo2_encoder(drop_path=0.25))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="semantic", ratio=0.8))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=16, short_side=256)
    )
    teachers: InternVideo2Teachers = field(default_factory=InternVideo2Teachers)
    frame_ratio: int = 2
    pool_heads: int = 16
    pool_dim: int = 768
    train: TrainConfig = field(
        # 301 epochs of 1.1M clips at batch 4096 (268 steps each), 40 warm-up epochs
        default_factory=lambda: mae_pretrain(
            80_700, 10_700, batch_size=32, blr=1.5e-4, min_lr=1e-6, betas=(0.9, 0.98), eps=1e-6, clip_grad=3.0
        )
    )

    def prepare(self) -> InternVideo2Recipe:
        if self.data.num_frames != self.encoder.num_frames * self.frame_ratio:
            raise ConfigError(
                f"data.num_frames ({self.data.num_frames}) must be encoder.num_frames ({self.encoder.num_frames})"
                f" × frame_ratio ({self.frame_ratio}): the video teacher sees every frame, the student every "
                f"{self.frame_ratio}th"
            )
        return self

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        """The task with the teachers its weights need (see :class:`InternVideo2Teachers`)."""
        from vidfm.tasks.internvideo2 import InternVideo2Task

        t = self.teachers
        image = video = None
        if t.image_weight > 0 or t.final_weight > 0:
            image = targets.teacher("teacher_clip", lambda: t.image.build(t.image_layers))
        if t.video_weight > 0:
            video = targets.teacher("teacher_video", lambda: t.video.build(t.video_layers))
        return InternVideo2Task(
            encoder=self.encoder,
            mask=self.mask,
            augment=self.augment,
            image_teacher=image,
            video_teacher=video,
            image_weight=t.image_weight,
            final_weight=t.final_weight,
            video_weight=t.video_weight,
            frame_ratio=self.frame_ratio,
            pool_heads=self.pool_heads,
            pool_dim=self.pool_dim,
            resize=t.image.resize,
        )


def config(variant: str = "") -> InternVideo2Recipe:
    """``""`` = the paper's 1B setting; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("internvideo2", variant, {"": InternVideo2Recipe, "tiny": tiny})


def tiny() -> InternVideo2Recipe:
    """The demo scale: a 4-block ViT-T/8 student with the official options at 64², 8 of 16 frames; image
    teacher ImageNet EfficientNet-Lite0 (``teachers`` extra) on those 8 frames at 64², its stride-8 map (40
    channels, the 8×8 grid) as one layer and its mean as the clip embedding; video teacher a ``videomae:tiny``
    run (``--set teachers.video.path=RUN``: 16 frames, tubelet 2, the same 8×8×8 grid), its last 2 of 4 blocks
    aligned with the student's last 2. The CNN has no attention, so the mask is random per frame at the
    official ratio (``frame``, 0.8: 13 of each frame's 64 tokens visible); with a CLIP-style teacher
    (``teachers.image.kind=clip``, ``teachers.image.path=<clip_image run>``, ``teachers.image_layers=2``) set
    ``mask.kind=semantic``. lr 1e-3 with no batch rule (as ``umt:effnet``), 100 steps of 16 clips."""
    return InternVideo2Recipe(
        encoder=internvideo2_encoder("T/8", num_frames=8, img_size=64, depth=4),
        mask=MaskConfig(kind="frame", ratio=0.8),
        augment=AugmentConfig(size=64),
        data=DataConfig(sampling="segment", num_frames=16, short_side=64),
        teachers=InternVideo2Teachers(
            image=UMTTeacherConfig(kind="efficientnet_lite0", size=64, stride=8),
            image_layers=1,
            video_layers=2,
        ),
        pool_heads=3,
        pool_dim=192,
        train=cpu_train(100, lr=1e-3, ckpt_every=0),
    )
