"""VideoPrism, stage 2 (Zhao et al., ICML 2024; ``../shared/PAPERS.md`` §3): masked video modeling with token
shuffling and global-local distillation from the frozen stage-1 model
(:class:`vidfm.tasks.videoprism.VideoPrismStage2Task`).

The student starts from the stage-1 encoder (and its global head from the stage-1 MAP head); the teacher is
the same stage-1 run, frozen. Masking is a tube mask because the factorized encoder takes tube-shaped
visible sets (:mod:`vidfm.models.encoder`); the mask ratio, decoder size, distances and optimiser settings
are vidfm's choices (the text vidfm follows does not give them). Ablations of the paper::

    --set shuffle=false            # no token shuffling
    --set global_weight=0          # token-wise distillation only (no global head is built)

Commands::

    vidfm pretrain --recipe videoprism_stage2 --set data.manifest=M --set init=runs/vp1 --out runs/vp2
    vidfm eval retrieval --checkpoint runs/vp2 --data CAPTIONED   # stage-1 text tower, stage-2 video tower

Tiny mode: ``--recipe videoprism_stage2:tiny --set init=RUN`` with RUN a ``videoprism_stage1:tiny`` run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.objectives.distill import FeatureLoss
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, pick_variant
from vidfm.recipes.videoprism import tiny_encoder, videoprism_encoder, videoprism_train
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class VideoPrismStage2Recipe(Recipe):
    """Everything one stage-2 run needs; written to ``RUN/config.yaml``.

    init: the ``videoprism_stage1`` run the student starts from and that serves as the frozen teacher.
    shuffle: token shuffling before the decoder. token_weight, global_weight: loss weights (0 = no global
    distillation). token_loss, global_loss: distances. pool_heads: the global head's pooler heads.
    """

    recipe: str = "videoprism_stage2"
    encoder: EncoderConfig = field(default_factory=videoprism_encoder)
    init: str = ""
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(depth=4, qkv_bias="fused"))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="tube", ratio=0.75))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=288, scales=(1.0, 0.875)))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=16, short_side=320)
    )
    shuffle: bool = True
    token_weight: float = 1.0
    global_weight: float = 1.0
    token_loss: FeatureLoss = "l2"
    global_loss: FeatureLoss = "cosine"
    pool_heads: int | None = None
    train: TrainConfig = field(default_factory=lambda: videoprism_train(betas=(0.9, 0.95)))

    def _init_dir(self) -> str:
        if not self.init:
            raise ValueError("init is not set: give the videoprism_stage1 run (--set init=RUN)")
        return self.init

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        """The student with the stage-1 weights, and the stage-1 teacher."""
        from vidfm.tasks.videoprism import VideoPrismStage2Task, VideoPrismTeacher
        from vidfm.train.checkpoint import load_model_weights

        init = self._init_dir()
        task = VideoPrismStage2Task(
            encoder=self.encoder,
            decoder=self.decoder,
            mask=self.mask,
            augment=self.augment,
            teacher=targets.teacher("teacher", lambda: VideoPrismTeacher.from_run(init)),
            shuffle=self.shuffle,
            token_weight=self.token_weight,
            global_weight=self.global_weight,
            token_loss=self.token_loss,
            global_loss=self.global_loss,
            pool_heads=self.pool_heads,
        )
        # A resumed run then overwrites every weight from its own checkpoint.
        load_model_weights(init, task.encoder, prefix="encoder.")
        if self.global_weight > 0:  # the task has a global head
            load_model_weights(init, task.global_head, prefix="video_head.")
        return task

    has_text_tower: ClassVar[bool] = True

    def dual_encoder(self, run_dir: str | Path) -> nn.Module:
        """Zero-shot towers: this run's encoder with its global head (without one: the stage-1 MAP head,
        frozen since stage 1), and the stage-1 text tower. The global head is trained to land in the
        stage-1 video-text space, which is what makes the stage-1 text tower usable here."""
        from vidfm.models.encoder import VideoEncoder
        from vidfm.recipes import load_run_config
        from vidfm.recipes.videoprism import text_dual_encoder
        from vidfm.tasks.videoprism import VideoHead, load_stage1
        from vidfm.train.checkpoint import load_model_weights

        init = self._init_dir()
        _, head, _ = load_stage1(init)
        stage1 = load_run_config(init)
        encoder = VideoEncoder(self.encoder)
        load_model_weights(run_dir, encoder, prefix="encoder.")
        if self.global_weight > 0:
            head = VideoHead(encoder.width, self.pool_heads or self.encoder.dims()[2], stage1.embed_dim)
            load_model_weights(run_dir, head, prefix="global_head.")
        return text_dual_encoder(stage1, init, encoder.eval(), head.eval())


def config(variant: str = "") -> VideoPrismStage2Recipe:
    """``""`` = VideoPrism-B's architecture; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("videoprism_stage2", variant, {"": VideoPrismStage2Recipe, "tiny": tiny})


def tiny() -> VideoPrismStage2Recipe:
    """The ``videoprism_stage1:tiny`` encoder, a 2-block decoder of width 64, tube mask 0.75 (16 of 64
    positions visible in each of the 4 frames), 200 steps of 24 clips."""
    return VideoPrismStage2Recipe(
        encoder=tiny_encoder(),
        decoder=DecoderConfig(depth=2, width=64, heads=2, qkv_bias="fused"),
        augment=AugmentConfig(size=32, scales=(1.0, 0.875)),
        data=DataConfig(sampling="segment", num_frames=4, short_side=64),
        train=cpu_train(200, batch_size=24, lr=5e-4, ckpt_every=0),
    )
