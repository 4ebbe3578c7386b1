"""CLIP-style image-text training on video frames and captions: a CLIP teacher made from the user's data.

The image tower has OpenAI CLIP's layout (ViT with ln_pre, QuickGELU, ln_post, proj), so the run is read by
:func:`vidfm.teachers.clip.load_clip_teacher` like downloaded CLIP weights and serves as the UMT teacher
(``--set teacher.path=RUN``). Loss: VTC (symmetric InfoNCE, learnable temperature from 0.07); text tower:
the packaged MiniLM, frozen, with a trained projection. Defaults follow CLIP's ViT-B/16 tower (224², patch
16, width 768, 12 blocks, embedding 512) and CLIP's optimiser (AdamW betas (0.9, 0.98), eps 1e-6, weight
decay 0.2, cosine after warm-up; Radford et al. 2021, Appendix F); the lr of 5e-4 at batch 256 is vidfm's
choice for datasets of thousands, not CLIP's 400M pairs. Expected: a teacher whose zero-shot text-to-video
retrieval on held-out clips is far above chance (``vidfm eval retrieval --checkpoint RUN``).

Command: ``vidfm pretrain --recipe clip_image --set data.manifest=MANIFEST --out runs/clip``.
Tiny mode (``--recipe clip_image:tiny``): digits-motion frames at 32², about 100 s of process CPU time
(200 steps; measured in docs/umt.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.models.clip_vision import CLIP_MEAN, CLIP_STD, CLIPVisionConfig, clip_encoder_config
from vidfm.models.text import TextEncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, gpu_train, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class CLIPImageRecipe(Recipe):
    """Everything one clip_image run needs; written to ``RUN/config.yaml``.

    frames: frames drawn per clip per step (images per step = batch × frames).
    temperature: initial τ of the contrastive loss (learned, clamped to [0.001, 0.5]).
    """

    recipe: str = "clip_image"
    vision: CLIPVisionConfig = field(default_factory=CLIPVisionConfig)
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(size=224, scales=(1.0, 0.875), mean=CLIP_MEAN, std=CLIP_STD)
    )
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=8, short_side=256)
    )
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(trainable=False))
    frames: int = 1
    temperature: float = 0.07
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=256,
            lr=5e-4,
            min_lr=1e-6,
            weight_decay=0.2,
            betas=(0.9, 0.98),
            eps=1e-6,
            steps=20_000,
            warmup_steps=1_000,
        )
    )

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.clip_image import CLIPImageTask

        return CLIPImageTask(self.vision, self.augment, self.text, self.frames, self.temperature)

    has_text_tower: ClassVar[bool] = True

    def dual_encoder(self, run_dir: str | Path) -> nn.Module:
        """The trained towers as a :class:`~vidfm.models.heads.DualEncoder` (video = mean of its frames)."""
        from vidfm.models.heads import DualEncoder
        from vidfm.train.checkpoint import load_model_weights

        task = self.build_task()
        load_model_weights(run_dir, task, strict=True)
        task.eval()
        return DualEncoder(
            task.embed_video,
            nn.Identity(),
            task.text_encoder,
            task.contrastive.text_proj,
            task.tokenizer,
            self.augment,
            modules={"task": task},
        )


def config(variant: str = "") -> CLIPImageRecipe:
    """``""`` = a CLIP ViT-B/16 tower; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("clip_image", variant, {"": CLIPImageRecipe, "tiny": tiny, "gpu": gpu})


def tiny() -> CLIPImageRecipe:
    """The demo scale: a 4-block, 128-wide tower on frames downscaled to 32² with 4×4 patches (an 8×8 grid,
    as the 64² UMT student's 8×8 patches), 2 frames from each of 32 clips per step, the frozen MiniLM.

    Measured on digits-motion while tuning (not re-run for docs/umt.md): at 64² with 8×8 patches the same
    tower stayed at chance for 300 steps (and learned slowly even when trained supervised on the digit); at
    32² with 4×4 patches it reached 0.34 zero-shot digit accuracy after 300 steps, for the same token count.
    With this recipe's 200 steps the zero-shot accuracy in docs/umt.md is lower: digit 0.14, motion 0.20.
    """
    return CLIPImageRecipe(
        vision=CLIPVisionConfig(
            encoder=clip_encoder_config("T/4", img_size=32, width=128, depth=4, heads=4), embed_dim=128
        ),
        augment=AugmentConfig(size=32, scales=(1.0, 0.875), mean=CLIP_MEAN, std=CLIP_STD),
        data=DataConfig(sampling="segment", num_frames=8, short_side=64),
        frames=2,
        train=cpu_train(200, batch_size=32, lr=1e-3, betas=(0.9, 0.98), eps=1e-6, ckpt_every=0),
    )


def gpu() -> CLIPImageRecipe:
    """The tiny tower trained long enough to teach UMT, for a GPU: 400 epochs of digits-motion at batch 256
    (the tiny recipe's 200 steps of 32 are 4 epochs), its lr 1e-3 and AdamW settings. Prepared, not yet
    measured: ``benchmarks/gpu_schedules.py``."""
    cfg = tiny()
    t = cfg.train
    return dataclasses.replace(cfg, train=gpu_train(400, lr=t.lr, betas=t.betas, eps=t.eps))
