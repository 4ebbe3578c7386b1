"""Image MAE pre-training on frames of videos (He et al., CVPR 2022): MVD's stage-1 image teacher.

Official defaults (``main_pretrain.py`` and ``PRETRAIN.md`` of the official MAE code): ViT-B/16 with a class
token, random mask 0.75, decoder of 8 blocks × 512 wide (16 heads), ``norm_pix_loss``, AdamW betas
(0.9, 0.95), weight decay 0.05, lr = 1.5e-4 × batch / 256 at an effective batch of 4096, cosine to 0 after
40 warm-up epochs of 800. Here the images are frames of the user's videos: each clip gives
``data.num_frames`` frames (one per equal segment), each frame one image. Expected (paper, ImageNet, ViT-B,
1600 epochs): 83.6 fine-tuned top-1; MVD uses such a model as its image teacher.

Command: ``vidfm pretrain --recipe mae_image --set data.manifest=MANIFEST --out runs/mae_image``.
Tiny mode (``--recipe mae_image:tiny``): digits-motion frames at 64², a few CPU minutes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, gpu_train, mae_pretrain, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


def image_encoder(size: str = "B/16", img_size: int = 224, **fields) -> EncoderConfig:
    """An image ViT as a VideoEncoder: one frame, tubelet 1, a class token, fused qkv bias (timm/MAE)."""
    return EncoderConfig(
        size=size,
        tubelet=1,
        num_frames=1,
        img_size=img_size,
        pos_embed="sincos_3d",  # fixed sincos as MAE; with one frame the time channels are constant
        cls_token=True,
        qkv_bias="fused",
        **fields,
    )


@dataclass
class MAEImageRecipe(Recipe):
    """Everything one image-MAE run needs; written to ``RUN/config.yaml``.

    data.num_frames: frames per clip, each an image (batch of images = train.batch_size × num_frames).
    train.blr: base learning rate; effective lr = blr × clips per step / 256. The trainer's linear rule counts
    clips and MAE's counts images, so blr = 1.5e-4 × ``data.num_frames`` is MAE's rate per image.
    """

    recipe: str = "mae_image"
    encoder: EncoderConfig = field(default_factory=image_encoder)
    decoder: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(depth=8, width=512, heads=16, qkv_bias="fused")
    )
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="random", ratio=0.75))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=4, short_side=256)
    )
    train: TrainConfig = field(
        # MAE's 1.5e-4 per 256 images, at 4 frames per clip
        default_factory=lambda: mae_pretrain(100_000, 5_000, batch_size=64, blr=1.5e-4 * 4, min_lr=0.0)
    )
    normalize_target: bool = True

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.mae_image import MAEImageTask

        return MAEImageTask(self.encoder, self.decoder, self.mask, self.augment, self.normalize_target)


def config(variant: str = "") -> MAEImageRecipe:
    """``""`` = MAE's ViT-B setting on video frames; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("mae_image", variant, {"": MAEImageRecipe, "tiny": tiny, "gpu": gpu})


def tiny() -> MAEImageRecipe:
    """The demo scale, matched to ``videomae:tiny`` (same 4-block ViT-T with 8×8 patches at 64², same steps
    and clips per step) so the image and the video teacher cost about the same."""
    return MAEImageRecipe(
        encoder=image_encoder("T/8", img_size=64, depth=4),
        decoder=DecoderConfig(depth=2, qkv_bias="fused"),
        augment=AugmentConfig(size=64),
        data=DataConfig(sampling="segment", num_frames=4, short_side=64),
        train=cpu_train(300, lr=None, blr=1.5e-4 * 4),
    )


def gpu() -> MAEImageRecipe:
    """The tiny image teacher trained long enough to be worth distilling (MVD's image teacher), for a GPU:
    800 epochs of digits-motion at batch 256 clips, MAE's per-image rule (blr 1.5e-4 × 4 frames, as ``tiny``). Prepared, not yet
    measured: ``benchmarks/gpu_schedules.py``."""
    return dataclasses.replace(tiny(), train=gpu_train(800, lr=None, blr=1.5e-4 * 4))
